"""One poll: fetch -> parse -> normalize -> match -> dedup -> store + outbox, then when to poll next.

The decisions (is this item new, does it alert, to which channels) are made here; the I/O is
delegated to fetch (network), store (SQLite) and, after the poll, deliver (Slack). When each
source is polled next is bot/ingest/schedule.py's decision, made here from what each answer and
feed said. A body pushed by a WebSub hub takes the same path from parse on (``ingest_pushed``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.config import Settings
from bot.errors import FetchError, ParseError
from bot.failpoints import failpoint
from bot.ingest import schedule
from bot.ingest.fetch import Limits, Validators, fetch_all
from bot.ingest.hints import feed_hints
from bot.ingest.ingest import Counts, Pending, alert_path, ingest, store_rest
from bot.ingest.pacing import RateCache, schedule_next
from bot.ingest.prepare import POOL_MIN_BYTES, Job, Prepared, Preparer
from bot.match.query import Matcher
from bot.model import FeedHints, Fetched, Source, SourceState, Subscription
from bot.ops import metrics
from bot.store import Store
from bot.stories.decide import Decision, decide
from bot.stories.embed import embed as _embed  # loaded on the first item that needs a vector
from bot.stories.fingerprint import Fingerprint
from bot.urls import redact

log = logging.getLogger("newsalert.pipeline")

POLL_BATCH = 250  # sources fetched, prepared and stored together: ~20 MB of bodies in memory
# The first batch is smaller: its alerts wait for nothing but its own fetch and preparation.
FIRST_BATCH = 25
# How many sources the alert path runs ahead of the rest (bot/ingest/ingest.py; see _Rests):
# a poll of fewer changed sources queues all its alerts first. Each waiting rest holds that
# source's unmatched items, ~0.1 MB for 50 items.
REST_LAG = 50
GROUP_ITEMS = 1000  # new items per commit, at most (see _CommitGroups)
GROUP_SECONDS = 0.25  # the longest a poll holds the write lock


@dataclass
class PollReport:
    polled: int = 0
    failed: int = 0
    new_items: int = 0
    matches: int = 0  # new items that matched at least one watchlist
    alerts_queued: int = 0
    held_back: int = 0  # matched, but older than the first-poll window: stored silently
    summarised: int = 0  # over a source's per-poll alert budget: counted in one summary alert

    def add(self, other: PollReport | Counts) -> None:
        for name in vars(other):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def limits_from(settings: Settings) -> Limits:
    return Limits(
        timeout=settings.fetch_timeout,
        max_bytes=settings.max_response_bytes,
        concurrency=settings.concurrency,
        user_agent=settings.user_agent,
        allow_private=settings.allow_private_sources,
    )


def flood_cutoff(state: SourceState, now: datetime, window: int | None) -> datetime | None:
    """Items published before the returned time are stored without alerting.

    Only a source's first successful poll, or its first after being down for longer than the
    window, is guarded: that is when a feed's whole backlog would otherwise arrive at once.
    """
    if window is None:
        return None
    span = timedelta(seconds=window)
    if state.last_success is None or now - state.last_success > span:
        return now - span
    return None


def poll(
    settings: Settings,
    store: Store,
    sources: Sequence[Source] | None = None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    due_only: bool = False,
    pool_min_bytes: int = POOL_MIN_BYTES,
    queued: Callable[[], None] | None = None,
    rates: RateCache | None = None,
) -> PollReport:
    """Poll ``sources`` (default: every active source in the database) once and queue their alerts.

    ``due_only`` (the scheduler) skips sources whose next poll is not due yet. ``queued`` is
    called after each commit that queued alerts, so they can be delivered while the poll goes on
    (`newsalert run` wakes its delivery thread with it). ``rates``: publishing counts shared
    with earlier polls (default: counted afresh for this one). Sources go in batches of
    POLL_BATCH (the first of FIRST_BATCH); their bodies are prepared in worker processes
    (bot/ingest/prepare.py, one per core once the poll looks like it has ``pool_min_bytes`` of
    them) while this process stores the ones already done, the alert path of each first
    (bot/ingest/ingest.py).
    """
    # The database holds the catalog (the config file seeds it; Slack and imports add to it).
    sources = store.catalog.active_sources() if sources is None else sources
    if due_only:
        due = store.sources.due_names(now())
        sources = [s for s in sources if s.name in due]
    watchlists = usable_watchlists(store, {w.name: w.query for w in store.catalog.active_watchlists()}, now)
    states = {s.name: store.sources.source_state(s.name) for s in sources}
    subscriptions = store.catalog.realtime_subscriptions()
    report = PollReport()
    rates = rates or RateCache(ttl=0)
    # The watchlists are compiled (again, together) only when a body needs matching. Each
    # source's body is read within settings.parse_timeout, or that source alone fails.
    with (
        Preparer(watchlists, pool_min_bytes=pool_min_bytes, timeout=settings.parse_timeout) as preparer,
        _CommitGroups(store, queued) as commits,
    ):
        rests = _Rests(settings, store, commits, subscriptions, rates, report)
        # In batches: only one batch's bodies are in memory at a time, however long the list.
        start = 0
        while start < len(sources):
            batch = sources[start : start + (POLL_BATCH if start else min(FIRST_BATCH, POLL_BATCH))]
            left = -(-(len(sources) - start) // len(batch))  # batches like this one still to go
            start += len(batch)
            _poll_batch(settings, store, batch, states, subscriptions, preparer, left, now, commits, rests)
        rests.finish(0)
    return report


def usable_watchlists(
    store: Store, watchlists: Mapping[str, str], now: Callable[[], datetime]
) -> dict[str, str]:
    """The watchlists that compile, each tried alone: one stored by an older version or a bad
    edit is disabled (recorded for `status`, logged with its name), and the others keep alerting."""
    good: dict[str, str] = {}
    faults: dict[str, str] = {}
    for name, query in watchlists.items():
        try:
            Matcher({name: query})
        except RecursionError:
            faults[name] = "query too deeply nested to compile"
        except Exception as e:  # any failure to compile disables this watchlist alone
            faults[name] = f"{type(e).__name__}: {e}"[:300]
        else:
            good[name] = query
    for name, error in faults.items():
        log.error("watchlist disabled name=%r reason=%s (fix it with /newsalert watchlist)", name, error)
    if faults or store.faults.watchlist_faults():  # the usual poll writes nothing
        store.faults.set_watchlist_faults(faults, watchlists, now())
    return good


def _poll_batch(
    settings: Settings,
    store: Store,
    sources: Sequence[Source],
    states: Mapping[str, SourceState],
    subscriptions: Sequence[Subscription],
    preparer: Preparer,
    batches_left: int,
    now: Callable[[], datetime],
    commits: _CommitGroups,
    rests: _Rests,
) -> None:
    """Fetch and prepare ``sources``, and run the alert path of each (its rest: see _Rests)."""
    report = rests.report
    validators = {s.name: Validators(states[s.name].etag, states[s.name].last_modified) for s in sources}
    results = fetch_all(sources, validators, limits_from(settings))
    # A 200 with the very bytes ingested last time (servers without ETag or Last-Modified) holds
    # nothing new: it is recorded as a success, and neither parsed nor ingested.
    body_hashes = {s.name: _body_hash(s, results[s.name]) for s in sources}
    jobs = [
        Job(source, outcome.body, outcome.headers, now())
        for source in sources
        if isinstance(outcome := results[source.name], Fetched)
        and not outcome.not_modified
        and body_hashes[source.name] != store.sources.body_hash(source.name)
    ]
    # In source order, one result per job, produced while the sources before are stored.
    prepared = zip(jobs, preparer.run(jobs, batches_left=batches_left), strict=True)
    to_prepare = {job.source.name for job in jobs}
    # What each source said about its next poll: the answer's headers, and the feed's own hints
    # (those of the last body read when this answer had none to read: a 304, the same bytes).
    remembered = store.sources.stored_feed_hints(s.name for s in sources if s.name not in to_prepare)
    batch = _Batch(sources)
    for source in sources:
        outcome = results.pop(source.name)  # its body is not needed once prepared: let it go
        found: list[Prepared] | FetchError | ParseError
        rests.finish(REST_LAG - 1)
        if source.name in to_prepare:
            job, found = next(prepared)
            fetched_at = job.fetched
        else:  # an error, a 304, or the same bytes as last time
            found = [] if isinstance(outcome, Fetched) else outcome
            fetched_at = now()
        report.polled += 1
        metrics.polled(source.name)
        if isinstance(found, (FetchError, ParseError)):
            with commits.source():
                report.failed += 1
                metrics.fetch_failed(source.name, found)
                batch.failed.append(
                    _record_failure(settings, store, source, states[source.name], found, fetched_at)
                )
            continue
        assert isinstance(outcome, Fetched)
        with commits.source():
            counts, pending = _alert_path(
                store, settings, source, found, states[source.name], subscriptions, fetched_at
            )
            report.add(counts)
            commits.count(counts.new_items, counts.alerts_queued)
        hints = remembered.get(source.name)
        if source.name in to_prepare:
            hints = feed_hints(outcome.body, outcome.headers, outcome.url)
            batch.read.append((source.name, hints, hints.self_url or outcome.url))
        batch.answers[source.name] = (schedule.answer(outcome.headers, hints, fetched_at), fetched_at)
        body_hash = body_hashes[source.name] if source.name in to_prepare else None
        rests.add(batch, pending, dataclasses.replace(outcome, body=b""), body_hash)  # the body is done with
    commits.commit_alerts()  # every alert of the batch is queued: deliver them while the rest is stored
    failpoint("after-alert-path")
    rests.close(batch)


@dataclass
class _Batch:
    """What schedule_next needs of one batch, once the rest of each of its sources is stored."""

    sources: Sequence[Source]
    answers: dict[str, tuple[schedule.Answer, datetime]] = field(default_factory=dict)  # and when
    read: list[tuple[str, FeedHints, str]] = field(default_factory=list)  # (source, hints, topic)
    failed: list[tuple[str, schedule.Decision]] = field(default_factory=list)
    waiting: int = 0  # sources whose rest is still to be stored
    closed: bool = False  # every source has had its alert path


class _Rests:
    """The sources whose alert path has run and whose rest (bot/ingest/ingest.py) is still to
    be stored, in source order, across batches; each batch is scheduled once its last is stored.

    The rest of a source is stored before the alert path of the source REST_LAG places after
    it: a fixed count, not "whenever the workers are behind", because an unmatched item may
    join the story of a matched one from a later source, and which ones it can see must not
    depend on timing.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        commits: _CommitGroups,
        subscriptions: Sequence[Subscription],
        rates: RateCache,
        report: PollReport,
    ):
        self.settings, self.store, self.commits = settings, store, commits
        self.subscriptions, self.rates, self.report = subscriptions, rates, report
        self._waiting: deque[tuple[_Batch, Pending, Fetched, str | None]] = deque()

    def add(self, batch: _Batch, pending: Pending, outcome: Fetched, body_hash: str | None) -> None:
        batch.waiting += 1
        self._waiting.append((batch, pending, outcome, body_hash))

    def close(self, batch: _Batch) -> None:
        batch.closed = True
        self._schedule_if_done(batch)

    def finish(self, keep: int) -> None:
        """Store the oldest rests until ``keep`` are left."""
        while len(self._waiting) > keep:
            batch, pending, outcome, body_hash = self._waiting.popleft()
            counts = _finish_source(self.store, self.commits, pending, outcome, body_hash, self.subscriptions)
            self.report.add(counts)
            batch.waiting -= 1
            self._schedule_if_done(batch)

    def _schedule_if_done(self, batch: _Batch) -> None:
        if batch.closed and not batch.waiting:
            schedule_next(
                self.settings, self.store, batch.sources, batch.answers, batch.read, batch.failed, self.rates
            )


class _CommitGroups:
    """Consecutive sources' transactions committed together, every GROUP_ITEMS new items or
    GROUP_SECONDS, whichever comes first, at once for the first alerts of a batch, and at the
    end of a batch.

    A commit per source was an eighth of a first poll, and the full-text index is built faster
    in bigger batches; the write lock is still given up several times a second, for delivery
    and Slack commands. Each source's writes are a savepoint inside the group's transaction. A
    crash, or an error that stops the poll, loses the uncommitted sources' work together with
    their ETags, so the next poll fetches them again: nothing is lost or doubled.
    """

    def __init__(self, store: Store, queued: Callable[[], None] | None = None):
        self._store = store
        self._queued = queued  # told after a commit that queued alerts
        self._group: ExitStack | None = None
        self._items = self._alerts = 0
        self._opened = 0.0
        self._alerted = False  # a commit of this batch has queued alerts already

    def __enter__(self) -> _CommitGroups:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._group is not None:
            group, self._group = self._group, None
            group.__exit__(*exc)  # type: ignore[arg-type]
            if exc[0] is None:
                self._committed()

    @contextmanager
    def source(self) -> Iterator[None]:
        if self._group is None:
            self._group = ExitStack()
            self._group.enter_context(self._store.transaction())
            self._items, self._alerts, self._opened = 0, 0, time.monotonic()
        yield
        # The first alerts wait for nothing: an analyst hears of the first match at once.
        first_alerts = self._alerts and not self._alerted
        if first_alerts or self._items >= GROUP_ITEMS or time.monotonic() - self._opened >= GROUP_SECONDS:
            self._commit()

    def commit_alerts(self) -> None:
        """Commit now if the open group queued alerts (so delivery can read them)."""
        if self._group is not None and self._alerts:
            self._commit()

    def count(self, new_items: int, alerts: int = 0) -> None:
        self._items += new_items
        self._alerts += alerts

    def _commit(self) -> None:
        group, self._group = self._group, None
        assert group is not None
        group.close()
        self._committed()

    def _committed(self) -> None:
        if self._alerts:
            self._alerted = True
            if self._queued is not None:
                self._queued()


def _alert_path(
    store: Store,
    settings: Settings,
    source: Source,
    prepared: Sequence[Prepared],
    state: SourceState,
    subscriptions: Sequence[Subscription],
    fetched_at: datetime,
) -> tuple[Counts, Pending]:
    """One source's matched items, their stories and alerts, all or nothing (bot/ingest/ingest.py)."""
    guard = _guard(settings, state, fetched_at)
    if not prepared:  # a 304, or the same bytes: no savepoint for nothing (most of a steady poll)
        return alert_path(store, source, prepared, subscriptions, fetched_at, *guard)
    with store.transaction():
        found = alert_path(store, source, prepared, subscriptions, fetched_at, *guard)
        failpoint("before-commit")
    return found


def _finish_source(
    store: Store,
    commits: _CommitGroups,
    pending: Pending,
    outcome: Fetched,
    body_hash: str | None,
    subscriptions: Sequence[Subscription],
) -> Counts:
    """The rest of one source's items, and its fetch state, all or nothing.

    ``body_hash``: of the body just prepared, to be remembered (None when nothing was parsed).
    The fetch state (ETag, body hash) is written only here: until this commits, the next poll
    fetches and reads the body again (see bot/ingest/ingest.py)."""
    source = pending.source
    with commits.source():
        if outcome.permanent_url and outcome.permanent_url != source.url:
            log.warning(
                "source moved permanently name=%r from=%s to=%s (update the config to match)",
                source.name,
                redact(source.url),
                redact(outcome.permanent_url),
            )
            store.sources.move_source(source.name, outcome.permanent_url)
        with store.transaction():
            counts = store_rest(store, pending, subscriptions)
            store.sources.record_fetch_success(
                source.name,
                source.url,
                pending.fetched_at,
                etag=outcome.etag,
                last_modified=outcome.last_modified,
            )
            if body_hash is not None:
                store.sources.set_body_hash(source.name, body_hash)
        commits.count(counts.new_items, counts.alerts_queued)
    first = pending.first
    metrics.new_items(source.name, counts.new_items + first.new_items)
    log.info(
        "source polled name=%r status=%d entries=%d new=%d matched=%d queued=%d",
        source.name,
        outcome.status,
        pending.entries,
        counts.new_items + first.new_items,
        first.matches,
        counts.alerts_queued + first.alerts_queued,
    )
    return counts


def ingest_pushed(
    settings: Settings, store: Store, source: Source, body: bytes, headers: Mapping[str, str], now: datetime
) -> PollReport:
    """A body a WebSub hub pushed for ``source``: parsed, matched, stored and queued exactly as a
    poll's body would be (same preparation, same ``ingest``, same first-poll guard). The source's
    fetch state (validators, body hash, next poll) is the poll's and is left alone.

    Raises ParseError when the body is not a feed."""
    watchlists = usable_watchlists(
        store, {w.name: w.query for w in store.catalog.active_watchlists()}, lambda: now
    )
    # Read in a worker process within parse_timeout, like a fetched body: it is as untrusted.
    with Preparer(watchlists, timeout=settings.parse_timeout) as preparer:
        (found,) = preparer.run([Job(source, body, dict(headers), now)])
    if isinstance(found, ParseError):
        raise found
    state = store.sources.source_state(source.name)
    report = PollReport()
    with store.transaction():
        subscriptions = store.catalog.realtime_subscriptions()
        report.add(ingest(store, source, found, subscriptions, now, *_guard(settings, state, now)))
    metrics.new_items(source.name, report.new_items)
    log.info(
        "source pushed name=%r entries=%d new=%d matched=%d queued=%d",
        source.name,
        len(found),
        report.new_items,
        report.matches,
        report.alerts_queued,
    )
    return report


def _guard(settings: Settings, state: SourceState, fetched_at: datetime) -> tuple[datetime | None, timedelta]:
    """The settings' first-poll cutoff (see flood_cutoff) and story window, for this fetch."""
    return flood_cutoff(state, fetched_at, settings.first_poll_window), timedelta(
        seconds=settings.story_window
    )


def _record_failure(
    settings: Settings,
    store: Store,
    source: Source,
    state: SourceState,
    error: FetchError | ParseError,
    now: datetime,
) -> tuple[str, schedule.Decision]:
    """Log it, and hold the source back: until Retry-After if given, else backoff with jitter."""
    gone = isinstance(error, FetchError) and error.gone
    retry_after = error.retry_after if isinstance(error, FetchError) else None
    failures = state.consecutive_failures + 1
    limits = schedule.bounds(source, settings.min_interval, settings.max_interval)
    decision = schedule.after_failure(source.name, limits, now, failures, retry_after)
    if gone:
        log.error(
            "source gone name=%r url=%s reason=%s: disabled (remove it, or fix its URL and restart)",
            source.name,
            redact(source.url),
            error.reason,
        )
    else:
        log.warning(
            "source failed name=%r url=%s reason=%s failures=%d retry_in=%ds",
            source.name,
            redact(source.url),
            error.reason,
            failures,
            (decision.next_at - now).total_seconds(),
        )
    store.sources.record_fetch_failure(
        source.name, source.url, now, error.reason, retry_at=decision.next_at, disable=gone
    )
    return source.name, decision


PARSER_VERSION = "2"  # bump when parse/normalize change what an unchanged body yields (2: issue 15)


def _body_hash(source: Source, outcome: Fetched | FetchError) -> str | None:
    """A hash of a 200 body, and of what decides how it is parsed (type, URL); None otherwise.

    ("Digest" in this project means the Slack briefing; this is only the body's hash.)"""
    if isinstance(outcome, FetchError) or outcome.not_modified:
        return None
    # PARSER_VERSION: a better parser (or normalizer) should read unchanged feeds again once.
    hashed = hashlib.sha256(f"{PARSER_VERSION}\n{source.type}\n{source.url}\n".encode())
    hashed.update(outcome.body)
    return hashed.hexdigest()


def assign_story(
    store: Store, fp: Fingerprint, title: str, text: str, seen: datetime, window: timedelta
) -> tuple[int, Decision]:
    """The story a new item belongs to (the best story seen within ``window`` if the model says
    it is the same event, else a new one), and the decision that says so."""
    index = store.stories.story_index(seen - window)
    decision = decide(index, store.story_model.model(), _embed, fp, title, text, seen, seen - window)
    story = decision.story_id
    for bridged in decision.merge:
        store.stories.merge_stories(bridged, story)  # type: ignore[arg-type]  (merge implies a story)
    return (story if story is not None else store.stories.new_story(seen)), decision
