"""The one place a slack_sdk WebClient is made: with retries where a retry is safe, none where not.

Reads, views.publish/open and chat.update are idempotent, so they retry on a 429 (after its
Retry-After), a 5xx and a dropped connection. A post is not: a retried chat.postMessage whose
first attempt reached Slack posts twice, so a posting client gets no retry handler at all (the
outbox's own idempotent path retries alerts; a listener's one-off post reports a failure instead).
"""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)


def web_client(token: str | None, base_url: str, *, posts: bool = False, timeout: int = 30) -> WebClient:
    """A client for ``token`` at ``base_url``; ``posts``: it posts messages, so it never retries."""
    handlers = (
        []
        if posts
        else [
            RateLimitErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ]
    )
    return WebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=handlers)


def posting_client(client: WebClient) -> WebClient:
    """A client like ``client`` for chat.postMessage: the same token and API, no retries."""
    return web_client(client.token, client.base_url, posts=True, timeout=client.timeout)
