"""Where alerts go: the Sink protocol each destination implements, the console sink, and pacing.

bot/slack/sink.py implements it for Slack; the outbox (outbox.py) and digests know only the protocol.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol, TextIO

from bot.alerts.render import (
    MessageState,
    SlackMessage,
    render_console,
    render_console_message,
    render_console_reply,
)
from bot.model import Alert

METADATA_EVENT = "newsalert_alert"
# How far before an alert (or a digest) was due to look for its message after an interrupted
# attempt: a post may land in Slack a while after it was sent.
LOOKBACK = timedelta(minutes=10)


class Sink(Protocol):
    name: str
    # paced: deliver at Slack's pace (RateLimiter); reachable: the last call to the destination
    # was answered, so alerts waiting out an outage may go now (outbox.Deliverer._recovered).
    paced: bool
    reachable: bool

    def post(self, alert: Alert, *, plain: bool = False) -> str:
        """Deliver one alert; return its message ts. Raises RetryLater, Rejected or SlackAuthError."""
        ...

    def reply(self, alert: Alert, parent: Alert, thread_ts: str, *, plain: bool = False) -> str:
        """Post a later report of ``parent``'s story in its thread; return the reply's ts."""
        ...

    def update(self, parent: Alert, ts: str, state: MessageState | None = None) -> None:
        """Re-render the story's top-level message (more sources, more watchlists), keeping ``state``."""
        ...

    def find_posted(self, alert: Alert, since: datetime, thread_ts: str | None) -> str | None:
        """The ts of this alert's message if an earlier attempt did post it, else None."""
        ...

    def edit(self, channel: str, ts: str, message: SlackMessage) -> None:
        """Replace the message ``ts`` (a reply a story correction moved away). Raises RetryLater, Rejected."""
        ...

    def permalink(self, channel: str, ts: str) -> str | None:
        """A link to the message ``ts``, or None when the destination has none to give."""
        ...

    def post_message(
        self,
        channel: str,
        message: SlackMessage,
        event_type: str,
        payload: dict,
        *,
        thread_ts: str | None = None,
    ) -> str:
        """Post any message (a digest); metadata lets find_message recognise it after a crash."""
        ...

    def find_message(
        self, channel: str, since: datetime, event_type: str, payload: dict, *, thread_ts: str | None = None
    ) -> str | None: ...


class ConsoleSink:
    """Prints alerts: the bot's behaviour when no Slack token is configured."""

    name = "console"
    paced = False  # printing has no rate limit: 300 alerts print at once, not in five minutes
    reachable = True

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def _print(self, text: str) -> str:
        print(text, file=self.stream or sys.stdout, end="\n\n", flush=True)
        return "console"

    def post(self, alert: Alert, *, plain: bool = False) -> str:
        return self._print(render_console(alert))

    def reply(self, alert: Alert, parent: Alert, thread_ts: str, *, plain: bool = False) -> str:
        return self._print(render_console_reply(alert, parent))

    def update(self, parent: Alert, ts: str, state: MessageState | None = None) -> None:
        pass  # printed lines cannot change; the reply line already says how many sources

    def find_posted(self, alert: Alert, since: datetime, thread_ts: str | None) -> str | None:
        return None

    def edit(self, channel: str, ts: str, message: SlackMessage) -> None:
        self._print("  (an earlier message, changed)\n" + render_console_message(channel, message))

    def permalink(self, channel: str, ts: str) -> str | None:
        return None

    def post_message(
        self,
        channel: str,
        message: SlackMessage,
        event_type: str,
        payload: dict,
        *,
        thread_ts: str | None = None,
    ) -> str:
        return self._print(render_console_message(channel, message))

    def find_message(
        self, channel: str, since: datetime, event_type: str, payload: dict, *, thread_ts: str | None = None
    ) -> str | None:
        return None


def alert_payload(alert: Alert) -> dict[str, Any]:
    # The item key tells this alert from alert #N of another deployment posting to the channel.
    item = hashlib.sha1(f"{alert.source}\n{alert.url or alert.title}".encode())
    return {"alert_id": alert.id, "item": item.hexdigest()[:12]}


class RateLimiter:
    """One post per second per channel: Slack's documented pace.

    Slack tolerates "short bursts" above it, but how short is not documented; a burst that
    draws a 429 costs a Retry-After wait, so the default is no burst at all.
    """

    def __init__(
        self,
        # A tenth under one per second: Slack counts when a post arrives, and two posts sent a
        # second apart can arrive closer together than that.
        rate: float = 1 / 1.1,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.rate, self.burst, self.clock, self.sleep = rate, burst, clock, sleep
        self._tokens: dict[str, tuple[float, float]] = {}  # channel -> (tokens, at)

    def wait(self, channel: str) -> None:
        tokens, at = self._tokens.get(channel, (float(self.burst), self.clock()))
        now = self.clock()
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1:
            self.sleep((1 - tokens) / self.rate)
            now, tokens = self.clock(), 1.0
        self._tokens[channel] = (tokens - 1, now)
