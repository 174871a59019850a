"""Workers sharing one database: their heartbeats, source leases, once-per-period jobs and Slack events seen.

Every `newsalert run` is a worker with an id. Its heartbeat (a row in ``workers``) also renews
everything it holds: its source leases, its channel claims and its digests being sent. A worker
that dies stops renewing, and after the lease time all it held is free for the others. A source is
polled only under a lease, taken in one short transaction that also checks the source is still due,
so a source polled a moment ago by another worker is not fetched again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.store.db import Repository, from_iso, iso

SLACK_EVENT_MEMORY = timedelta(hours=1)  # Slack retries an event for a few minutes at most


@dataclass(frozen=True)
class WorkerRow:
    id: str
    host: str
    pid: int
    mode: str
    started_at: datetime
    heartbeat_at: datetime
    sources: int  # source leases held now
    channels: int  # channels it is delivering now


class LeaseRepo(Repository):
    def heartbeat(
        self, worker: str, *, host: str, pid: int, mode: str, now: datetime, lease: timedelta
    ) -> None:
        """The worker is alive at ``now``: its row, and everything it holds renewed for ``lease``."""
        with self.transaction():
            self.db.execute(
                """INSERT INTO workers (id, host, pid, mode, started_at, heartbeat_at)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at""",
                [worker, host, pid, mode, iso(now), iso(now)],
            )
            self.db.execute(
                "UPDATE source_leases SET expires_at = ? WHERE worker = ?", [iso(now + lease), worker]
            )
            self.db.execute("UPDATE channel_claims SET claimed_at = ? WHERE worker = ?", [iso(now), worker])
            self.db.execute(
                "UPDATE digests SET claimed_at = ? WHERE worker = ? AND status = 'sending'",
                [iso(now), worker],
            )
            # Workers silent for a day are gone for good (`newsalert workers` shows the recent ones).
            self.db.execute("DELETE FROM workers WHERE heartbeat_at < ?", [iso(now - timedelta(days=1))])
            self.db.execute("DELETE FROM slack_events WHERE seen_at < ?", [iso(now - SLACK_EVENT_MEMORY)])

    def leave(self, worker: str) -> None:
        """A worker stopping cleanly: what it held is free at once, not after the lease time."""
        with self.transaction():
            self.db.execute("DELETE FROM source_leases WHERE worker = ?", [worker])
            self.db.execute("DELETE FROM channel_claims WHERE worker = ?", [worker])
            self.db.execute("DELETE FROM workers WHERE id = ?", [worker])

    def take_sources(
        self, worker: str, now: datetime, *, lease: timedelta, limit: int, names: Iterable[str] | None = None
    ) -> list[str]:
        """Lease up to ``limit`` due sources (of ``names``, if given) to ``worker``, oldest first.

        A source is taken when it is due now (read in this transaction: another worker that just
        polled it has moved its next poll on) and nobody else holds an unexpired lease on it.
        """
        wanted = None if names is None else set(names)
        with self.transaction():
            rows = self._all(
                f"""SELECT s.name FROM sources s
                    WHERE s.origin IS NOT NULL AND s.removed_at IS NULL AND s.disabled_at IS NULL
                      AND (s.next_poll_at IS NULL OR s.next_poll_at <= :now)
                      AND NOT EXISTS (SELECT 1 FROM source_leases l WHERE l.source = s.name
                                      AND l.worker <> :worker AND l.expires_at > :now)
                    ORDER BY s.added_at, s.name {self.dialect.skip_locked("s")}""",
                {"now": iso(now), "worker": worker},
            )
            taken = [r["name"] for r in rows if wanted is None or r["name"] in wanted][: max(0, limit)]
            self._many(
                """INSERT INTO source_leases (source, worker, expires_at) VALUES (?, ?, ?)
                   ON CONFLICT(source) DO UPDATE SET worker = excluded.worker,
                       expires_at = excluded.expires_at""",
                [(name, worker, iso(now + lease)) for name in taken],
            )
        return taken

    def release_sources(self, worker: str, names: Iterable[str]) -> None:
        """The poll of ``names`` is committed (their next poll moved on): the leases go."""
        names = list(names)
        for start in range(0, len(names), 500):  # small enough for one IN (...) list
            part = names[start : start + 500]
            marks = ",".join("?" * len(part))
            self.db.execute(
                f"DELETE FROM source_leases WHERE worker = ? AND source IN ({marks})", [worker, *part]
            )

    def live_workers(self, now: datetime, lease: timedelta) -> list[str]:
        """Ids of the workers whose last heartbeat is within ``lease`` of ``now``."""
        rows = self._all("SELECT id FROM workers WHERE heartbeat_at >= ? ORDER BY id", [iso(now - lease)])
        return [r["id"] for r in rows]

    def silent_workers(self, now: datetime, lease: timedelta) -> list[str]:
        """Workers that stopped beating (killed, host gone): their claims are anyone's."""
        rows = self._all("SELECT id FROM workers WHERE heartbeat_at < ?", [iso(now - lease)])
        return [r["id"] for r in rows]

    def workers(self) -> list[WorkerRow]:
        """Every worker seen in the last day, with what it holds, most recent heartbeat first."""
        rows = self._all(
            """SELECT w.*, (SELECT count(*) FROM source_leases l WHERE l.worker = w.id) AS sources,
                      (SELECT count(*) FROM channel_claims c WHERE c.worker = w.id) AS channels
               FROM workers w ORDER BY w.heartbeat_at DESC, w.id"""
        )
        return [
            WorkerRow(
                r["id"],
                r["host"],
                int(r["pid"]),
                r["mode"] or "",
                from_iso(r["started_at"]),  # type: ignore[arg-type]
                from_iso(r["heartbeat_at"]),  # type: ignore[arg-type]
                int(r["sources"]),
                int(r["channels"]),
            )
            for r in rows
        ]

    def leases(self) -> list[tuple[str, str, datetime]]:
        """(source, worker, expires) of every source lease."""
        rows = self._all("SELECT source, worker, expires_at FROM source_leases ORDER BY worker, source")
        return [(r["source"], r["worker"], datetime.fromisoformat(r["expires_at"])) for r in rows]

    def claim_period(self, job: str, period: str, worker: str, now: datetime) -> bool:
        """True for the one worker that runs ``job`` for ``period`` (an ISO date or time, so later
        periods sort after earlier ones); False when another already has that period or a later one."""
        with self.transaction():
            cursor = self.db.execute(
                """INSERT INTO job_runs (job, period, worker, ran_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT(job) DO UPDATE SET period = excluded.period, worker = excluded.worker,
                       ran_at = excluded.ran_at
                   WHERE job_runs.period < excluded.period""",
                [job, period, worker, iso(now)],
            )
            return cursor.rowcount == 1

    def first_slack_event(self, event_id: str, now: datetime) -> bool:
        """True the first time ``event_id`` is seen by any worker; False for Slack's retries of it."""
        cursor = self.db.execute(
            "INSERT INTO slack_events (event_id, seen_at) VALUES (?, ?) ON CONFLICT(event_id) DO NOTHING",
            [event_id, iso(now)],
        )
        return cursor.rowcount == 1
