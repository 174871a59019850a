"""Outbox -> Slack (or the console). The only module that talks to the Slack Web API.

Guarantees (README, "Reliability"): every alert is written to the outbox in the same
transaction as its item, and stays there until Slack has it. Delivery is at-least-once with a
check that makes it effectively once: each message carries the alert id in Slack message
metadata, and an attempt that may have reached Slack without an answer (a crash, a timeout, a
reset connection) looks for that id in the channel before posting again. One worker at a time
delivers a channel (a claim in SQLite), so two `newsalert run` on one database never both post.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.alerts.render import (
    MessageState,
    SlackMessage,
    render_console,
    render_console_message,
    render_console_reply,
    render_plain,
    render_reply,
    render_slack,
)
from bot.alerts.summarize import summarize
from bot.errors import DeliveryError, SlackAuthError
from bot.failpoints import failpoint
from bot.model import Alert, Item, QueuedAlert, Span, StoryPost
from bot.ops import metrics
from bot.store import Store

log = logging.getLogger("newsalert.deliver")

# Errors that no retry will fix until a human acts (re-install, re-invite, unarchive).
AUTH_ERRORS = {
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "org_login_required",
    "ekm_access_denied",
}
CHANNEL_ERRORS = {"channel_not_found", "not_in_channel", "is_archived", "restricted_action"}
BLOCK_ERRORS = {"invalid_blocks", "invalid_blocks_format"}
# Anything else Slack rejects gets this many tries before it becomes a dead letter.
MAX_REJECTED_ATTEMPTS = 3
METADATA_EVENT = "newsalert_alert"
CLAIM_STALE = timedelta(minutes=10)  # a claim not renewed for this long belongs to a dead worker
LONGEST_WAIT = 10.0  # a rate-limited channel is retried in the same round if Slack asks for <= this
MAX_ROUNDS = 10  # short rate limits a channel may wait out in one delivery round
PARALLEL_CHANNELS = 16  # channels delivered at once (each is still one post at a time, in order)
LOOKBACK = timedelta(minutes=10)  # how far before an alert was queued to look for its message


class RetryLater(DeliveryError):
    """Slack did not take the message this time; the alert stays queued.

    ``maybe_posted``: no answer came back (timeout, reset), so the post may have happened.
    ``retry_after``: Slack said when to come back (HTTP 429).
    """

    def __init__(self, message: str, *, maybe_posted: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.maybe_posted = maybe_posted
        self.retry_after = retry_after


class Rejected(DeliveryError):
    """Slack refused this message with an error code."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


class Sink(Protocol):
    name: str

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


class SlackSink:
    name = "slack"

    def __init__(self, token: str, base_url: str, *, timeout: int = 30):
        # Posts get no automatic retry: a retried post whose first answer was lost would post twice.
        # The outbox retries them instead, after looking for the first one (find_posted).
        self.client = WebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=[])
        # Reads are idempotent, so these may retry on their own: rate limits (honouring
        # Retry-After), 5xx, and dropped connections.
        self.reader = WebClient(
            token=token,
            base_url=base_url,
            timeout=timeout,
            retry_handlers=[
                RateLimitErrorRetryHandler(max_retry_count=2),
                ServerErrorRetryHandler(max_retry_count=2),
                ConnectionErrorRetryHandler(max_retry_count=2),
            ],
        )

    def check_auth(self) -> dict:
        """auth.test once at start so a bad token fails loudly rather than on every alert."""
        return self._call(self.reader.auth_test).data

    def post(self, alert: Alert, *, plain: bool = False) -> str:
        message = render_slack(alert, actions=True)  # triage and feedback buttons on every alert
        return self._post(alert, render_plain(message) if plain else message)

    def reply(self, alert: Alert, parent: Alert, thread_ts: str, *, plain: bool = False) -> str:
        message = render_reply(alert)
        return self._post(alert, render_plain(message) if plain else message, thread_ts=thread_ts)

    def update(self, parent: Alert, ts: str, state: MessageState | None = None) -> None:
        message = render_slack(parent, state, actions=True)
        self._call(
            self.client.chat_update, channel=parent.channel, ts=ts, text=message.text, blocks=message.blocks
        )

    def find_posted(self, alert: Alert, since: datetime, thread_ts: str | None) -> str | None:
        return self.find_message(alert.channel, since, METADATA_EVENT, _payload(alert), thread_ts=thread_ts)

    def post_message(
        self,
        channel: str,
        message: SlackMessage,
        event_type: str,
        payload: dict,
        *,
        thread_ts: str | None = None,
    ) -> str:
        """Post one message, text only and unfurls off, tagged with metadata to find it again."""
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        response = self._call(
            self.client.chat_postMessage,
            channel=channel,
            text=message.text,
            blocks=message.blocks or None,
            unfurl_links=False,
            unfurl_media=False,
            metadata={"event_type": event_type, "event_payload": payload},
            **extra,
        )
        return str(response["ts"])

    def find_message(
        self, channel: str, since: datetime, event_type: str, payload: dict, *, thread_ts: str | None = None
    ) -> str | None:
        """The ts of a message this bot posted with this metadata since ``since``, if any.

        Needs channels:history (and groups:history for private channels) to read metadata.
        """
        kwargs: dict[str, Any] = {
            "channel": channel,
            "include_all_metadata": True,
            "limit": 200,
            "oldest": f"{since.timestamp():.6f}",
        }
        if thread_ts:
            response = self._call(self.reader.conversations_replies, ts=thread_ts, **kwargs)
        else:
            response = self._call(self.reader.conversations_history, **kwargs)
        for message in response.get("messages", []):
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == event_type and (metadata.get("event_payload") or {}) == payload:
                return str(message["ts"])
        return None

    def _post(self, alert: Alert, message: SlackMessage, thread_ts: str | None = None) -> str:
        return self.post_message(alert.channel, message, METADATA_EVENT, _payload(alert), thread_ts=thread_ts)

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
                retry_after = _seconds(e.response.headers.get("Retry-After"))
                raise RetryLater(
                    f"rate limited (Retry-After {retry_after}s)", retry_after=retry_after
                ) from None
            if e.response.status_code >= 500:
                raise RetryLater(f"Slack HTTP {e.response.status_code}: {error}") from None
            raise Rejected(error) from None
        except Exception as e:  # no answer: refused, reset, timed out — it may or may not have arrived
            raise RetryLater(f"{type(e).__name__}: {e}", maybe_posted=True) from None


def _payload(alert: Alert) -> dict[str, Any]:
    # The item key tells this alert from alert #N of another deployment posting to the channel.
    item = hashlib.sha1(f"{alert.source}\n{alert.url or alert.title}".encode())
    return {"alert_id": alert.id, "item": item.hexdigest()[:12]}


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value or 1))
    except ValueError:
        return 1.0


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


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _dead_workers(holders: Sequence[str]) -> list[str]:
    """Claim holders on this host whose process is gone (killed, crashed): their claims are free."""
    host = socket.gethostname()
    dead = []
    for holder in holders:
        name, _, rest = holder.partition(":")
        pid = rest.partition(":")[0]
        if name != host or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.append(holder)
        except PermissionError:
            pass
    return dead


def retry_delay(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s … capped at 15 minutes: Slack outages are usually short."""
    return timedelta(seconds=min(900, 5 * 2 ** min(attempts, 10)))


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
    adopted: int = 0  # found already posted by an earlier, interrupted attempt
    failed: int = 0  # dead letters: need a human (`newsalert outbox`)
    queued: int = 0  # left for a later round
    muted: int = 0  # not posted: the story or its source was muted in that channel
    waiting_channels: set[str] = field(default_factory=set)

    def add(self, other: DeliveryReport) -> None:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            setattr(self, name, mine | value if isinstance(mine, set) else mine + value)


@dataclass
class Deliverer:
    """Delivers the outbox: channel by channel, each under a claim, oldest alert first."""

    store: Store
    sink: Sink
    worker: str = field(default_factory=worker_id)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] = time.sleep
    limiter: RateLimiter = field(default_factory=RateLimiter)

    def run(self) -> DeliveryReport:
        """Every channel with due alerts, in parallel: Slack's limit is per channel, so ten
        channels of twenty alerts take about twenty seconds rather than two hundred."""
        channels = self.store.outbox.channels_with_pending_alerts(self.now())
        reports: list[DeliveryReport] = []
        if len(channels) <= 1 or self.store.path is None:
            reports = [self._channel_rounds(channel, self) for channel in channels]
        else:
            with ThreadPoolExecutor(max_workers=min(PARALLEL_CHANNELS, len(channels))) as pool:
                reports = list(pool.map(self._channel_in_thread, channels))
        report = DeliveryReport()
        for part in reports:
            report.add(part)
        report.queued = self.store.count("alerts", "status = 'queued'")
        return report

    def _channel_in_thread(self, channel: str) -> DeliveryReport:
        # SQLite connections belong to the thread that opened them: one per worker.
        assert self.store.path is not None
        store = Store.open(self.store.path)
        try:
            return self._channel_rounds(channel, replace(self, store=store))
        finally:
            store.close()

    @staticmethod
    def _channel_rounds(channel: str, deliverer: Deliverer) -> DeliveryReport:
        """One channel until it is done, or Slack asks it to wait longer than LONGEST_WAIT."""
        report = DeliveryReport()
        for _ in range(MAX_ROUNDS):  # another round only after a short rate limit
            wait = deliverer._channel(channel, report)
            if wait is None or wait > LONGEST_WAIT:
                break
            deliverer.sleep(wait)
        return report

    def _channel(self, channel: str, report: DeliveryReport) -> float | None:
        """Deliver one channel's due alerts; returns seconds to wait when Slack rate-limits it."""
        now = self.now()
        if not self.store.outbox.claim_channel(
            channel,
            self.worker,
            now,
            stale_before=now - CLAIM_STALE,
            dead_workers=_dead_workers(self.store.outbox.claim_holders()),
        ):
            log.info("channel busy channel=%s (another worker is delivering it)", channel)
            report.waiting_channels.add(channel)
            return None
        try:
            for queued in self.store.outbox.pending_alerts(channel, now):
                try:
                    try:
                        self._one(queued, report)
                    except Rejected as e:
                        if e.error not in BLOCK_ERRORS or queued.plain_text:
                            raise
                        # Slack refused the blocks: the same alert once more, as plain mrkdwn text.
                        log.warning(
                            "blocks rejected alert=%d channel=%s error=%s: sending as plain text",
                            queued.id,
                            channel,
                            e.error,
                        )
                        self.store.outbox.mark_alert_plain_text(queued.id, e.error)
                        try:
                            self._one(replace(queued, plain_text=True, in_flight=False), report)
                        except Rejected as again:
                            self._dead(queued, f"{e.error}, then as plain text: {again.error}", report)
                except RetryLater as e:
                    log.warning("delivery deferred alert=%d channel=%s reason=%s", queued.id, channel, e)
                    delay = (
                        timedelta(seconds=e.retry_after)
                        if e.retry_after is not None
                        else retry_delay(queued.attempts)
                    )
                    self.store.outbox.mark_alert_retry(
                        queued.id,
                        str(e),
                        not_before=self.now() + delay,
                        in_flight=queued.in_flight or e.maybe_posted,
                    )
                    report.waiting_channels.add(channel)
                    return e.retry_after  # keep the channel's order: nothing after this one goes first
                except Rejected as e:
                    self._rejected(queued, e, report)
                    if e.error in CHANNEL_ERRORS:
                        return None
                # Renew the claim as we go, so a long channel is not taken over mid-way.
                self.store.outbox.claim_channel(
                    channel, self.worker, self.now(), stale_before=self.now() - CLAIM_STALE
                )
        finally:
            self.store.outbox.release_channel(channel, self.worker)
        return None

    def _one(self, queued: QueuedAlert, report: DeliveryReport) -> None:
        store, now = self.store, self.now()
        # Checked here, not only when the alert is queued: a mute clicked while it waited counts too.
        if muted := store.people.alert_muted(queued.channel, queued.story_id, queued.item.source, now):
            log.info("alert muted alert=%d channel=%s (%s)", queued.id, queued.channel, muted)
            store.outbox.mark_alert_muted(queued.id, muted)
            report.muted += 1
            return
        reporters = store.stories.story_sources(queued.story_id)
        alert = build_alert(
            queued.id,
            queued.channel,
            queued.item,
            queued.spans,
            queued.watchlists,
            reporters,
            queued.story_id,
        )
        parent_post = store.stories.story_post(queued.story_id, queued.channel)
        thread_ts = parent_post.ts if parent_post else None
        ts = None
        if queued.in_flight:
            since = (queued.created_at or now) - LOOKBACK
            ts = self.sink.find_posted(alert, since, thread_ts)
            if ts:
                log.info(
                    "alert already posted alert=%d channel=%s ts=%s (adopted)", queued.id, queued.channel, ts
                )
                report.adopted += 1
        store.outbox.mark_alert_in_flight(queued.id)
        if parent_post is None:
            if ts is None:
                self.limiter.wait(queued.channel)
                ts = self.sink.post(alert, plain=queued.plain_text)
            store.stories.save_story_post(
                StoryPost(queued.story_id, queued.channel, queued.item_id, ts, alert.watchlists), now
            )
        else:
            parent_item, parent_spans = store.items.item(parent_post.item_id)
            watchlists = (
                *parent_post.watchlists,
                *(w for w in queued.watchlists if w not in parent_post.watchlists),
            )
            parent = build_alert(
                0, queued.channel, parent_item, parent_spans, watchlists, reporters, queued.story_id
            )
            if ts is None:
                self.limiter.wait(queued.channel)
                ts = self.sink.reply(alert, parent, parent_post.ts, plain=queued.plain_text)
            try:
                state = story_state(store, parent_post, parent_item.source, now)
                self.sink.update(parent, parent_post.ts, state)
            except (RetryLater, Rejected) as e:
                # The reply is posted; a stale "2 sources" on the parent is cosmetic and the next
                # reply updates it again. Re-posting the reply to retry the update would be worse.
                log.warning(
                    "story update failed story=%d channel=%s reason=%s", queued.story_id, queued.channel, e
                )
            store.stories.save_story_post(
                StoryPost(queued.story_id, queued.channel, parent_post.item_id, parent_post.ts, watchlists),
                now,
            )
        failpoint("after-post")
        store.outbox.mark_alert_sent(queued.id, ts, self.now())
        metrics.alert_sent(queued.created_at, self.now())
        store.catalog.set_channel_broken(queued.channel, None)
        report.sent += 1
        log.info("alert sent alert=%d channel=%s ts=%s", queued.id, queued.channel, ts)

    def _rejected(self, queued: QueuedAlert, e: Rejected, report: DeliveryReport) -> None:
        if e.error in CHANNEL_ERRORS:
            self.store.catalog.set_channel_broken(queued.channel, e.error)
            self._dead(queued, e.error, report, why="subscription marked broken")
        elif e.error in BLOCK_ERRORS or queued.attempts + 1 >= MAX_REJECTED_ATTEMPTS:
            self._dead(queued, e.error, report)
        else:
            log.warning(
                "delivery rejected alert=%d channel=%s error=%s: will retry",
                queued.id,
                queued.channel,
                e.error,
            )
            self.store.outbox.mark_alert_retry(
                queued.id, e.error, not_before=self.now() + retry_delay(queued.attempts), in_flight=False
            )

    def _dead(self, queued: QueuedAlert, error: str, report: DeliveryReport, why: str = "") -> None:
        log.error(
            "alert dead-lettered alert=%d channel=%s error=%s %s(see `newsalert outbox`)",
            queued.id,
            queued.channel,
            error,
            f"{why}; " if why else "",
        )
        self.store.outbox.mark_alert_dead(queued.id, error)
        report.failed += 1


def story_state(store: Store, post: StoryPost, source: str, now: datetime) -> MessageState:
    """Triage and feedback on a story's message in its channel, to show under the alert."""
    return MessageState(
        source=source, **store.people.message_state(post.channel, post.story_id, post.item_id, now)
    )


def render_story_post(store: Store, post: StoryPost, now: datetime) -> SlackMessage:
    """The story's top-level message as it should now read, buttons and triage state included:
    what the Slack app puts in place after a button click (the deliverer renders the same)."""
    item, spans = store.items.item(post.item_id)
    parent = build_alert(
        0,
        post.channel,
        item,
        spans,
        post.watchlists,
        store.stories.story_sources(post.story_id),
        post.story_id,
    )
    return render_slack(parent, story_state(store, post, item.source, now), actions=True)


def deliver_pending(store: Store, sink: Sink, **options: Any) -> DeliveryReport:
    """Deliver everything due in the outbox once. Raises SlackAuthError, leaving the rest queued."""
    return Deliverer(store, sink, **options).run()
