"""The outbox: delivering queued alerts to a Sink (Slack or the console), once each, in order per channel.

Guarantees (README, "Reliability"): every alert is written to the outbox in the same
transaction as its item, and stays there until Slack has it. Delivery is at-least-once with a
check that makes it effectively once: each message carries the alert id in Slack message
metadata, and an attempt that may have reached Slack without an answer (a crash, a timeout, a
reset connection) looks for that id in the channel before posting again. One worker at a time
delivers a channel (a claim in the database, renewed by the worker's heartbeat and taken over when
it stops), so several `newsalert run` on one database never both post to a channel.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.alerts.compose import build_alert, story_state
from bot.alerts.render import SlackMessage, escape, render_moved
from bot.alerts.sink import LOOKBACK, METADATA_EVENT, RateLimiter, Sink
from bot.errors import Rejected, RetryLater
from bot.failpoints import failpoint
from bot.model import Alert, QueuedAlert, StoryPost
from bot.ops import metrics
from bot.store import Store
from bot.stories.fingerprint import clean_headline, tokens

log = logging.getLogger("newsalert.deliver")

CHANNEL_ERRORS = {"channel_not_found", "not_in_channel", "is_archived", "restricted_action"}
BLOCK_ERRORS = {"invalid_blocks", "invalid_blocks_format"}
# Anything else Slack rejects gets this many tries before it becomes a dead letter.
MAX_REJECTED_ATTEMPTS = 3
CLAIM_STALE = timedelta(minutes=10)  # a claim not renewed for this long belongs to a dead worker
LONGEST_WAIT = 10.0  # a rate-limited channel is retried in the same round if Slack asks for <= this
MAX_ROUNDS = 10  # short rate limits a channel may wait out in one delivery round
PARALLEL_CHANNELS = 16  # channels delivered at once (each is still one post at a time, in order)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def dead_workers(holders: Sequence[str]) -> list[str]:
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


# A copy whose headline words are nearly all in headlines the thread already shows (a news-search
# copy of the lead report, a wire headline re-run) would be a near-identical reply: it is folded
# into the parent's source count instead. On the labeled sets (tests/data/stories/), this folds 13%
# of the independent copies and 17% of the syndicated ones, about two thirds of them headline-only
# news-search copies; copies worded their own way keep their replies.
FOLD_COVER = 0.8


def says_nothing_new(title: str, shown: Sequence[str]) -> bool:
    """True when ``title``'s content words are almost all in the headlines already ``shown``."""
    words = set(tokens(clean_headline(title)))
    if not words or not shown:
        return False
    seen = {t for other in shown for t in tokens(clean_headline(other))}
    return len(words & seen) / len(words) >= FOLD_COVER


def retry_delay(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s … capped at 2 minutes: Slack outages are usually short, and a
    successful Slack call clears the wait anyway (Deliverer._recovered)."""
    return timedelta(seconds=min(120, 5 * 2 ** min(attempts, 10)))


def summary_message(source: str, count: int) -> SlackMessage:
    """The one alert that stands for a flooding source's matches beyond its per-poll budget."""
    query = f'source:"{source}" since:1h'
    text = (
        f"Source *{escape(source)}* published {count} more matching items: "
        f"see `/newsalert search {escape(query)}`"
    )
    return SlackMessage(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}])


@dataclass
class DeliveryReport:
    sent: int = 0
    adopted: int = 0  # found already posted by an earlier, interrupted attempt
    failed: int = 0  # dead letters: need a human (`newsalert outbox`)
    queued: int = 0  # left for a later round
    muted: int = 0  # not posted: the story or its source was muted in that channel
    folded: int = 0  # copies whose headline said nothing new: counted on the parent, no reply
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
    # A claim not renewed for this long is another worker's to take. `newsalert run` passes its
    # worker lease: its heartbeat renews its claims, so only a dead worker's go stale.
    claim_stale: timedelta = CLAIM_STALE

    def run(self) -> DeliveryReport:
        """Every channel with due alerts, in parallel: Slack's limit is per channel, so ten
        channels of twenty alerts take about twenty seconds rather than two hundred."""
        self._recovered()
        channels = self.store.outbox.channels_with_pending_alerts(self.now())
        channels += [c for c in self.store.moves.channels_to_edit() if c not in channels]
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

    def _recovered(self) -> None:
        """Slack answered (auth.test, a post): alerts waiting out an outage go on this round."""
        if getattr(self.sink, "reachable", False) and (cleared := self.store.outbox.clear_outage_backoff()):
            log.info("slack reachable again: %d waiting alerts due now", cleared)

    def _pace(self, channel: str) -> None:
        # Slack's pace is Slack's: the console (no token) prints as fast as it can.
        if self.sink.paced:
            self.limiter.wait(channel)

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
        gone = dead_workers(self.store.outbox.claim_holders())
        gone += self.store.leases.silent_workers(now, self.claim_stale)
        if not self.store.outbox.claim_channel(
            channel, self.worker, now, stale_before=now - self.claim_stale, dead_workers=gone
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
                        outage=e.retry_after is None,
                    )
                    report.waiting_channels.add(channel)
                    return e.retry_after  # keep the channel's order: nothing after this one goes first
                except Rejected as e:
                    self._rejected(queued, e, report)
                    if e.error in CHANNEL_ERRORS:
                        return None
                # Renew the claim as we go, so a long channel is not taken over mid-way; one
                # taken over all the same (this worker was thought dead) is left to its new owner.
                if not self.store.outbox.claim_channel(
                    channel, self.worker, self.now(), stale_before=self.now() - self.claim_stale
                ):
                    log.warning("channel taken over channel=%s (this worker was silent too long)", channel)
                    return None
            self._edit_moved(channel)
        finally:
            self.store.outbox.release_channel(channel, self.worker)
        return None

    def _edit_moved(self, channel: str) -> None:
        """Thread replies "Not this story" moved: once their item's own alert is posted, each is
        changed to say where it went (with a link), under the channel's claim like the posts."""
        store = self.store
        for move in store.moves.moves_to_edit(channel):
            item, _ = store.items.item(move.item_id)
            alert = build_alert(0, channel, item, (), (), ())
            link = self.sink.permalink(channel, move.new_ts) if move.new_ts else None
            try:
                self.sink.edit(channel, move.old_ts, render_moved(alert, link, move.user_id))
            except RetryLater as e:
                log.warning("moved reply not edited yet channel=%s ts=%s: %s", channel, move.old_ts, e)
                return  # the next round tries again: the delivery job's minute at the latest (run)
            except Rejected as e:  # deleted in Slack, or no longer ours to edit: nothing to retry
                log.warning("moved reply not edited channel=%s ts=%s: %s", channel, move.old_ts, e.error)
            store.moves.mark_move_edited(move.id, self.now())

    def _one(self, queued: QueuedAlert, report: DeliveryReport) -> None:
        store, now = self.store, self.now()
        # The round's list was read before: a correction from Slack may have moved the item to
        # another story since, and it goes where that story is now (and under that story's mutes).
        queued = replace(queued, story_id=store.items.story_of(queued.item_id))
        # Checked here, not only when the alert is queued: a mute clicked while it waited counts too.
        if muted := store.people.alert_muted(queued.channel, queued.story_id, queued.item.source, now):
            # A mute for a while holds the alert until it ends (it arrives then); one for ever drops it.
            if ends := store.people.mute_ends(queued.channel, queued.story_id, queued.item.source, now):
                log.info(
                    "alert held alert=%d channel=%s (%s) until=%s", queued.id, queued.channel, muted, ends
                )
                store.outbox.hold_alert(queued.id, f"{muted} until {ends.isoformat()}", ends)
            else:
                log.info("alert muted alert=%d channel=%s (%s)", queued.id, queued.channel, muted)
                store.outbox.mark_alert_muted(queued.id, muted)
            report.muted += 1
            return
        if queued.summary_count:
            self._summary(queued, report)
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
        watchlists = queued.watchlists
        if parent_post is None:
            if ts is None:
                self._pace(queued.channel)
                ts = self.sink.post(alert, plain=queued.plain_text)
            failpoint("after-post")
            placed = record_delivery(store, queued, None, ts, watchlists, self.now())
        else:
            parent_item, _ = store.items.item(parent_post.item_id)
            watchlists = (
                *parent_post.watchlists,
                *(w for w in queued.watchlists if w not in parent_post.watchlists),
            )
            parent_spans = store.items.spans_for(parent_post.item_id, watchlists)
            parent = build_alert(
                0, queued.channel, parent_item, parent_spans, watchlists, reporters, queued.story_id
            )
            shown = store.outbox.thread_titles(queued.story_id, queued.channel)
            folded = ts is None and says_nothing_new(queued.item.title, shown)
            if folded:
                ts = parent_post.ts  # delivered as one more source on the parent, not as a reply
            elif ts is None:
                self._pace(queued.channel)
                ts = self.sink.reply(alert, parent, parent_post.ts, plain=queued.plain_text)
            failpoint("after-post")
            placed = record_delivery(store, queued, parent_post, ts, watchlists, self.now())
            if placed:
                report.folded += folded
                # Only a parent that is still the story's: a folded one says so, and stays so.
                self._update_parent(queued, parent, parent_post, parent_item.source)
        if not placed:
            log.info(
                "alert queued again alert=%d channel=%s: its story moved while it was posted (ts=%s)",
                queued.id,
                queued.channel,
                ts,
            )
            return
        metrics.alert_sent(queued.created_at, self.now())
        store.catalog.set_channel_broken(queued.channel, None)
        report.sent += 1
        log.info("alert sent alert=%d channel=%s ts=%s", queued.id, queued.channel, ts)

    def _update_parent(self, queued: QueuedAlert, parent: Alert, post: StoryPost, source: str) -> None:
        try:
            state = story_state(self.store, post, source, self.now())
            self.sink.update(parent, post.ts, state)
        except (RetryLater, Rejected) as e:
            # The reply is posted; a stale "2 sources" on the parent is cosmetic and the next
            # reply updates it again. Re-posting the reply to retry the update would be worse.
            log.warning(
                "story update failed story=%d channel=%s reason=%s", queued.story_id, queued.channel, e
            )

    def _summary(self, queued: QueuedAlert, report: DeliveryReport) -> None:
        """A flooding source's overflow: one message, outside any story thread."""
        payload = {"alert_id": queued.id, "summary": queued.summary_count}
        ts = None
        if queued.in_flight:
            since = (queued.created_at or self.now()) - LOOKBACK
            ts = self.sink.find_message(queued.channel, since, METADATA_EVENT, payload)
        self.store.outbox.mark_alert_in_flight(queued.id)
        if ts is None:
            self._pace(queued.channel)
            message = summary_message(queued.item.source, queued.summary_count)
            ts = self.sink.post_message(queued.channel, message, METADATA_EVENT, payload)
        self.store.outbox.mark_alert_sent(queued.id, ts, self.now())
        report.sent += 1
        log.info(
            "flood summary sent alert=%d channel=%s source=%r items=%d",
            queued.id,
            queued.channel,
            queued.item.source,
            queued.summary_count,
        )

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


def record_delivery(
    store: Store,
    queued: QueuedAlert,
    parent_post: StoryPost | None,
    ts: str,
    watchlists: tuple[str, ...],
    now: datetime,
) -> bool:
    """Mark the alert sent as ``ts`` and keep its story's parent record, in one transaction;
    False when a correction from Slack (bot/app/corrections.py) moved its item while it was
    being posted, so the message went where the story no longer is: the alert is then queued
    again, and the next round posts it in its story's thread now (after the alerts that
    correction queued again, in the channel's order). What it posted stays where it landed,
    like the replies a merge leaves in the folded thread; the metadata check of the next
    attempt looks only where it now goes, so it is not taken for the new post."""
    channel = queued.channel
    with store.transaction():
        story = store.items.story_of(queued.item_id)
        if parent_post is None:
            placed = store.stories.story_post(story, channel) is None
            if placed:  # its first message in the channel: the story's parent there
                store.stories.save_story_post(StoryPost(story, channel, queued.item_id, ts, watchlists), now)
        else:
            # Only the existing record is updated, never inserted: a folded parent's record
            # stays gone, and a reply is recorded only where its story's thread still is.
            placed = store.stories.update_story_post(
                StoryPost(story, channel, parent_post.item_id, parent_post.ts, watchlists)
            )
        store.outbox.mark_alert_sent(queued.id, ts, now)
        if not placed:  # delivered to the wrong place: from scratch, like a corrected alert
            store.outbox.requeue_alert(queued.id, now)
    return placed


def deliver_pending(store: Store, sink: Sink, **options: Any) -> DeliveryReport:
    """Deliver everything due in the outbox once. Raises SlackAuthError, leaving the rest queued."""
    return Deliverer(store, sink, **options).run()
