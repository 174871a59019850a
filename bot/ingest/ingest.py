"""Storing one source's prepared items in two steps: the alert path first, the rest after.

``alert_path`` does what an alert needs: it dedups every entry against what is stored, and
stores, clusters, indexes and queues the items a watchlist matched. ``store_rest`` does what no
alert waits for: the items nobody watches (their story look-ups, the inserts, in one statement
per table) and the edits of items already stored; it also queues the thread follow-ups of the
unwatched copies of alerted stories. A poll runs the first for each source as its body is
prepared, committing the first alerts at once so delivery can start, and the second a fixed
number of sources later (bot/ingest/poll.py, REST_LAG); ``ingest`` runs both for one source
(a WebSub push). The caller holds the transaction of each step.

Between the two steps the source's ETag and body hash are not yet written: a crash after the
alert path has committed makes the next poll fetch the body again, find the matched items
stored (no second alert), and store the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.ingest.prepare import Prepared
from bot.model import Item, Source, Subscription
from bot.ops import metrics
from bot.store import Store
from bot.stories.decide import decide, signals_of
from bot.stories.embed import embed as _embed  # loaded on the first item that needs a vector

log = logging.getLogger("newsalert.pipeline")

# Alerts one source may queue to one channel per poll; the rest become one summary alert
# (outbox.py), so a source publishing hundreds of matches at once cannot bury everyone else's.
SOURCE_ALERT_BUDGET = 20


@dataclass
class Counts:
    new_items: int = 0
    matches: int = 0  # new items that matched at least one watchlist
    alerts_queued: int = 0
    held_back: int = 0  # matched, but older than the first-poll window: stored silently
    summarised: int = 0  # over a source's per-poll alert budget: counted in one summary alert


@dataclass
class Pending:
    """What the alert path left of one source for ``store_rest``."""

    source: Source
    rest: list[Prepared]  # entries no watchlist matched, in feed order
    known: dict[str, tuple[int, str, str]]  # guid -> (id, title, text) of the stored items
    muted: set[str]
    fetched_at: datetime
    cutoff: datetime | None
    story_window: timedelta
    budget: int
    queued: dict[str, int] = field(default_factory=dict)  # channel -> alerts queued this poll
    entries: int = 0  # in the feed
    first: Counts = field(default_factory=Counts)  # what the alert path stored and queued


def plan_alerts(matched: Iterable[str], subscriptions: Sequence[Subscription]) -> dict[str, list[str]]:
    """channel -> the watchlists it subscribes to that this item matched (one alert per channel)."""
    matched = list(matched)
    plan: dict[str, set[str]] = {}
    for sub in subscriptions:
        if hits := set(matched) & set(sub.watchlists):
            plan.setdefault(sub.channel, set()).update(hits)
    return {channel: [w for w in matched if w in names] for channel, names in plan.items()}


def ingest(
    store: Store,
    source: Source,
    prepared: Sequence[Prepared],
    subscriptions: Sequence[Subscription],
    fetched_at: datetime,
    cutoff: datetime | None,
    story_window: timedelta = timedelta(hours=72),
    budget: int = SOURCE_ALERT_BUDGET,
) -> Counts:
    """Store the new items of one source and queue their alerts (the caller holds a transaction)."""
    counts, pending = alert_path(
        store, source, prepared, subscriptions, fetched_at, cutoff, story_window, budget
    )
    rest = store_rest(store, pending, subscriptions)
    for name in vars(counts):
        setattr(counts, name, getattr(counts, name) + getattr(rest, name))
    return counts


def alert_path(
    store: Store,
    source: Source,
    prepared: Sequence[Prepared],
    subscriptions: Sequence[Subscription],
    fetched_at: datetime,
    cutoff: datetime | None,
    story_window: timedelta = timedelta(hours=72),
    budget: int = SOURCE_ALERT_BUDGET,
) -> tuple[Counts, Pending]:
    """The new items a watchlist matched: stored, clustered, indexed and queued.

    Only items that matched a watchlist are indexed for clustering: they are the stories a
    channel can hear about. The items that did not are left for ``store_rest``, which looks them
    up in that index, so a copy of an alerted story joins its thread even when its own wording
    matches nothing; but two copies of a story nobody watches are not folded together (each is
    its own story), which saves most of a first poll's clustering work.
    """
    counts = Counts()
    if not prepared:  # a 304, or the same bytes as last time: nothing to look up
        return counts, Pending(source, [], {}, set(), fetched_at, cutoff, story_window, budget)
    # Channels that muted this source (`/newsalert mute source`, "Mute source here") get nothing from it.
    muted = store.people.channels_muting_source(source.name, fetched_at)
    known = store.items.items_by_guid(source.name, [p.item.guid for p in prepared])
    pending = Pending(
        source, [], known, muted, fetched_at, cutoff, story_window, budget, entries=len(prepared)
    )
    pending.first = counts
    matched = []
    for p in prepared:
        if p.matches and p.item.guid not in known:
            matched.append(p)
        else:
            pending.rest.append(p)
    if not matched:
        return counts, pending
    originals = store.items.items_by_url_key([p.url_key for p in matched])
    since = fetched_at - story_window
    index = store.stories.story_index(since)
    model = store.story_model.model()
    overflow: dict[str, tuple[int, list[str], int]] = {}  # channel -> (first item, watchlists, count)
    for p in matched:
        item, fp, matches, key = p.item, p.fingerprint, p.matches, p.url_key
        if item.guid in known:  # a guid twice in one feed (the parser drops such copies)
            continue
        # Same canonical URL already stored (from another source, or re-guided): the same article,
        # so it joins that item's story without alerting or counting as another outlet.
        if key and (original := originals.get(key)) is not None:
            item_id = store.items.add_item(item, duplicate_of=original[0], story_id=original[1], key=key)
            known[item.guid] = (item_id, item.title, item.text)
            counts.new_items += 1
            continue
        decision = decide(index, model, _embed, fp, item.title, item.text, item.fetched, since)
        story = decision.story_id
        story_id = story if story is not None else store.stories.new_story(item.fetched)
        item_id = store.items.add_item(item, story_id=story_id, key=key, new_story=story is None)
        known[item.guid] = (item_id, item.title, item.text)
        if key:
            originals[key] = (item_id, story_id)
        counts.new_items += 1
        store.story_model.save_decision(item_id, story_id, decision)
        _merge(store, story_id, decision.merge)
        signals = decision.signals or signals_of(item.title, item.text, _embed)
        store.stories.add_fingerprint(item_id, story_id, item.fetched, fp, signals)
        store.items.add_matches(item_id, dict(matches))
        counts.matches += 1
        metrics.matched(matches)
        plan = plan_alerts(matches, subscriptions)
        _queue(store, pending, counts, overflow, item, item_id, story, plan, subscriptions)
    _summaries(store, pending, counts, overflow)
    return counts, pending


def store_rest(store: Store, pending: Pending, subscriptions: Sequence[Subscription]) -> Counts:
    """The entries of ``pending`` no watchlist matched: edits of stored items, and new items in
    stories of their own (one INSERT per table for all of them), or in the watched story they
    are a copy of, whose channels then hear of them in its thread."""
    counts = Counts()
    if not pending.rest:
        return counts
    known, fetched_at = pending.known, pending.fetched_at
    originals = store.items.items_by_url_key([p.url_key for p in pending.rest])
    since = fetched_at - pending.story_window
    index = store.stories.story_index(since)
    model = store.story_model.model()
    overflow: dict[str, tuple[int, list[str], int]] = {}
    rows: list[tuple[Item, int | None, int | None, str]] = []  # waiting for one add_items
    waiting: set[str] = set()  # url keys of rows not stored yet (their ids are not known)

    def flush() -> None:
        ids = store.items.add_items(rows)
        for (item, _, _, key), (item_id, story_id) in zip(rows, ids, strict=True):
            known[item.guid] = (item_id, item.title, item.text)
            if key in waiting:
                originals[key] = (item_id, story_id)
        rows.clear()
        waiting.clear()

    for p in pending.rest:
        item, key = p.item, p.url_key
        if (found := known.get(item.guid)) is not None:
            item_id, title, text = found
            if (title, text) != (item.title, item.text):
                # An edited article (corrected headline, expanded text): keep the latest words, but
                # it is the same item, so it never alerts again.
                flush()
                store.items.update_item_text(item_id, item.title, item.text)
                known[item.guid] = (item_id, item.title, item.text)
            continue
        counts.new_items += 1
        if key in waiting:
            flush()  # the same URL earlier in this feed, not stored yet: its id is needed
        if key and (original := originals.get(key)) is not None:
            rows.append((item, original[1], original[0], key))  # the same article: see alert_path
            continue
        decision = decide(
            index, model, _embed, p.fingerprint, item.title, item.text, item.fetched, since, indexed=False
        )
        story = decision.story_id
        if story is None:  # a story of its own that no watchlist wants: nothing more to do
            rows.append((item, None, None, key))
            if key:
                waiting.add(key)
            continue
        # A copy of a watched story: stored now, as its decision, merges and alerts refer to it.
        rows.append((item, story, None, key))
        flush()
        item_id = known[item.guid][0]
        if key:
            originals[key] = (item_id, story)
        store.story_model.save_decision(item_id, story, decision)
        _merge(store, story, decision.merge)
        _queue(store, pending, counts, overflow, item, item_id, story, {}, subscriptions)
    flush()
    _summaries(store, pending, counts, overflow)
    return counts


def _merge(store: Store, story_id: int, bridged: Sequence[int]) -> None:
    """The stories an item bridges are merged into its own, but an analyst's "Not this story"
    holds: a bridge never merges a story split off by hand back into another, nor another into
    it (bot/app/corrections.py)."""
    if not bridged:
        return
    kept_apart = store.moves.split_stories([story_id, *bridged])
    for other in bridged:
        if story_id not in kept_apart and other not in kept_apart:
            store.stories.merge_stories(other, story_id)


def _queue(
    store: Store,
    pending: Pending,
    counts: Counts,
    overflow: dict[str, tuple[int, list[str], int]],
    item: Item,
    item_id: int,
    story: int | None,
    plan: dict[str, list[str]],
    subscriptions: Sequence[Subscription],
) -> None:
    """Queue the alerts of one stored item: ``plan``'s, and the thread follow-ups of its story."""
    # Channels already alerted about this story hear of every further report of it, in the
    # story's thread, even when this copy's wording matches no watchlist by itself.
    if story is not None:
        for channel in store.stories.story_channels(story) & {s.channel for s in subscriptions}:
            plan.setdefault(channel, [])
    for channel in pending.muted:
        plan.pop(channel, None)
    if not plan:
        return
    if pending.cutoff is not None and item.published < pending.cutoff:
        counts.held_back += 1
        return
    for channel, names in plan.items():
        if pending.queued.get(channel, 0) >= pending.budget:
            first, first_names, count = overflow.get(channel, (item_id, names, 0))
            overflow[channel] = (first, first_names, count + 1)
            counts.summarised += 1
            continue
        if store.outbox.enqueue_alert(item_id, channel, names, pending.fetched_at):
            pending.queued[channel] = pending.queued.get(channel, 0) + 1
            counts.alerts_queued += 1


def _summaries(
    store: Store, pending: Pending, counts: Counts, overflow: dict[str, tuple[int, list[str], int]]
) -> None:
    for channel, (first, names, count) in overflow.items():
        log.warning("source flooding name=%r channel=%s summarised=%d", pending.source.name, channel, count)
        if store.outbox.enqueue_alert(first, channel, names, pending.fetched_at, summary_count=count):
            counts.alerts_queued += 1
