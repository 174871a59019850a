"""One `newsalert run` as a worker among several on a database: its id, its heartbeat, the sources it leases.

Any number of workers may share one database (on PostgreSQL; on SQLite, the processes of one
host). Each has an id (host:pid:random) and beats every quarter of its lease; the beat renews all it
holds (bot/store/leases.py). A worker takes its share of the due sources under a lease, so each
source is polled by one worker; delivery and digests are claimed with the same id, and jobs that
must run once per period (retention) are claimed for their period.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.alerts.outbox import worker_id
from bot.model import Source
from bot.ops import metrics
from bot.store import Store

log = logging.getLogger("newsalert.worker")


class Worker:
    def __init__(self, db_path: str, *, lease_seconds: float, mode: str):
        self.id = worker_id()
        self.db_path = db_path
        self.lease = timedelta(seconds=lease_seconds)
        self.mode = mode
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_loop, name="newsalert-heartbeat", daemon=True)

    def start(self) -> None:
        """The first beat now (a StoreError here stops `run` before it starts), then a thread."""
        self.beat()
        metrics.set_worker(self.id)
        self._thread.start()
        log.info("worker started id=%s lease=%ds", self.id, self.lease.total_seconds())

    def stop(self) -> None:
        """Stop beating and give back what it holds, so the others need not wait out the lease."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            with Store.open(self.db_path) as store:
                store.leases.leave(self.id)
        except Exception:  # the lease time frees them anyway
            log.warning("worker %s could not release its leases on stop", self.id, exc_info=True)

    def beat(self, store: Store | None = None) -> None:
        if store is None:
            with Store.open(self.db_path) as own:
                self.beat(own)
            return
        store.leases.heartbeat(
            self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            mode=self.mode,
            now=datetime.now(UTC),
            lease=self.lease,
        )

    def _beat_loop(self) -> None:
        # A connection of its own for the whole run: taking one from the pool at each beat waited
        # behind a busy delivery's channel threads (more than the pool holds) past the lease, and
        # the others took over the channels of a worker that was alive.
        store = Store.open(self.db_path)
        try:
            while not self._stop.wait(self.lease.total_seconds() / 4):
                try:
                    self.beat(store)
                except Exception:  # the next beat tries again; silent for a lease, it loses its leases
                    log.exception("heartbeat failed worker=%s", self.id)
        finally:
            store.close()

    def take(self, due: Sequence[Source]) -> list[Source]:
        """Of ``due``, the sources this worker now holds a lease on: at most its share of them (the
        due ones split between the live workers), so one worker's tick does not take them all."""
        if not due:
            return []
        now = datetime.now(UTC)
        with Store.open(self.db_path) as store:
            live = max(1, len(store.leases.live_workers(now, self.lease)))
            taken = set(
                store.leases.take_sources(
                    self.id,
                    now,
                    lease=self.lease,
                    limit=math.ceil(len(due) / live),
                    names=[s.name for s in due],
                )
            )
        return [s for s in due if s.name in taken]

    def release(self, sources: Sequence[Source]) -> None:
        """After their poll committed: the next poll of each is decided, the leases can go."""
        if sources:
            with Store.open(self.db_path) as store:
                store.leases.release_sources(self.id, [s.name for s in sources])

    def once(self, job: str, period: str) -> bool:
        """True when this worker is the one to run ``job`` for ``period`` (an ISO date or time)."""
        with Store.open(self.db_path) as store:
            return store.leases.claim_period(job, period, self.id, datetime.now(UTC))
