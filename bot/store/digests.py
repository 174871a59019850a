"""Digest windows: which stories a digest covers, and the record of each digest sent."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from bot.store.db import Repository, from_iso, iso


class DigestRepo(Repository):
    def digest_stories(
        self, watchlists: Sequence[str], since: datetime, until: datetime
    ) -> list[tuple[int, str, datetime]]:
        """(story id, watchlist, first match) of stories whose first item matching ``watchlists``
        was first seen in (since, until]: each story belongs to exactly one digest window."""
        marks = ",".join("?" * len(watchlists))
        rows = self._all(
            f"""SELECT i.story_id, m.watchlist, i.first_seen FROM items i JOIN matches m ON m.item_id = i.id
                WHERE m.watchlist IN ({marks}) AND i.story_id IN (
                    SELECT i2.story_id FROM items i2 JOIN matches m2 ON m2.item_id = i2.id
                    WHERE m2.watchlist IN ({marks}) AND i2.first_seen > ? AND i2.first_seen <= ?)
                ORDER BY i.first_seen, i.id""",
            [*watchlists, *watchlists, iso(since), iso(until)],
        )
        first: dict[int, tuple[str, datetime]] = {}
        order = {name: n for n, name in enumerate(watchlists)}
        for r in rows:
            seen = datetime.fromisoformat(r["first_seen"])
            story = r["story_id"]
            if (
                story not in first
                or seen < first[story][1]
                or (seen == first[story][1] and order[r["watchlist"]] < order[first[story][0]])
            ):
                first[story] = (r["watchlist"], seen)
        return [(story, name, seen) for story, (name, seen) in first.items() if since < seen <= until]

    def begin_digest(self, subscription_id: str, since: datetime, until: datetime, now: datetime) -> int:
        cursor = self.db.execute(
            """INSERT INTO digests (subscription_id, window_start, window_end, status, created_at)
               VALUES (?, ?, ?, 'sending', ?)""",
            [subscription_id, iso(since), iso(until), iso(now)],
        )
        return int(cursor.lastrowid)

    def unfinished_digest(self, subscription_id: str) -> tuple[int, datetime, datetime] | None:
        """A digest whose sending was interrupted: (id, window start, window end)."""
        row = self._one(
            "SELECT * FROM digests WHERE subscription_id = ? AND status = 'sending' ORDER BY id LIMIT 1",
            [subscription_id],
        )
        if row is None:
            return None
        return (
            row["id"],
            datetime.fromisoformat(row["window_start"]),
            datetime.fromisoformat(row["window_end"]),
        )

    def finish_digest(self, digest_id: int, subscription_id: str, until: datetime, ts: Sequence[str]) -> None:
        """The digest is in Slack: its window is covered, the next one starts where it ended."""
        with self.transaction():
            self.db.execute(
                "UPDATE digests SET status = 'sent', ts = ? WHERE id = ?", [json.dumps(list(ts)), digest_id]
            )
            self.db.execute(
                "UPDATE subscriptions SET digest_covered_until = ? WHERE id = ?",
                [iso(until), subscription_id],
            )

    def digest_hold(self) -> datetime | None:
        """Start of the oldest digest window still open: its stories must outlive retention."""
        if not self.has_table("digests"):
            return None
        row = self._one(
            """SELECT min(start) AS start FROM (
                   SELECT coalesce(digest_covered_until, created_at) AS start FROM subscriptions
                   WHERE mode = 'digest' AND removed_at IS NULL
                   UNION ALL SELECT window_start FROM digests WHERE status = 'sending')"""
        )
        return from_iso(row["start"]) if row else None
