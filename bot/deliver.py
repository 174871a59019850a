"""Outbox -> Slack (or the console). The only module that talks to the Slack Web API.

Alerts wait in the outbox (the `alerts` table) until a sink accepts them; a Slack outage or
rate limit leaves them queued for the next round, so nothing is lost. Each alert records the
message ts once posted, so nothing is posted twice.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TextIO

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.errors import DeliveryError, SlackAuthError
from bot.model import Alert
from bot.render import render_console, render_slack
from bot.store import QueuedAlert, Store
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


class ConsoleSink:
    """Prints alerts: the bot's behaviour when no Slack token is configured."""

    name = "console"

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def post(self, alert: Alert) -> str:
        stream = self.stream or sys.stdout
        print(render_console(alert), file=stream, end="\n\n", flush=True)
        return "console"


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
        try:
            response = self.client.chat_postMessage(
                channel=alert.channel,
                text=message.text,
                blocks=message.blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
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
        except SlackAuthError:
            raise
        except Exception as e:  # connection refused/reset, timeout
            raise RetryLater(f"{type(e).__name__}: {e}") from None
        return str(response["ts"])


def alert_from_queued(queued: QueuedAlert) -> Alert:
    item = queued.item
    text_spans = [s for s in queued.spans if s.field == "text"]
    return Alert(
        id=queued.id,
        channel=queued.channel,
        title=item.title,
        url=item.url,
        source=item.source,
        outlet=item.outlet,
        published=item.published,
        watchlists=queued.watchlists,
        summary=summarize(item.text, text_spans),
        headline_only=item.headline_only,
    )


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0  # given up: needs a human (shown in logs; `status` comes later)
    queued: int = 0  # left for the next round


def deliver_pending(
    store: Store, sink: Sink, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> DeliveryReport:
    """Post every queued alert once. Raises SlackAuthError, leaving the rest queued."""
    report = DeliveryReport()
    paused: set[str] = set()  # channels that asked us to wait: keep their order, try next round
    for queued in store.queued_alerts():
        if queued.channel in paused:
            report.queued += 1
            continue
        alert = alert_from_queued(queued)
        try:
            ts = sink.post(alert)
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
