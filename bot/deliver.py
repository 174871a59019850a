"""Outbox -> Slack (or the console). The only module that talks to the Slack Web API.

Alerts wait in the outbox (the `alerts` table) until a sink accepts them; a Slack outage or
rate limit leaves them queued for the next round, so nothing is lost. Each alert records the
message ts once posted, so nothing is posted twice.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.errors import DeliveryError, SlackAuthError
from bot.model import Alert, Item, Span
from bot.render import render_console, render_console_reply, render_reply, render_slack
from bot.store import QueuedAlert, Store, StoryPost
from bot.summarize import summarize

log = logging.getLogger("newsalert.deliver")

# Errors that no retry will fix until a human acts (re-install, re-invite, unarchive).
AUTH_ERRORS = {
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "no_permission",
    "missing_scope",
    "org_login_required",
    "ekm_access_denied",
}
CHANNEL_ERRORS = {"channel_not_found", "not_in_channel", "is_archived", "restricted_action"}
# Anything else Slack rejects (e.g. invalid_blocks) gets this many tries before it is given up.
MAX_REJECTED_ATTEMPTS = 3


class RetryLater(DeliveryError):
    """Slack is unavailable or rate-limiting this channel; the alert stays queued."""


class Rejected(DeliveryError):
    """Slack refused this message; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


class Sink(Protocol):
    name: str

    def post(self, alert: Alert) -> str:
        """Deliver one alert; return its message ts. Raises RetryLater, Rejected or SlackAuthError."""
        ...

    def reply(self, alert: Alert, parent: Alert, thread_ts: str) -> str:
        """Post a later report of ``parent``'s story in its thread; return the reply's ts."""
        ...

    def update(self, parent: Alert, ts: str) -> None:
        """Re-render the story's top-level message (more sources, more watchlists)."""
        ...


class ConsoleSink:
    """Prints alerts: the bot's behaviour when no Slack token is configured."""

    name = "console"

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def post(self, alert: Alert) -> str:
        print(render_console(alert), file=self.stream or sys.stdout, end="\n\n", flush=True)
        return "console"

    def reply(self, alert: Alert, parent: Alert, thread_ts: str) -> str:
        print(render_console_reply(alert, parent), file=self.stream or sys.stdout, end="\n\n", flush=True)
        return "console"

    def update(self, parent: Alert, ts: str) -> None:
        pass  # printed lines cannot change; the reply line already says how many sources


class SlackSink:
    name = "slack"

    def __init__(self, token: str, base_url: str, *, timeout: int = 30):
        # No automatic retries inside slack_sdk: a retried post after a lost response could post
        # twice; the outbox retries on the next delivery round instead.
        self.client = WebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=[])

    def check_auth(self) -> dict:
        """auth.test once at start so a bad token fails loudly rather than on every alert."""
        try:
            return self.client.auth_test().data  # type: ignore[return-value]
        except SlackApiError as e:
            error = e.response.get("error", "unknown_error")
            if error in AUTH_ERRORS:
                raise SlackAuthError(f"Slack rejected the bot token: {error}") from None
            raise RetryLater(f"auth.test failed: {error}") from None
        except Exception as e:  # network: the URL is wrong or Slack is unreachable
            raise RetryLater(f"cannot reach Slack at {self.client.base_url}: {e}") from None

    def post(self, alert: Alert) -> str:
        message = render_slack(alert)
        response = self._call(
            self.client.chat_postMessage,
            channel=alert.channel,
            text=message.text,
            blocks=message.blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response["ts"])

    def reply(self, alert: Alert, parent: Alert, thread_ts: str) -> str:
        message = render_reply(alert)
        response = self._call(
            self.client.chat_postMessage,
            channel=alert.channel,
            thread_ts=thread_ts,
            text=message.text,
            blocks=message.blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response["ts"])

    def update(self, parent: Alert, ts: str) -> None:
        message = render_slack(parent)
        self._call(
            self.client.chat_update, channel=parent.channel, ts=ts, text=message.text, blocks=message.blocks
        )

    @staticmethod
    def _call(method: Callable[..., Any], **kwargs: Any) -> Any:
        """Call the Web API, turning its failures into RetryLater / Rejected / SlackAuthError."""
        try:
            return method(**kwargs)
        except SlackApiError as e:
            error = e.response.get("error", "unknown_error")
            if error in AUTH_ERRORS:
                raise SlackAuthError(f"Slack rejected the bot token: {error}") from None
            if e.response.status_code == 429 or error == "ratelimited":
                retry_after = e.response.headers.get("Retry-After", "?")
                raise RetryLater(f"rate limited (Retry-After {retry_after}s)") from None
            if e.response.status_code >= 500:
                raise RetryLater(f"Slack HTTP {e.response.status_code}: {error}") from None
            raise Rejected(error, permanent=error in CHANNEL_ERRORS) from None
        except Exception as e:  # connection refused/reset, timeout
            raise RetryLater(f"{type(e).__name__}: {e}") from None


def build_alert(
    alert_id: int,
    channel: str,
    item: Item,
    spans: Sequence[Span],
    watchlists: Sequence[str],
    reporters: Sequence[str],
    story_id: int = 0,
) -> Alert:
    return Alert(
        id=alert_id,
        channel=channel,
        title=item.title,
        url=item.url,
        source=item.source,
        outlet=item.outlet,
        published=item.published,
        watchlists=tuple(watchlists),
        summary=summarize(item.text, [s for s in spans if s.field == "text"]),
        headline_only=item.headline_only,
        reporters=tuple(reporters),
        story_id=story_id,
    )


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0  # given up: needs a human (shown in logs; `status` comes later)
    queued: int = 0  # left for the next round


def deliver_pending(
    store: Store, sink: Sink, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> DeliveryReport:
    """Post every queued alert once. Raises SlackAuthError, leaving the rest queued.

    The first alert of a story in a channel becomes its top-level message; later ones reply in
    that message's thread and update it ("3 sources", the watchlists matched so far).
    """
    report = DeliveryReport()
    paused: set[str] = set()  # channels that asked us to wait: keep their order, try next round
    for queued in store.queued_alerts():
        if queued.channel in paused:
            report.queued += 1
            continue
        try:
            ts = _deliver_one(store, sink, queued, now())
        except RetryLater as e:
            log.warning("delivery deferred alert=%d channel=%s reason=%s", queued.id, queued.channel, e)
            store.mark_alert_attempt(queued.id, str(e), give_up=False)
            paused.add(queued.channel)
            report.queued += 1
            continue
        except Rejected as e:
            give_up = e.permanent or queued.attempts + 1 >= MAX_REJECTED_ATTEMPTS
            log.error(
                "delivery rejected alert=%d channel=%s error=%s gave_up=%s",
                queued.id,
                queued.channel,
                e,
                give_up,
            )
            store.mark_alert_attempt(queued.id, str(e), give_up=give_up)
            if give_up:
                report.failed += 1
            else:
                report.queued += 1
            continue
        store.mark_alert_sent(queued.id, ts, now())
        report.sent += 1
        log.info("alert sent alert=%d channel=%s ts=%s", queued.id, queued.channel, ts)
    return report


def _deliver_one(store: Store, sink: Sink, queued: QueuedAlert, now: datetime) -> str:
    reporters = store.story_sources(queued.story_id)
    alert = build_alert(
        queued.id, queued.channel, queued.item, queued.spans, queued.watchlists, reporters, queued.story_id
    )
    parent_post = store.story_post(queued.story_id, queued.channel)
    if parent_post is None:
        ts = sink.post(alert)
        store.save_story_post(
            StoryPost(queued.story_id, queued.channel, queued.item_id, ts, alert.watchlists), now
        )
        return ts
    parent_item, parent_spans = store.item(parent_post.item_id)
    watchlists = [*parent_post.watchlists, *(w for w in queued.watchlists if w not in parent_post.watchlists)]
    parent = build_alert(0, queued.channel, parent_item, parent_spans, watchlists, reporters, queued.story_id)
    ts = sink.reply(alert, parent, parent_post.ts)
    try:
        sink.update(parent, parent_post.ts)
    except (RetryLater, Rejected) as e:
        # The reply is posted; a stale "2 sources" on the parent is cosmetic, and the next reply
        # updates it again. Re-posting the reply to retry the update would be worse.
        log.warning("story update failed story=%d channel=%s reason=%s", queued.story_id, queued.channel, e)
    store.save_story_post(
        StoryPost(queued.story_id, queued.channel, parent_post.item_id, parent_post.ts, tuple(watchlists)),
        now,
    )
    return ts
