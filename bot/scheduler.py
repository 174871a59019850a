"""APScheduler (3.x) wiring for `newsalert run`: when things happen, not what they do."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import groupby

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from bot.model import Source

DELIVERY_RETRY_SECONDS = 60


def build_scheduler(
    sources: Sequence[Source],
    poll_job: Callable[[list[Source]], None],
    deliver_job: Callable[[], None],
) -> BlockingScheduler:
    """One interval job per distinct source interval (its sources are fetched concurrently),
    plus a delivery job that retries whatever Slack did not take earlier."""
    scheduler = BlockingScheduler(
        timezone=UTC,
        # One worker: jobs never overlap, so SQLite sees a single writer and a slow poll
        # simply delays the next one (coalesce) instead of piling up.
        executors={"default": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    by_interval = sorted(sources, key=lambda s: s.interval)
    for interval, group in groupby(by_interval, key=lambda s: s.interval):
        scheduler.add_job(
            poll_job,
            "interval",
            seconds=interval,
            args=[list(group)],
            id=f"poll-every-{interval}s",
            next_run_time=datetime.now(UTC),  # poll at start, not one interval later
        )
    scheduler.add_job(deliver_job, "interval", seconds=DELIVERY_RETRY_SECONDS, id="deliver")
    return scheduler
