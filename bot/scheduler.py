"""APScheduler (3.x) wiring for `newsalert run`: when things happen, not what they do.

The catalog (sources) lives in the database and changes while the bot runs (`/newsalert source
add`, OPML imports), so the jobs follow it: one interval job per distinct source interval,
which reads that interval's sources when it fires, and ``sync()`` adds or drops interval jobs and
polls a newly added source at once. ``sync()`` runs after a change made in this process and
every minute, for changes made by another process on the same database.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING

from bot.alerts.digest import trigger
from bot.model import Source, Subscription

log = logging.getLogger("newsalert.scheduler")

DELIVERY_RETRY_SECONDS = 60
CATALOG_SYNC_SECONDS = 60
_POLL_PREFIX = "poll-every-"
_DIGEST_PREFIX = "digest-"


class Scheduler:
    """The jobs of `newsalert run`, on a background thread; the main thread serves Slack."""

    def __init__(
        self,
        load_sources: Callable[[], Sequence[Source]],
        poll_job: Callable[[list[Source]], None],
        deliver_job: Callable[[], None],
        load_digests: Callable[[], Sequence[tuple[str, Subscription]]] = list,
        digest_job: Callable[[str], None] | None = None,
    ):
        self.load_sources = load_sources
        self.poll_job = poll_job
        self.load_digests = load_digests
        self.digest_job = digest_job
        self.aps = BackgroundScheduler(
            timezone=UTC,
            # One worker: jobs never overlap, so SQLite sees a single writer and a slow poll
            # simply delays the next one (coalesce) instead of piling up.
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        )
        self.aps.add_job(deliver_job, "interval", seconds=DELIVERY_RETRY_SECONDS, id="deliver")
        self.aps.add_job(self.sync, "interval", seconds=CATALOG_SYNC_SECONDS, id="catalog")
        self._known: set[str] | None = None  # source names seen by the last sync; None before the first
        self._lock = threading.Lock()

    def add_job(self, func: Callable[..., Any], trigger: str, **options: Any) -> None:
        """Any further job (daily pruning, digests), on the same single worker."""
        self.aps.add_job(func, trigger, **options)

    def start(self) -> None:
        self.sync()
        self.aps.start()

    def shutdown(self) -> None:
        if self.aps.running:
            self.aps.shutdown(wait=False)

    def alive(self) -> bool:
        return self.aps.state == STATE_RUNNING

    def sync(self) -> None:
        """Bring the poll jobs in line with the active sources in the database."""
        with self._lock:
            sources = list(self.load_sources())
            first = self._known is None
            intervals = {s.interval for s in sources}
            jobs = {job.id for job in self.aps.get_jobs() if job.id.startswith(_POLL_PREFIX)}
            for interval in sorted(intervals):
                job_id = f"{_POLL_PREFIX}{interval}s"
                if job_id in jobs:
                    continue
                self.aps.add_job(
                    self._poll_interval,
                    "interval",
                    seconds=interval,
                    args=[interval],
                    id=job_id,
                    # At start every group polls at once; a group added later waits its interval,
                    # its new sources having been polled at once below.
                    next_run_time=datetime.now(UTC) if first else None,
                )
            for job_id in jobs - {f"{_POLL_PREFIX}{i}s" for i in intervals}:
                self.aps.remove_job(job_id)
            if not first:
                assert self._known is not None
                if new := [s for s in sources if s.name not in self._known]:
                    log.info("new sources, polling them now: %s", ", ".join(s.name for s in new))
                    self.aps.add_job(
                        self.poll_job,
                        "date",
                        run_date=datetime.now(UTC),
                        args=[new],
                        id=f"poll-new-{uuid.uuid4().hex[:8]}",
                    )
            self._known = {s.name for s in sources}
            self._sync_digests()

    def _sync_digests(self) -> None:
        """One cron job per digest subscription. A subscription's id covers its schedule and
        timezone, so a changed schedule is a new job and the old one goes."""
        if self.digest_job is None:
            return
        wanted = {
            f"{_DIGEST_PREFIX}{sid}": (sid, sub) for sid, sub in self.load_digests() if sub.mode == "digest"
        }
        jobs = {job.id for job in self.aps.get_jobs() if job.id.startswith(_DIGEST_PREFIX)}
        for job_id in jobs - wanted.keys():
            self.aps.remove_job(job_id)
        for job_id in wanted.keys() - jobs:
            sid, sub = wanted[job_id]
            # Cron in the subscription's own timezone: 09:00 stays 09:00 local across DST.
            self.aps.add_job(self.digest_job, trigger(sub.schedule, sub.timezone), args=[sid], id=job_id)

    def _poll_interval(self, interval: int) -> None:
        # Read when the job fires, so a source added or removed since is polled or not.
        sources = [s for s in self.load_sources() if s.interval == interval]
        if sources:
            self.poll_job(sources)
