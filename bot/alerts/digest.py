"""Digest subscriptions: scheduled briefings that cover every matching story exactly once.

A digest covers the stories first stored by the bot (not published: a late item must not fall
through) after the end of the previous digest's window, up to the moment it is built, counted in
item ids, not seconds. The window end is stored per subscription when the digest is sent, so a
restart, a skipped run or a DST change neither loses nor repeats a story.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from bot.alerts.outbox import CLAIM_STALE, dead_workers, worker_id  # the outbox's claim rules
from bot.alerts.render import (
    BLOCK_TEXT_LIMIT,
    TEXT_LIMIT,
    SlackMessage,
    escape,
    escape_url,
    fit,
    format_time,
    plural,
    render_plain,
    shorten,
    slack_time,
)
from bot.alerts.sink import LOOKBACK, RateLimiter
from bot.alerts.summarize import summarize
from bot.errors import Rejected, RetryLater, ScheduleError
from bot.model import Subscription

HEADER_LIMIT = 150  # Slack's limit for a header block's text

if TYPE_CHECKING:
    from bot.alerts.sink import Sink
    from bot.store import Store

log = logging.getLogger("newsalert.digest")

MAX_BLOCKS = 50  # Slack's limit per message
BLOCK_ERRORS = {"invalid_blocks", "invalid_blocks_format", "msg_too_long"}
DEFAULT_TOP = 15
_DAYS = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
_CRON_DOW = {"0": "sun", "1": "mon", "2": "tue", "3": "wed", "4": "thu", "5": "fri", "6": "sat", "7": "sun"}
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown timezone {name!r} (use an IANA name such as Europe/Berlin)") from None


def trigger(schedule: str, tz: str) -> CronTrigger:
    """ "daily 09:00", "weekdays 08:30", "weekly mon 09:00" or a 5-field cron expression."""
    zone = timezone(tz)
    words = schedule.lower().split()
    if len(words) == 2 and words[0] in ("daily", "weekdays"):
        hour, minute = _clock(words[1])
        day_of_week = "mon-fri" if words[0] == "weekdays" else "*"
        return CronTrigger(day_of_week=day_of_week, hour=hour, minute=minute, timezone=zone)
    if len(words) == 3 and words[0] == "weekly":
        day = words[1][:3]
        if day not in _DAYS:
            raise ScheduleError(f"unknown day {words[1]!r} (mon, tue, … sun)")
        hour, minute = _clock(words[2])
        return CronTrigger(day_of_week=day, hour=hour, minute=minute, timezone=zone)
    if len(words) == 5:
        minute, hour, day, month, day_of_week = words
        try:
            # APScheduler 3 numbers weekdays from Monday = 0; cron from Sunday = 0. Names are
            # unambiguous, so cron's numbers are turned into names first.
            return CronTrigger(
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=_cron_days(day_of_week),
                timezone=zone,
            )
        except ValueError as e:
            raise ScheduleError(f"bad cron expression {schedule!r}: {e}") from None
    raise ScheduleError(
        f'bad schedule {schedule!r}: use "daily HH:MM", "weekdays HH:MM", "weekly DAY HH:MM" '
        'or a 5-field cron expression such as "30 8 * * 1-5"'
    )


def _clock(text: str) -> tuple[int, int]:
    match = _TIME.match(text)
    if not match:
        raise ScheduleError(f"bad time {text!r} (HH:MM, 24-hour)")
    return int(match.group(1)), int(match.group(2))


def _cron_days(field: str) -> str:
    def one(token: str) -> str:
        return _CRON_DOW.get(token, token)

    parts = []
    for item in field.split(","):
        step = ""
        if "/" in item:
            item, step = item.split("/", 1)
            step = "/" + step
        parts.append("-".join(one(t) for t in item.split("-")) + step)
    return ",".join(parts)


def next_digest(sub: Subscription, after: datetime) -> datetime | None:
    return trigger(sub.schedule, sub.timezone).get_next_fire_time(None, after)


def previous_digest(sub: Subscription, now: datetime, *, since: datetime) -> datetime | None:
    """The last scheduled time in [since, now], if any: a digest that should have gone out."""
    fire = trigger(sub.schedule, sub.timezone)
    last = None
    at = fire.get_next_fire_time(None, since)
    while at is not None and at <= now:
        last = at
        at = fire.get_next_fire_time(at, at + timedelta(microseconds=1))
    return last


@dataclass(frozen=True)
class DigestStory:
    story_id: int
    title: str
    url: str
    sources: int
    first_seen: datetime
    watchlist: str  # the first of the subscription's watchlists that it matched
    lead: str


@dataclass(frozen=True)
class Digest:
    subscription_id: str
    channel: str
    watchlists: tuple[str, ...]
    since: datetime
    until: datetime
    stories: tuple[DigestStory, ...]  # all of them, ranked
    top: int = DEFAULT_TOP

    @property
    def shown(self) -> tuple[DigestStory, ...]:
        return self.stories[: self.top]


def rank(stories: Sequence[DigestStory]) -> list[DigestStory]:
    """Most-reported first, then most recent."""
    return sorted(stories, key=lambda s: (-s.sources, -s.first_seen.timestamp(), s.story_id))


def render_digest(digest: Digest) -> list[SlackMessage]:
    """One or more messages within Slack's limits (50 blocks, 3,000 characters per section); a
    watchlist's heading always starts the part that holds its first stories."""
    names = ", ".join(digest.watchlists)
    since = slack_time(digest.since)
    if not digest.stories:
        text = f"No new stories for {escape(names)} since {since}."
        return [
            SlackMessage(
                text=f"No new stories for {escape(names)} since {format_time(digest.since)}.",
                blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            )
        ]
    count = plural(len(digest.stories), "new story", "new stories")
    title = shorten(f"Digest: {names}", HEADER_LIMIT)
    groups: list[list[dict]] = [
        [
            {"type": "header", "text": {"type": "plain_text", "text": title}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{count} since {since}"}]},
        ]
    ]
    for watchlist in digest.watchlists:
        stories = [s for s in digest.shown if s.watchlist == watchlist]
        if not stories:
            continue
        heading = shorten(f"{watchlist} · {plural(len(stories), 'story', 'stories')}", HEADER_LIMIT)
        group: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": heading}}]
        text = ""
        for story in stories:
            line = _line(story)
            if text and len(text) + 1 + len(line) > BLOCK_TEXT_LIMIT:
                group.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
                text = ""
            text = f"{text}\n{line}" if text else line
        if text:
            group.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        groups.append(group)
    hidden = len(digest.stories) - len(digest.shown)
    if hidden:
        # One search per watchlist, with that watchlist's own query (the name is not a search word).
        hints = " · ".join(
            f"`/newsalert search watchlist:{escape(w)} since:{_days(digest)}d`" for w in digest.watchlists[:3]
        )
        groups[-1].append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(f"and {hidden} more — {hints}")}]}
        )
    fallback = escape(f"Digest: {names} — ") + f"{count} since {format_time(digest.since)}"
    fallback = fit(fallback, TEXT_LIMIT - 20)
    return [
        SlackMessage(text=fallback if i == 0 else f"{fallback} (part {i + 1})", blocks=part)
        for i, part in enumerate(_split(groups))
    ]


def _line(story: DigestStory) -> str:
    title = escape(shorten(story.title, 200)) or "(untitled)"
    link = f"<{escape_url(story.url)}|{title}>" if story.url else title
    sources = plural(story.sources, "source")
    summary = summarize(story.lead, [], limit=160, max_sentences=1).text
    return f"• {link} — {sources}" + (f" — {escape(summary)}" if summary else "")


def _days(digest: Digest) -> int:
    return max(1, -(-int((digest.until - digest.since).total_seconds()) // 86400))


def _split(groups: list[list[dict]]) -> list[list[dict]]:
    """Groups of blocks packed into messages of at most MAX_BLOCKS; a group starts a new message
    rather than leave its heading at the bottom of one and its stories in the next."""
    parts: list[list[dict]] = [[]]
    for group in groups:
        for i in range(0, len(group), MAX_BLOCKS):
            chunk = group[i : i + MAX_BLOCKS]
            if parts[-1] and len(parts[-1]) + len(chunk) > MAX_BLOCKS:
                parts.append([])
            parts[-1].extend(chunk)
    return parts


# --- building and sending --------------------------------------------------------------------
# (store and sink are passed in: this module owns when and what, not SQL or Slack calls)

DIGEST_EVENT = "newsalert_digest"


def find_subscription(store: Store, subscription_id: str) -> tuple[Subscription, datetime, datetime | None]:
    for sid, sub, created, covered in store.catalog.subscriptions():
        if sid == subscription_id:
            if sub.mode != "digest":
                raise ScheduleError(f"subscription {subscription_id} is realtime, not a digest")
            return sub, created, covered
    raise ScheduleError(f"no active subscription {subscription_id!r} (see `newsalert subscriptions`)")


def build_digest(store: Store, subscription_id: str, until: datetime) -> Digest:
    """The digest that would be sent now: everything since the last one (or the subscription's start)."""
    sub, created, covered = find_subscription(store, subscription_id)
    unfinished = store.digests.unfinished_digest(subscription_id)
    if unfinished:
        since, seq_start, seq_end = unfinished.since, unfinished.seq_start, unfinished.seq_end
    else:
        since = covered or created
        seq_start, seq_end = store.digests.covered_seq(subscription_id, created), store.digests.last_seq()
    return _digest(store, sub, subscription_id, since, until, seq_start, seq_end)


def _digest(
    store: Store,
    sub: Subscription,
    subscription_id: str,
    since: datetime,
    until: datetime,
    start: int,
    end: int,
) -> Digest:
    stories = []
    for story_id, watchlist, first_seen in store.digests.digest_stories(sub.watchlists, start, end):
        items = store.stories.story_items(story_id)
        lead = next((item for _, item, dup in items if dup is None), items[0][1])
        stories.append(
            DigestStory(
                story_id,
                lead.title,
                lead.url,
                len(store.stories.story_sources(story_id)),
                first_seen,
                watchlist,
                lead.text,
            )
        )
    return Digest(subscription_id, sub.channel, sub.watchlists, since, until, tuple(rank(stories)), sub.top)


RATE_LIMIT_TRIES = 5  # 429s a digest part waits out in one run before it is left for the next
LONGEST_RATE_WAIT = 60.0  # seconds: a longer Retry-After ends this run (the window stays open)
LINK_LIMIT = 500  # characters: a longer link is dropped (title kept) when Slack refuses the blocks
_LINK = re.compile(r"<([^|<>]*)\|([^<>]*)>")


def send_digest(
    store: Store,
    sink: Sink,
    subscription_id: str,
    now: datetime,
    *,
    sleep: Callable[[float], None] = time.sleep,
    limiter: RateLimiter | None = None,
    worker: str | None = None,
    claim_stale: timedelta = CLAIM_STALE,
    resume_only: bool = False,
) -> Digest:
    """Post the digest and move the subscription's window to ``now`` — exactly once.

    The window is recorded before posting; a crash after Slack took the messages is found on
    the next attempt by the metadata they carry, and that window is completed, not re-sent. A
    part Slack refuses is sent again within limits (long links dropped, then plain text); one
    refused even so closes the digest as 'failed' (logged) rather than leaving it 'sending'.
    Rate limits are waited out here, parts paced like alerts. Raises RetryLater when Slack
    stays unavailable: the row stays 'sending' and the next run finishes it. ``resume_only``:
    only finish an interrupted digest, never begin a window (another worker claimed this one).
    """
    sub, created, covered = find_subscription(store, subscription_id)
    worker = worker or worker_id()
    unfinished = store.digests.unfinished_digest(subscription_id)
    record = None
    if unfinished:  # finish that window first; the next one starts after it
        gone = dead_workers(store.digests.digest_workers()) + store.leases.silent_workers(now, claim_stale)
        record = store.digests.claim_unfinished(
            subscription_id, worker, now, stale_before=now - claim_stale, dead_workers=gone
        )
    elif resume_only:  # finishing another's interrupted digest, which it has finished since
        pass
    elif store.digests.begin_digest(subscription_id, covered or created, now, now, worker=worker):
        record = store.digests.unfinished_digest(subscription_id)
    if record is None:
        log.info("digest busy subscription=%s (another sender has it)", subscription_id)
        return Digest(subscription_id, sub.channel, sub.watchlists, covered or created, now, (), sub.top)
    digest_id, until = record.id, record.until
    digest = _digest(store, sub, subscription_id, record.since, until, record.seq_start, record.seq_end)
    messages = [] if (sub.skip_empty and not digest.stories) else render_digest(digest)
    limiter = limiter or RateLimiter(sleep=sleep)
    sent: list[str] = []
    refused = ""
    for part, message in enumerate(messages):
        payload = {"digest_id": digest_id, "subscription": subscription_id, "part": part}
        ts = None
        if unfinished:
            ts = sink.find_message(sub.channel, until - LOOKBACK, DIGEST_EVENT, payload)
        if ts is None:
            try:
                ts = _post_part(sink, sub.channel, message, payload, sleep, limiter)
            except Rejected as e:
                refused = e.error
                log.error(
                    "digest part refused subscription=%s channel=%s part=%d error=%s",
                    subscription_id,
                    sub.channel,
                    part,
                    e.error,
                )
                continue
        sent.append(ts)
    store.digests.finish_digest(
        digest_id, subscription_id, until, sent, status="failed" if refused and not sent else "sent"
    )
    log.info(
        "digest sent subscription=%s channel=%s stories=%d messages=%d",
        subscription_id,
        sub.channel,
        len(digest.stories),
        len(sent),
    )
    return digest


def _post_part(
    sink: Sink,
    channel: str,
    message: SlackMessage,
    payload: dict,
    sleep: Callable[[float], None],
    limiter: RateLimiter,
) -> str:
    """One part: waiting out short rate limits, then re-rendered within limits if refused."""
    attempts = [message, _short_links(message), render_plain(message)]
    for n, attempt in enumerate(attempts):
        for _ in range(RATE_LIMIT_TRIES):
            if sink.paced:
                limiter.wait(channel)
            try:
                return sink.post_message(channel, attempt, DIGEST_EVENT, payload)
            except RetryLater as e:
                if e.retry_after is None or e.retry_after > LONGEST_RATE_WAIT or e.maybe_posted:
                    raise
                log.warning("digest rate limited channel=%s: waiting %.0fs", channel, e.retry_after)
                sleep(e.retry_after)
            except Rejected as e:
                if e.error not in BLOCK_ERRORS or n == len(attempts) - 1:
                    raise
                log.warning("digest blocks refused channel=%s error=%s: re-rendering", channel, e.error)
                break
        else:
            raise RetryLater(f"rate limited {RATE_LIMIT_TRIES} times")
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _short_links(message: SlackMessage) -> SlackMessage:
    """The message with every link longer than LINK_LIMIT replaced by its title, sections cut to size."""

    def cut(match: re.Match[str]) -> str:
        return match.group(0) if len(match.group(1)) <= LINK_LIMIT else match.group(2)

    blocks = []
    for block in message.blocks:
        if block.get("type") == "section" and "text" in block:
            text = _LINK.sub(cut, block["text"]["text"])
            block = {**block, "text": {**block["text"], "text": shorten(text, BLOCK_TEXT_LIMIT)}}
        blocks.append(block)
    return SlackMessage(text=message.text, blocks=blocks)


MISFIRE = timedelta(minutes=5)  # the scheduler's misfire grace: a cron job runs at most this late


def digest_period(store: Store, subscription_id: str, now: datetime) -> str:
    """The scheduled time a digest sent now belongs to (ISO, UTC): the same on every worker, so
    one claim per window (Worker.once). A missed digest sent on start belongs to its last
    scheduled time since the window it follows, as a cron run does to its own."""
    sub, created, covered = find_subscription(store, subscription_id)
    at = previous_digest(sub, now, since=now - MISFIRE) or previous_digest(sub, now, since=covered or created)
    return (at or now).astimezone(UTC).isoformat()


def missed_digests(store: Store, now: datetime, grace: timedelta) -> list[str]:
    """Digest subscriptions whose last scheduled time passed unsent while the bot was down.

    Sent once on start when that time is within ``grace``; older ones are not sent late, but
    nothing is lost: the next digest's window starts where the last sent one ended.
    """
    due = []
    for sid, sub, created, covered in store.catalog.subscriptions():
        if sub.mode != "digest":
            continue
        last_sent = covered or created
        missed = previous_digest(sub, now, since=last_sent + timedelta(microseconds=1))
        if store.digests.unfinished_digest(sid) or (missed is not None and now - missed <= grace):
            due.append(sid)
    return due
