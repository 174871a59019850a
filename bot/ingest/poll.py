"""One poll: fetch -> parse -> normalize -> match -> dedup -> store + outbox, then when to poll next.

The decisions (is this item new, does it alert, to which channels) are made here; the I/O is
delegated to fetch (network), store (SQLite) and, after the poll, deliver (Slack). When each
source is polled next is bot/ingest/schedule.py's decision, made here from what each answer and
feed said. A body pushed by a WebSub hub takes the same path from parse on (``ingest_pushed``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.config import Settings
from bot.errors import FetchError, ParseError
from bot.failpoints import failpoint
from bot.ingest import schedule
from bot.ingest.fetch import Limits, Validators, fetch_all
from bot.ingest.hints import feed_hints
from bot.ingest.pacing import RateCache, schedule_next
from bot.ingest.prepare import POOL_MIN_BYTES, Job, Prepared, Preparer
from bot.match.query import Matcher
from bot.model import FeedHints, Fetched, Source, SourceState, Subscription
from bot.ops import metrics
from bot.store import Store
from bot.stories.decide import Decision, decide, signals_of
from bot.stories.embed import embed as _embed  # loaded on the first item that needs a vector
from bot.stories.fingerprint import Fingerprint
from bot.urls import redact

log = logging.getLogger("newsalert.pipeline")

POLL_BATCH = 250  # sources fetched, prepared and stored together: ~20 MB of bodies in memory
GROUP_ITEMS = 1000  # new items per commit, at most (see _CommitGroups)
GROUP_SECONDS = 0.25  # the longest a poll holds the write lock
# Alerts one source may queue to one channel per poll; the rest become one summary alert
# (outbox.py), so a source publishing hundreds of matches at once cannot bury everyone else's.
SOURCE_ALERT_BUDGET = 20


@dataclass
class PollReport:
    polled: int = 0
    failed: int = 0
    new_items: int = 0
    matches: int = 0  # new items that matched at least one watchlist
    alerts_queued: int = 0
    held_back: int = 0  # matched, but older than the first-poll window: stored silently
    summarised: int = 0  # over a source's per-poll alert budget: counted in one summary alert

    def add(self, other: PollReport) -> None:
        for name in vars(self):
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


def plan_alerts(matched: Iterable[str], subscriptions: Sequence[Subscription]) -> dict[str, list[str]]:
    """channel -> the watchlists it subscribes to that this item matched (one alert per channel)."""
    matched = list(matched)
    plan: dict[str, set[str]] = {}
    for sub in subscriptions:
        if hits := set(matched) & set(sub.watchlists):
            plan.setdefault(sub.channel, set()).update(hits)
    return {channel: [w for w in matched if w in names] for channel, names in plan.items()}


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
    with earlier polls (default: counted afresh for this one). Sources go
    in batches of POLL_BATCH; their bodies are prepared in worker processes (bot/ingest/prepare.py,
    one per core once the poll looks like it has ``pool_min_bytes`` of them) while this process
    stores the ones already done.
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
    with Preparer(watchlists, pool_min_bytes=pool_min_bytes, timeout=settings.parse_timeout) as preparer:
        # In batches: only one batch's bodies are in memory at a time, however long the list.
        for start in range(0, len(sources), POLL_BATCH):
            batch = sources[start : start + POLL_BATCH]
            left = -(-(len(sources) - start) // POLL_BATCH)  # this batch and those after it
            report.add(
                _poll_batch(settings, store, batch, states, subscriptions, preparer, left, now, queued, rates)
            )
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
    queued: Callable[[], None] | None,
    rates: RateCache,
) -> PollReport:
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
    report = PollReport()
    # In source order, one result per job, produced while the sources before are stored.
    prepared = zip(jobs, preparer.run(jobs, batches_left=batches_left), strict=True)
    to_prepare = {job.source.name for job in jobs}
    # What each source said about its next poll: the answer's headers, and the feed's own hints
    # (those of the last body read when this answer had none to read: a 304, the same bytes).
    remembered = store.sources.stored_feed_hints(s.name for s in sources if s.name not in to_prepare)
    answers: dict[str, tuple[schedule.Answer, datetime]] = {}  # and when it was fetched
    read: list[tuple[str, FeedHints, str]] = []  # (source, hints, WebSub topic) of each body read
    failed: list[tuple[str, schedule.Decision]] = []
    with _CommitGroups(store, queued) as commits:
        for source in sources:
            outcome = results.pop(source.name)  # its body is not needed once prepared: let it go
            found: list[Prepared] | FetchError | ParseError
            if source.name in to_prepare:
                job, found = next(prepared)
                fetched_at = job.fetched
            else:  # an error, a 304, or the same bytes as last time
                found = [] if isinstance(outcome, Fetched) else outcome
                fetched_at = now()
            report.polled += 1
            metrics.polled(source.name)
            with commits.source():
                if isinstance(found, (FetchError, ParseError)):
                    report.failed += 1
                    metrics.fetch_failed(source.name, found)
                    failed.append(
                        _record_failure(settings, store, source, states[source.name], found, fetched_at)
                    )
                    continue
                assert isinstance(outcome, Fetched)
                stored = _store_source(
                    store,
                    settings,
                    source,
                    outcome,
                    found,
                    body_hashes[source.name] if source.name in to_prepare else None,
                    states[source.name],
                    subscriptions,
                    fetched_at,
                )
                report.add(stored)
                commits.count(stored.new_items, stored.alerts_queued)
            hints = remembered.get(source.name)
            if source.name in to_prepare:
                hints = feed_hints(outcome.body, outcome.headers, outcome.url)
                read.append((source.name, hints, hints.self_url or outcome.url))
            answers[source.name] = (schedule.answer(outcome.headers, hints, fetched_at), fetched_at)
    schedule_next(settings, store, sources, answers, read, failed, rates)
    return report


class _CommitGroups:
    """Consecutive sources' transactions committed together, every GROUP_ITEMS new items or
    GROUP_SECONDS, whichever comes first, and at the end of a batch.

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
        if self._items >= GROUP_ITEMS or time.monotonic() - self._opened >= GROUP_SECONDS:
            group, self._group = self._group, None
            group.close()
            self._committed()

    def count(self, new_items: int, alerts: int = 0) -> None:
        self._items += new_items
        self._alerts += alerts

    def _committed(self) -> None:
        if self._alerts and self._queued is not None:
            self._queued()


def _store_source(
    store: Store,
    settings: Settings,
    source: Source,
    outcome: Fetched,
    prepared: Sequence[Prepared],
    body_hash: str | None,
    state: SourceState,
    subscriptions: Sequence[Subscription],
    fetched_at: datetime,
) -> PollReport:
    """One source's new items, their stories and alerts, and its fetch state, all or nothing.

    ``body_hash``: of the body just prepared, to be remembered (None when nothing was parsed)."""
    if outcome.permanent_url and outcome.permanent_url != source.url:
        log.warning(
            "source moved permanently name=%r from=%s to=%s (update the config to match)",
            source.name,
            redact(source.url),
            redact(outcome.permanent_url),
        )
        store.sources.move_source(source.name, outcome.permanent_url)
    with store.transaction():
        report = _ingest_prepared(store, settings, source, prepared, state, subscriptions, fetched_at)
        store.sources.record_fetch_success(
            source.name, source.url, fetched_at, etag=outcome.etag, last_modified=outcome.last_modified
        )
        if body_hash is not None:
            store.sources.set_body_hash(source.name, body_hash)
        failpoint("before-commit")
    metrics.new_items(source.name, report.new_items)
    log.info(
        "source polled name=%r status=%d entries=%d new=%d matched=%d queued=%d",
        source.name,
        outcome.status,
        len(prepared),
        report.new_items,
        report.matches,
        report.alerts_queued,
    )
    return report


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
    with store.transaction():
        report = _ingest_prepared(
            store, settings, source, found, state, store.catalog.realtime_subscriptions(), now
        )
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


def _ingest_prepared(
    store: Store,
    settings: Settings,
    source: Source,
    prepared: Sequence[Prepared],
    state: SourceState,
    subscriptions: Sequence[Subscription],
    fetched_at: datetime,
) -> PollReport:
    """``ingest`` with the settings' first-poll guard and story window (the caller holds a transaction)."""
    cutoff = flood_cutoff(state, fetched_at, settings.first_poll_window)
    return ingest(
        store,
        source,
        prepared,
        subscriptions,
        fetched_at,
        cutoff,
        timedelta(seconds=settings.story_window),
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


def ingest(
    store: Store,
    source: Source,
    prepared: Sequence[Prepared],
    subscriptions: Sequence[Subscription],
    fetched_at: datetime,
    cutoff: datetime | None,
    story_window: timedelta = timedelta(hours=72),
    budget: int = SOURCE_ALERT_BUDGET,
) -> PollReport:
    """Store the new items of one source and queue their alerts (the caller holds a transaction).

    Only items that matched a watchlist are indexed for clustering: they are the stories a
    channel can hear about. Every other item is still looked up in that index, so a copy of an
    alerted story joins its thread even when its own wording matches nothing; but two copies of
    a story nobody watches are not folded together (each is its own story), which saves most
    of a first poll's clustering work.
    """
    report = PollReport()
    subscribed = {s.channel for s in subscriptions}
    # Channels that muted this source (`/newsalert mute source`, "Mute source here") get nothing from it.
    muted = store.people.channels_muting_source(source.name, fetched_at)
    known = store.items.items_by_guid(source.name, [p.item.guid for p in prepared])
    originals = store.items.items_by_url_key([p.url_key for p in prepared])
    since = fetched_at - story_window
    index = store.stories.story_index(since)
    queued: dict[str, int] = {}  # channel -> alerts queued from this source in this poll
    overflow: dict[str, tuple[int, list[str], int]] = {}  # channel -> (first item, watchlists, count)
    model = store.story_model.model()
    for p in prepared:
        item, fp, matches, key = p.item, p.fingerprint, p.matches, p.url_key
        if (found := known.get(item.guid)) is not None:
            item_id, title, text = found
            if (title, text) != (item.title, item.text):
                # An edited article (corrected headline, expanded text): keep the latest words, but
                # it is the same item, so it never alerts again.
                store.items.update_item_text(item_id, item.title, item.text)
                known[item.guid] = (item_id, item.title, item.text)
            continue
        # Same canonical URL already stored (from another source, or re-guided): the same article,
        # so it joins that item's story without alerting or counting as another outlet.
        if key and (original := originals.get(key)) is not None:
            item_id = store.items.add_item(item, duplicate_of=original[0], story_id=original[1], key=key)
            known[item.guid] = (item_id, item.title, item.text)
            report.new_items += 1
            continue
        decision = decide(
            index, model, _embed, fp, item.title, item.text, item.fetched, since, indexed=bool(matches)
        )
        story = decision.story_id
        story_id = story if story is not None else store.stories.new_story(item.fetched)
        item_id = store.items.add_item(item, story_id=story_id, key=key, new_story=story is None)
        known[item.guid] = (item_id, item.title, item.text)
        if key:
            originals[key] = (item_id, story_id)
        report.new_items += 1
        if not matches and story is None:
            continue  # a story of its own that no watchlist wants: nothing more to do
        store.story_model.save_decision(item_id, story_id, decision)
        if decision.merge:
            # An analyst's "Not this story" holds: a bridge never merges a story split off by hand
            # back into another, nor another into it (bot/app/corrections.py).
            kept_apart = store.moves.split_stories([story_id, *decision.merge])
            for bridged in decision.merge:
                if story_id not in kept_apart and bridged not in kept_apart:
                    store.stories.merge_stories(bridged, story_id)
        plan: dict[str, list[str]] = {}
        if matches:
            signals = decision.signals or signals_of(item.title, item.text, _embed)
            store.stories.add_fingerprint(item_id, story_id, item.fetched, fp, signals)
            store.items.add_matches(item_id, dict(matches))
            report.matches += 1
            metrics.matched(matches)
            plan = plan_alerts(matches, subscriptions)
        # Channels already alerted about this story hear of every further report of it, in the
        # story's thread, even when this copy's wording matches no watchlist by itself.
        if story is not None:
            for channel in store.stories.story_channels(story_id) & subscribed:
                plan.setdefault(channel, [])
        for channel in muted:
            plan.pop(channel, None)
        if not plan:
            continue
        if cutoff is not None and item.published < cutoff:
            report.held_back += 1
            continue
        for channel, names in plan.items():
            if queued.get(channel, 0) >= budget:
                first, first_names, count = overflow.get(channel, (item_id, names, 0))
                overflow[channel] = (first, first_names, count + 1)
                report.summarised += 1
                continue
            if store.outbox.enqueue_alert(item_id, channel, names, fetched_at):
                queued[channel] = queued.get(channel, 0) + 1
                report.alerts_queued += 1
    for channel, (first, names, count) in overflow.items():
        log.warning("source flooding name=%r channel=%s summarised=%d", source.name, channel, count)
        if store.outbox.enqueue_alert(first, channel, names, fetched_at, summary_count=count):
            report.alerts_queued += 1
    return report


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
