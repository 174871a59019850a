"""Digest windows: which stories a digest covers, and the record of each digest sent."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.store.db import Repository, from_iso, iso


@dataclass(frozen=True)
class UnfinishedDigest:
    """A digest recorded as being sent: its window in time (for people) and in item ids (exact)."""

    id: int
    since: datetime
    until: datetime
    seq_start: int
    seq_end: int


class DigestRepo(Repository):
    def digest_stories(
        self, watchlists: Sequence[str], seq_start: int, seq_end: int
    ) -> list[tuple[int, str, datetime]]:
        """(story id, watchlist, first match) of stories whose first item matching ``watchlists``
        has an id in (seq_start, seq_end]: each story belongs to exactly one digest window.

        Item ids, not times: one writer at a time means ids are committed in order, so an item
        cannot land below a window's end after the window was taken (a one-second timestamp could).
        """
        marks = ",".join("?" * len(watchlists))
        rows = self._all(
            f"""SELECT i.story_id, m.watchlist, i.id, i.first_seen
                FROM items i JOIN matches m ON m.item_id = i.id
                WHERE m.watchlist IN ({marks}) AND i.story_id IN (
                    SELECT i2.story_id FROM items i2 JOIN matches m2 ON m2.item_id = i2.id
                    WHERE m2.watchlist IN ({marks}) AND i2.id > ? AND i2.id <= ?)
                ORDER BY i.id""",
            [*watchlists, *watchlists, seq_start, seq_end],
        )
        first: dict[int, tuple[int, str, datetime]] = {}
        order = {name: n for n, name in enumerate(watchlists)}
        for r in rows:
            story, known = r["story_id"], first.get(r["story_id"])
            if known is None or (r["id"] == known[0] and order[r["watchlist"]] < order[known[1]]):
                first[story] = (r["id"], r["watchlist"], datetime.fromisoformat(r["first_seen"]))
        return [
            (story, name, seen) for story, (seq, name, seen) in first.items() if seq_start < seq <= seq_end
        ]

    def covered_seq(self, subscription_id: str, created: datetime) -> int:
        """Where the subscription's next window starts: the end of the last one sent, or, for a
        first digest, the last item first seen before the second the subscription was made."""
        row = self._one("SELECT digest_covered_seq FROM subscriptions WHERE id = ?", [subscription_id])
        if row and row["digest_covered_seq"] is not None:
            return int(row["digest_covered_seq"])
        before = self._one("SELECT max(id) AS n FROM items WHERE first_seen < ?", [iso(created)])
        return int(before["n"] or 0) if before else 0

    def last_seq(self) -> int:
        row = self._one("SELECT max(id) AS n FROM items")
        return int(row["n"] or 0) if row else 0

    def begin_digest(
        self,
        subscription_id: str,
        since: datetime,
        until: datetime,
        now: datetime,
        *,
        worker: str | None = None,
    ) -> int | None:
        """Record the window about to be sent, from where the last one ended to the last item
        stored now; None when a digest of this subscription is already being sent."""
        with self.transaction():
            if self.unfinished_digest(subscription_id) is not None:
                return None
            start = self.covered_seq(subscription_id, since)
            digest_id = self._insert_id(
                """INSERT INTO digests (subscription_id, window_start, window_end, status, created_at,
                       seq_start, seq_end, worker, claimed_at)
                   VALUES (?, ?, ?, 'sending', ?, ?, ?, ?, ?)""",
                [
                    subscription_id,
                    iso(since),
                    iso(until),
                    iso(now),
                    start,
                    max(start, self.last_seq()),
                    worker,
                    iso(now),
                ],
            )
        return digest_id

    def claim_unfinished(
        self,
        subscription_id: str,
        worker: str,
        now: datetime,
        *,
        stale_before: datetime,
        dead_workers: Iterable[str] = (),
    ) -> UnfinishedDigest | None:
        """Take over an interrupted digest, unless a live sender still holds it."""
        dead = list(dead_workers)
        marks = ",".join("?" * len(dead)) or "NULL"
        with self.transaction():
            cursor = self.db.execute(
                f"""UPDATE digests SET worker = ?, claimed_at = ?
                    WHERE subscription_id = ? AND status = 'sending'
                      AND (worker IS NULL OR worker = ? OR claimed_at < ? OR worker IN ({marks}))""",
                [worker, iso(now), subscription_id, worker, iso(stale_before), *dead],
            )
            return self.unfinished_digest(subscription_id) if cursor.rowcount else None

    def digest_workers(self) -> list[str]:
        rows = self._all(
            "SELECT DISTINCT worker FROM digests WHERE status = 'sending' AND worker IS NOT NULL"
        )
        return [r["worker"] for r in rows]

    def unfinished_subscriptions(self) -> list[str]:
        """Subscriptions with a digest still being sent (or interrupted while it was)."""
        rows = self._all("SELECT DISTINCT subscription_id FROM digests WHERE status = 'sending' ORDER BY 1")
        return [r["subscription_id"] for r in rows]

    def unfinished_digest(self, subscription_id: str) -> UnfinishedDigest | None:
        """A digest whose sending was interrupted."""
        row = self._one(
            "SELECT * FROM digests WHERE subscription_id = ? AND status = 'sending' ORDER BY id LIMIT 1",
            [subscription_id],
        )
        if row is None:
            return None
        return UnfinishedDigest(
            row["id"],
            datetime.fromisoformat(row["window_start"]),
            datetime.fromisoformat(row["window_end"]),
            int(row["seq_start"] or 0),
            int(row["seq_end"] or 0),
        )

    def finish_digest(
        self,
        digest_id: int,
        subscription_id: str,
        until: datetime,
        ts: Sequence[str],
        *,
        status: str = "sent",
    ) -> None:
        """The digest is in Slack (or given up, ``status`` 'failed'): its window is closed and the
        next one starts where it ended."""
        with self.transaction():
            self.db.execute(
                "UPDATE digests SET status = ?, ts = ? WHERE id = ?",
                [status, json.dumps(list(ts)), digest_id],
            )
            self.db.execute(
                """UPDATE subscriptions SET digest_covered_until = ?,
                       digest_covered_seq = (SELECT seq_end FROM digests WHERE id = ?) WHERE id = ?""",
                [iso(until), digest_id, subscription_id],
            )

    def digest_hold(self) -> datetime | None:
        """Start of the oldest digest window still open: its stories must outlive retention."""
        if not self.has_table("digests"):
            return None
        row = self._one(
            """SELECT min(start) AS start FROM (
                   SELECT coalesce(digest_covered_until, created_at) AS start FROM subscriptions
                   WHERE mode = 'digest' AND removed_at IS NULL
                   UNION ALL SELECT window_start FROM digests WHERE status = 'sending') AS starts"""
        )
        return from_iso(row["start"]) if row else None
