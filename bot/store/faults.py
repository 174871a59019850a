"""Stored watchlists that cannot be compiled: skipped by every poll and reported by `status`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from bot.store.db import Repository, iso


class FaultRepo(Repository):
    def set_watchlist_faults(self, faults: Mapping[str, str], checked: Iterable[str], now: datetime) -> None:
        """Record ``faults`` (name -> error) and clear the watchlists in ``checked`` that compiled."""
        if not self.has_table("watchlist_faults"):
            return
        known = {r["name"] for r in self._all("SELECT name FROM watchlist_faults")}
        if not faults and not known:
            return  # the usual poll: nothing to write, so no write lock taken
        with self.transaction():
            for name in checked:
                if name not in faults:
                    self.db.execute("DELETE FROM watchlist_faults WHERE name = ?", [name])
            for name, error in faults.items():
                self.db.execute(
                    """INSERT INTO watchlist_faults (name, error, at) VALUES (?, ?, ?)
                       ON CONFLICT(name) DO UPDATE SET error = excluded.error, at = excluded.at""",
                    [name, error, iso(now)],
                )

    def watchlist_faults(self) -> list[tuple[str, str]]:
        """(name, error) of active watchlists disabled because they do not compile."""
        if not self.has_table("watchlist_faults"):
            return []
        rows = self._all(
            """SELECT f.name, f.error FROM watchlist_faults f JOIN watchlists w ON w.name = f.name
               WHERE w.removed_at IS NULL ORDER BY f.name"""
        )
        return [(r["name"], r["error"]) for r in rows]
