"""When each source is polled next: bot/ingest/schedule.py decides, this applies it to a poll's batch
(publishing rates from the store, cached between the polls of one `newsalert run`)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

from bot.config import Settings
from bot.ingest import schedule
from bot.model import FeedHints, Source
from bot.store import Store

log = logging.getLogger("newsalert.pipeline")


class RateCache:
    """Every source's publishing count (SourceRepo.publishing_counts), kept for ``ttl`` seconds
    between the polls of one `newsalert run`: a rate over a week hardly moves in a minute, and
    counting reads the week's items, which a poll every second should not do every time."""

    def __init__(self, ttl: float = 60.0):
        self.ttl = ttl
        self._at = -math.inf
        self._counts: dict[str, tuple[int, int]] = {}

    def counts(self, store: Store, now: datetime) -> dict[str, tuple[int, int]]:
        if time.monotonic() - self._at > self.ttl:
            self._counts = store.sources.publishing_counts(now - schedule.RATE_WINDOW)
            self._at = time.monotonic()
        return self._counts


def schedule_next(
    settings: Settings,
    store: Store,
    sources: Sequence[Source],
    answers: Mapping[str, tuple[schedule.Answer, datetime]],
    read: Sequence[tuple[str, FeedHints, str]],
    failed: Sequence[tuple[str, schedule.Decision]],
    rates: RateCache,
) -> None:
    """Decide when each source of a batch is polled next, once its items are stored (they count
    towards its publishing rate), and remember the feed hints just read."""
    decided = list(failed)
    if answers:
        decided += decide_batch(settings, store, sources, answers, rates)
    with store.transaction():
        store.sources.record_feed_hints(read)
        store.sources.set_next_polls((name, d.next_at, d.interval, d.why) for name, d in decided)


def decide_batch(
    settings: Settings,
    store: Store,
    sources: Sequence[Source],
    answers: Mapping[str, tuple[schedule.Answer, datetime]],
    rates: RateCache,
) -> list[tuple[str, schedule.Decision]]:
    now = max(fetched for _, fetched in answers.values())
    counts = rates.counts(store, now)
    reference = schedule.reference_rate((schedule.per_day(n), every) for n, every in counts.values())
    pushed = store.websub.live_sources(now)
    decided = []
    for source in sources:
        if source.name not in answers:
            continue
        said, fetched = answers[source.name]
        count = counts.get(source.name)
        decided.append(
            (
                source.name,
                schedule.decide(
                    source.name,
                    schedule.bounds(source, settings.min_interval, settings.max_interval),
                    fetched,
                    said,
                    rate=schedule.per_day(count[0]) if count else None,
                    reference=reference,
                    pushed=source.name in pushed,
                ),
            )
        )
    return decided
