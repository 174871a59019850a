"""History: search candidates, export rows, retention (pruning whole stories) and index checks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.model import ItemText, MatchedItem
from bot.store import search
from bot.store.db import Repository, chunks, iso
from bot.store.schema import PRUNED


class HistoryRepo(Repository):
    def search_candidates(
        self,
        fts_match: str | None,
        since: datetime,
        *,
        source: str | None = None,
        watchlist: str | None = None,
    ) -> list[tuple[int, int, str]]:
        """(item id, story id, story first seen) of the items first seen since ``since`` that may match,
        stories newest first and each story's items oldest first.

        ``fts_match`` is an FTS5 MATCH expression that every matching item satisfies (bot.history
        builds it; user words reach it only as quoted strings, and it is passed as a parameter).
        Items FTS5 may tokenize unlike the matcher (items_fts_fallback) are always candidates.
        None: every item in the window is one.
        """
        # Every item in the window has an id >= lo (a day's rows stay when its items are pruned,
        # which only lowers lo), so FTS5 can skip older postings by rowid.
        row = self._one("SELECT min(first_id) AS lo FROM items_by_day WHERE day >= ?", [iso(since)[:10]])
        if row is None or row["lo"] is None:
            return []
        params: dict[str, object] = {"since": iso(since), "lo": row["lo"], "match": fts_match}
        if fts_match is None:
            pool = "items i"
        elif self._store.postgres:
            params["match"] = search.tsquery(fts_match)
            pool = """(SELECT item_id AS id FROM items_search WHERE words @@ CAST(:match AS tsquery)
                         AND item_id >= :lo
                       UNION SELECT item_id FROM items_fts_fallback WHERE item_id >= :lo) c
                      JOIN items i ON i.id = c.id"""
        else:
            pool = """(SELECT rowid AS id FROM items_fts WHERE items_fts MATCH :match AND rowid >= :lo
                       UNION SELECT item_id FROM items_fts_fallback WHERE item_id >= :lo) c
                      JOIN items i ON i.id = c.id"""
        where = ["i.first_seen >= :since"]
        if source is not None:
            source_is, outlet_is = (self.dialect.nocase(c) for c in ("i.source", "i.outlet"))
            value = self.dialect.nocase(":source")
            where.append(f"({source_is} = {value} OR {outlet_is} = {value})")
            params["source"] = source
        if watchlist is not None:
            where.append(
                """i.story_id IN (SELECT j.story_id FROM matches m JOIN items j ON j.id = m.item_id
                                  WHERE m.watchlist = :watchlist)"""
            )
            params["watchlist"] = watchlist
        cursor = self.db.execute(
            f"""SELECT i.id, i.story_id, s.first_seen FROM {pool} JOIN stories s ON s.id = i.story_id
                WHERE {" AND ".join(where)}
                ORDER BY s.first_seen DESC, s.id DESC, i.first_seen, i.id""",
            params,
        )
        return [(item_id, story_id, first) for item_id, story_id, first in cursor.fetchall()]

    def search_texts(self, item_ids: Sequence[int]) -> dict[int, ItemText]:
        """id -> title, text, source, url of the given items."""
        found: dict[int, ItemText] = {}
        for part in chunks(item_ids):
            marks = ",".join("?" * len(part))
            for r in self._all(f"SELECT id, title, text, source, url FROM items WHERE id IN ({marks})", part):
                found[r["id"]] = ItemText(r["title"], r["text"] or "", r["source"], r["url"] or "")
        return found

    def story_watchlists(self, story_ids: Sequence[int]) -> dict[int, list[str]]:
        """story id -> the watchlists any of its items matched, in the order they first matched."""
        found: dict[int, list[str]] = {}
        for part in chunks(story_ids):
            marks = ",".join("?" * len(part))
            rows = self._all(
                f"""SELECT i.story_id, m.watchlist, min(i.first_seen) AS first
                    FROM items i JOIN matches m ON m.item_id = i.id WHERE i.story_id IN ({marks})
                    GROUP BY i.story_id, m.watchlist ORDER BY first, m.watchlist""",
                part,
            )
            for r in rows:
                found.setdefault(r["story_id"], []).append(r["watchlist"])
        return found

    def matched_items_since(self, since: datetime, watchlist: str | None = None) -> list[MatchedItem]:
        """Items first seen since ``since`` that matched a watchlist (``watchlist`` if given), with
        their story: stories newest first, each story's items oldest first."""
        extra, params = ("AND m.watchlist = ?", [iso(since), watchlist]) if watchlist else ("", [iso(since)])
        rows = self._all(
            f"""SELECT DISTINCT i.story_id, s.first_seen AS story_first_seen, i.id, i.title, i.url,
                       i.first_seen
                FROM matches m JOIN items i ON i.id = m.item_id JOIN stories s ON s.id = i.story_id
                WHERE i.first_seen >= ? {extra}
                ORDER BY story_first_seen DESC, i.story_id DESC, i.first_seen, i.id""",
            params,
        )
        return [
            MatchedItem(
                r["story_id"],
                datetime.fromisoformat(r["story_first_seen"]),
                r["id"],
                r["title"],
                r["url"] or "",
                datetime.fromisoformat(r["first_seen"]),
            )
            for r in rows
        ]

    def story_channels_sent(self, story_ids: Sequence[int]) -> dict[int, list[str]]:
        """story id -> the channels an alert about it was delivered to."""
        found: dict[int, list[str]] = {}
        for part in chunks(story_ids):
            marks = ",".join("?" * len(part))
            rows = self._all(
                f"""SELECT DISTINCT i.story_id, a.channel FROM alerts a JOIN items i ON i.id = a.item_id
                    WHERE a.status = 'sent' AND i.story_id IN ({marks}) ORDER BY a.channel""",
                part,
            )
            for r in rows:
                found.setdefault(r["story_id"], []).append(r["channel"])
        return found

    def story_feedback(self, story_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """story id -> {feedback kind: votes}; empty before the Slack app's tables exist."""
        found: dict[int, dict[str, int]] = {}
        if not self.has_table("feedback"):
            return found
        for part in chunks(story_ids):
            marks = ",".join("?" * len(part))
            rows = self._all(
                # A vote is one person on one alert, however many watchlists it carried.
                f"""SELECT i.story_id, f.kind,
                           count(DISTINCT f.user_id || ' ' || f.item_id || ' ' || f.channel) AS n
                    FROM feedback f JOIN items i ON i.id = f.item_id
                    WHERE i.story_id IN ({marks}) GROUP BY i.story_id, f.kind ORDER BY f.kind""",
                part,
            )
            for r in rows:
                found.setdefault(r["story_id"], {})[r["kind"]] = r["n"]
        return found

    def story_triage(self, story_ids: Sequence[int]) -> dict[int, dict[str, str]]:
        """story id -> {channel: triage state}; empty before the Slack app's tables exist."""
        found: dict[int, dict[str, str]] = {}
        if not self.has_table("triage"):
            return found
        for part in chunks(story_ids):
            marks = ",".join("?" * len(part))
            rows = self._all(
                f"""SELECT i.story_id, t.channel, t.state FROM triage t JOIN items i ON i.id = t.item_id
                    WHERE i.story_id IN ({marks}) ORDER BY t.channel, t.updated_at""",
                part,
            )
            for r in rows:
                found.setdefault(r["story_id"], {})[r["channel"]] = r["state"]  # the latest wins
        return found

    def prunable_stories(self, cutoff: datetime, *, after: int = 0, limit: int = 200) -> list[int]:
        """Stories (id > ``after``) with no item first seen since ``cutoff`` and no queued alert."""
        rows = self._all(
            """SELECT s.id FROM stories s
               WHERE s.id > ? AND s.last_seen < ?
                 AND NOT EXISTS (SELECT 1 FROM items i WHERE i.story_id = s.id AND i.first_seen >= ?)
                 AND NOT EXISTS (SELECT 1 FROM items i JOIN alerts a ON a.item_id = i.id
                                 WHERE i.story_id = s.id AND a.status = 'queued')
               ORDER BY s.id LIMIT ?""",
            [after, iso(cutoff), iso(cutoff), limit],
        )
        return [r["id"] for r in rows]

    def delete_stories(self, story_ids: Sequence[int]) -> int:
        """Delete stories with their items and everything kept about them; returns items deleted.

        Whole stories only: a story's thread parent, its duplicates and its digest standing all
        refer to its earlier items. The items_fts triggers keep the search index in step. Call
        inside a transaction.
        """
        story_ids = list(story_ids)
        item_ids = [
            r["id"]
            for part in chunks(story_ids)
            for r in self._all(f"SELECT id FROM items WHERE story_id IN ({','.join('?' * len(part))})", part)
        ]
        stories, items = self._store.stories, self._store.items
        stories.drop_index()  # it would offer the deleted stories as candidates
        items.index_new_items()  # the delete trigger takes their text out of the index
        stories.count_tokens([PRUNED])  # other connections' story indexes see it, and load again
        for part in chunks(item_ids):
            marks = ",".join("?" * len(part))
            for table in ("fingerprints", "matches", "alerts"):
                self.db.execute(f"DELETE FROM {table} WHERE item_id IN ({marks})", part)
            # Rows other features keep per item (Slack feedback and triage, and any later table with
            # a foreign key to items) go with it: the delete below would fail on them otherwise.
            for table, column in self._references("items"):
                if table not in ("items", "fingerprints", "matches", "alerts"):
                    self.db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", part)
        for part in chunks(story_ids):
            marks = ",".join("?" * len(part))
            self.db.execute(f"DELETE FROM story_posts WHERE story_id IN ({marks})", part)
            for table, column in self._references("stories"):
                if table != "items":
                    self.db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", part)
            self.db.execute(f"DELETE FROM items WHERE story_id IN ({marks})", part)
            self.db.execute(f"DELETE FROM stories WHERE id IN ({marks})", part)
        return len(item_ids)

    def _references(self, parent: str) -> list[tuple[str, str]]:
        """(table, column) of every foreign key to ``parent``."""
        found = []
        if self._store.postgres:
            rows = self.db.execute(
                """SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
                   WHERE c.contype = 'f' AND c.confrelid = ?::regclass ORDER BY 1, 2""",
                [parent],
            )
            return [(table.strip('"'), column) for table, column in rows]
        for r in self._all(self.dialect.tables_sql()):
            for fk in self.db.execute(f"PRAGMA foreign_key_list([{r['name']}])").fetchall():
                if fk[2] == parent:  # (id, seq, table, from, to, …)
                    found.append((r["name"], fk[3]))
        return found
