"""APScheduler (3.x) wiring for `newsalert run`: when things happen, not what they do.

Each source has its own next poll time in the database (bot/ingest/schedule.py decides it after
every poll), so one job ticks every TICK_SECONDS and polls the sources that are due. The catalog
changes while the bot runs (`/newsalert source add`, OPML imports): a new source has no next poll
yet, so the next tick polls it, and a removed one is no longer loaded. ``sync()`` brings the
digest jobs in line with the subscriptions, after a change made in this process and every minute
for changes made by another process on the same database.

Delivery has a thread of its own, woken whenever alerts are queued (by a poll's commit, by a
push), by a tick that finds alerts due (a retry's or a mute's wait over) and every minute, so an
alert goes out while the poll that found it goes on; wake-ups during a delivery are folded into
one more round, and deliveries never overlap.
Pushed content (WebSub) is ingested on a worker of its own, so an alert it brings does not wait
for a poll to finish; WebSub's subscription upkeep (network calls to hubs) has another.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING

from bot.alerts.digest import trigger
from bot.model import Source, Subscription

log = logging.getLogger("newsalert.scheduler")

DELIVERY_RETRY_SECONDS = 60
CATALOG_SYNC_SECONDS = 60
TICK_SECONDS = 1.0  # how often due sources are looked for: a poll starts at most this late
_DIGEST_PREFIX = "digest-"
PUSH, WEBSUB = "push", "websub"  # the executors of pushed content and of WebSub upkeep


class Scheduler:
    """The jobs of `newsalert run`, on a background thread; the main thread serves Slack."""

    def __init__(
        self,
        load_due: Callable[[], Sequence[Source]],
        poll_job: Callable[[list[Source]], None],
        deliver_job: Callable[[], None],
        load_digests: Callable[[], Sequence[tuple[str, Subscription]]] = list,
        digest_job: Callable[[str], None] | None = None,
        alerts_due: Callable[[], bool] = lambda: False,
    ):
        self.load_due = load_due
        self.alerts_due = alerts_due
        self.poll_job = poll_job
        self.deliver_job = deliver_job
        self.load_digests = load_digests
        self.digest_job = digest_job
        self.aps = BackgroundScheduler(
            timezone=UTC,
            # Polls, digests and housekeeping share one worker, so they never overlap and a slow
            # poll simply delays the next one (coalesce) instead of piling up. Pushes and WebSub
            # upkeep have a worker each (and delivery its thread): their few writes wait for the
            # poll's commit groups (BEGIN IMMEDIATE, a quarter of a second at most).
            executors={
                "default": ThreadPoolExecutor(1),
                PUSH: ThreadPoolExecutor(1),
                WEBSUB: ThreadPoolExecutor(1),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        )
        self.aps.add_job(self.deliver_now, "interval", seconds=DELIVERY_RETRY_SECONDS, id="deliver")
        self.aps.add_job(self.sync, "interval", seconds=CATALOG_SYNC_SECONDS, id="catalog")
        self.every(TICK_SECONDS, self.poll_due, "poll-due")
        self._lock = threading.Lock()
        self._delivery_wanted = threading.Event()
        self._stopping = False
        self._delivery = threading.Thread(target=self._deliver_loop, name="newsalert-deliver", daemon=True)

    def add_job(self, func: Callable[..., Any], trigger: str, **options: Any) -> None:
        """Any further job (daily pruning, digests), on the polls' worker unless ``executor`` says."""
        self.aps.add_job(func, trigger, **options)

    def submit(self, func: Callable[..., Any], *args: Any, executor: str = PUSH) -> None:
        """Run ``func(*args)`` once, now, on ``executor`` (pushed content, by default)."""
        self.aps.add_job(
            func,
            "date",
            run_date=datetime.now(UTC),
            args=list(args),
            id=f"{executor}-{uuid.uuid4().hex[:8]}",
            executor=executor,
            misfire_grace_time=None,  # however late, a push is still worth ingesting
        )

    def every(self, seconds: float, func: Callable[[], None], job_id: str, executor: str = "default") -> None:
        """Run ``func`` now, then ``seconds`` after each run ends (not an interval job: a run longer
        than ``seconds`` would have APScheduler warn of a skipped run every time it fires).

        Each run is a one-off job of its own id (``job_id-N``): APScheduler removes a one-off job
        after handing it to its worker, and a quick run re-adding the same id could have that
        removal take the next run instead."""
        runs = itertools.count()

        def run() -> None:
            try:
                func()
            finally:
                schedule(datetime.now(UTC) + timedelta(seconds=seconds))

        def schedule(when: datetime) -> None:
            self.aps.add_job(run, "date", run_date=when, id=f"{job_id}-{next(runs)}", executor=executor)

        schedule(datetime.now(UTC))

    def deliver_now(self) -> None:
        """Have the delivery thread deliver the outbox (again, once more, if it is delivering)."""
        self._delivery_wanted.set()

    def _deliver_loop(self) -> None:
        while True:
            self._delivery_wanted.wait()
            if self._stopping:
                return
            self._delivery_wanted.clear()
            try:
                self.deliver_job()
            except Exception:  # the alerts stay in the outbox; the next wake-up tries again
                log.exception("delivery failed")

    def start(self) -> None:
        self.sync()
        self.aps.start()
        self._delivery.start()

    def shutdown(self) -> None:
        self._stopping = True
        self._delivery_wanted.set()
        if self.aps.running:
            self.aps.shutdown(wait=False)

    def alive(self) -> bool:
        return self.aps.state == STATE_RUNNING

    def sync(self) -> None:
        """Bring the digest jobs in line with the subscriptions in the database."""
        with self._lock:
            self._sync_digests()

    def poll_due(self) -> None:
        """Poll the sources whose next poll has come (read when the tick fires, so a source added
        or removed since is polled or not), and wake delivery if alerts are due."""
        if self.alerts_due():
            self.deliver_now()
        if due := list(self.load_due()):
            self.poll_job(due)

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
