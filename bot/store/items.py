"""Items and the watchlists they matched, and the search index kept in step with them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from bot.ingest.normalize import url_key
from bot.model import Item, Span
from bot.store import search
from bot.store.db import Repository, chunks, iso
from bot.store.rows import (
    item_from_row,
    spans_from_json,
    spans_to_json,
)
from bot.store.schema import needs_search_fallback


class ItemRepo(Repository):
    def __init__(self, store):
        super().__init__(store)
        self._unindexed_from: int | None = None  # the first item id not yet in the search index

    def forget_unindexed(self) -> None:
        """After a rollback: the items it would have indexed are gone."""
        self._unindexed_from = None

    def index_new_items(self) -> None:
        """Add the items stored since the last call to the search index (items_fts, items_by_day).

        Inside a transaction, add_item leaves that to the commit: one INSERT … SELECT indexes a
        whole batch for a fraction of the cost of one insert per row. Called before anything
        that edits or deletes items, whose triggers expect the index to hold them.
        """
        start, self._unindexed_from = self._unindexed_from, None
        if start is None:
            return
        if self._store.postgres:
            self._add_search_words(start)
        else:
            self.db.execute(
                "INSERT INTO items_fts (rowid, title, text) SELECT id, title, text FROM items WHERE id >= ?",
                [start],
            )
        self.db.execute(
            f"""INSERT INTO items_by_day (day, first_id)
                SELECT substr(first_seen, 1, 10), min(id) FROM items WHERE id >= ? GROUP BY 1
                ON CONFLICT (day) DO UPDATE SET
                    first_id = {self.dialect.least("items_by_day.first_id", "excluded.first_id")}""",
            [start],
        )

    def rebuild_search_index(self) -> None:
        """PostgreSQL: the search words of every stored item (after a copy from SQLite)."""
        self._add_search_words(0)

    def _add_search_words(self, start: int, *, only: int | None = None) -> None:
        """PostgreSQL: items_search rows for the items from id ``start`` (or item ``only``), made of the
        matcher's own words (bot/store/search.py)."""
        where, params = ("id = ?", [only]) if only is not None else ("id >= ?", [start])
        rows = self.db.execute(f"SELECT id, title, text FROM items WHERE {where}", params).fetchall()
        self._many(
            f"INSERT INTO items_search (item_id, words) VALUES (?, {search.WORDS_SQL})"
            " ON CONFLICT (item_id) DO UPDATE SET words = excluded.words",
            [(item_id, *search.search_words(title, text or "")) for item_id, title, text in rows],
        )
        self._many(
            "INSERT INTO items_fts_fallback (item_id) VALUES (?) ON CONFLICT DO NOTHING",
            [(item_id,) for item_id, title, text in rows if search.needs_fallback(title, text or "")],
        )

    def add_item(
        self,
        item: Item,
        *,
        story_id: int,
        duplicate_of: int | None = None,
        key: str | None = None,
        new_story: bool = False,
    ) -> int:
        """Store a new item in a story; ``key``: its url_key if the caller has it; ``new_story``:
        the story was just made for it (its last_seen is already the item's)."""
        # Plain SQL on the hot path: sqlite-utils' insert() inspects the schema on every call.
        item_id = self._insert_id(
            """INSERT INTO items (source, guid, url, title, text, outlet, headline_only, published,
                                  first_seen, duplicate_of, url_key, story_id)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            _columns(item, duplicate_of, url_key(item.url) if key is None else key, story_id),
        )
        if self._unindexed_from is None:
            self._unindexed_from = item_id
        if not self._store.in_transaction:
            self.index_new_items()
        if not self._store.postgres and needs_search_fallback(item.title, item.text):
            self.db.execute("INSERT INTO items_fts_fallback (item_id) VALUES (?)", [item_id])
        if not new_story:
            self.db.execute(
                f"UPDATE stories SET last_seen = {self.dialect.greatest('last_seen', '?')} WHERE id = ?",
                [iso(item.fetched), story_id],
            )
        return item_id

    def add_items(self, rows: Sequence[tuple[Item, int | None, int | None, str]]) -> list[tuple[int, int]]:
        """Store many new items, one INSERT statement per table for them all; each row is (item,
        its story or None for a new story of its own, the item it duplicates or None, its url_key).
        Returns (item id, story id) per row, in order. Inside a transaction only.

        The ids are the ones SQLite would give one insert at a time (the highest so far plus
        one, in order): under BEGIN IMMEDIATE no other connection can take one meanwhile.
        """
        if not rows:
            return []
        if not self._store.in_transaction:
            raise RuntimeError("add_items needs the write lock of a transaction")
        if self._store.postgres:
            # An identity column does not move past ids given explicitly: one row at a time there.
            return [self._add_one(item, story, duplicate_of, key) for item, story, duplicate_of, key in rows]
        item_id = self.db.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()[0]
        story_id = self.db.execute("SELECT coalesce(max(id), 0) FROM stories").fetchone()[0]
        stories, seen, values, fallback, ids = [], [], [], [], []
        for item, story, duplicate_of, key in rows:
            item_id += 1
            fetched = iso(item.fetched)
            if story is None:
                story_id += 1
                story = story_id
                stories.append((story, fetched, fetched))
            else:
                seen.append((fetched, story))
            values.append((item_id, *_columns(item, duplicate_of, key, story)))
            if needs_search_fallback(item.title, item.text):
                fallback.append((item_id,))
            ids.append((item_id, story))
        self._many("INSERT INTO stories (id, first_seen, last_seen) VALUES (?, ?, ?)", stories)
        self._many(
            """INSERT INTO items (id, source, guid, url, title, text, outlet, headline_only, published,
                                  first_seen, duplicate_of, url_key, story_id)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            values,
        )
        self._many("INSERT INTO items_fts_fallback (item_id) VALUES (?)", fallback)
        self._many(
            f"UPDATE stories SET last_seen = {self.dialect.greatest('last_seen', '?')} WHERE id = ?", seen
        )
        if self._unindexed_from is None:
            self._unindexed_from = ids[0][0]
        return ids

    def _add_one(self, item: Item, story: int | None, duplicate_of: int | None, key: str) -> tuple[int, int]:
        new_story = story is None
        if story is None:
            fetched = iso(item.fetched)
            story = self._insert_id(
                "INSERT INTO stories (first_seen, last_seen) VALUES (?, ?)", [fetched, fetched]
            )
        item_id = self.add_item(item, story_id=story, duplicate_of=duplicate_of, key=key, new_story=new_story)
        return item_id, story

    def items_by_guid(self, source: str, guids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
        """guid -> (id, title, text) of the items of ``source`` already stored, among ``guids``."""
        found: dict[str, tuple[int, str, str]] = {}
        for part in chunks(list(dict.fromkeys(guids))):
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                f"SELECT guid, id, title, text FROM items WHERE source = ? AND guid IN ({marks})",
                [source, *part],
            )
            for guid, item_id, title, text in rows:
                found[guid] = (item_id, title, text or "")
        return found

    def items_by_url_key(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        """url_key -> (id, story id) of the first stored item with that key, among ``keys``: the
        page an item links to, stored already (www./m./AMP variants included)."""
        found: dict[str, tuple[int, int]] = {}
        for part in chunks(list(dict.fromkeys(k for k in keys if k))):
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                f"""SELECT url_key, id, story_id FROM items WHERE id IN (
                        SELECT min(id) FROM items WHERE url_key IN ({marks}) GROUP BY url_key)""",
                part,
            )
            for key, item_id, story_id in rows:
                found[key] = (item_id, story_id)
        return found

    def update_item_text(self, item_id: int, title: str, text: str) -> None:
        self.index_new_items()  # the update trigger takes the old text out of the index first
        self.db.execute("UPDATE items SET title = ?, text = ? WHERE id = ?", [title, text, item_id])
        if self._store.postgres:  # what SQLite's update trigger does for FTS5
            self.db.execute("DELETE FROM items_fts_fallback WHERE item_id = ?", [item_id])
            self._add_search_words(item_id, only=item_id)

    def story_of(self, item_id: int) -> int:
        """The story the item is in now (a correction from Slack may have moved it)."""
        row = self._one("SELECT story_id FROM items WHERE id = ?", [item_id])
        if row is None:
            raise KeyError(item_id)
        return int(row["story_id"])

    def item(self, item_id: int) -> tuple[Item, tuple[Span, ...]]:
        row = self._one("SELECT * FROM items WHERE id = ?", [item_id])
        if row is None:
            raise KeyError(item_id)
        spans = [
            s
            for m in self._all("SELECT spans FROM matches WHERE item_id = ?", [item_id])
            for s in spans_from_json(m["spans"])
        ]
        return item_from_row(row), tuple(sorted(set(spans), key=lambda s: (s.field, s.start)))

    def spans_for(self, item_id: int, watchlists: Iterable[str]) -> tuple[Span, ...]:
        """The matched spans of ``item_id`` under ``watchlists`` only: what a channel subscribed to
        those watchlists may highlight (another watchlist's terms are not its business)."""
        names = list(watchlists)
        if not names:
            return ()
        marks = ",".join("?" * len(names))
        rows = self._all(
            f"SELECT spans FROM matches WHERE item_id = ? AND watchlist IN ({marks})", [item_id, *names]
        )
        spans = {s for m in rows for s in spans_from_json(m["spans"])}
        return tuple(sorted(spans, key=lambda s: (s.field, s.start)))

    def add_matches(self, item_id: int, matches: dict[str, list[Span]]) -> None:
        for name, spans in matches.items():
            self.db.execute(
                "INSERT INTO matches (item_id, watchlist, spans) VALUES (?, ?, ?)",
                [item_id, name, spans_to_json(spans)],
            )

    def items_first_seen_since(self, since: datetime) -> Iterator[tuple[int, int, Item]]:
        """(item id, story key, item) of every item first seen at or after ``since``, newest first.

        For `newsalert query backtest`. Streamed in batches: a long history need not fit in memory.
        The story key is the item's story: syndicated and near-duplicate copies count once.
        """
        cursor = self.db.execute(
            """SELECT *, story_id AS story_key FROM items
               WHERE first_seen >= ? ORDER BY first_seen DESC, id DESC""",
            [iso(since)],
        )
        names = [c[0] for c in cursor.description]
        while rows := cursor.fetchmany(1000):
            for values in rows:
                row = dict(zip(names, values, strict=True))
                yield row["id"], row["story_key"], item_from_row(row)


def _columns(item: Item, duplicate_of: int | None, key: str, story_id: int) -> tuple[object, ...]:
    """An item's values for the items table after its id, in the order both inserts name them."""
    return (
        item.source,
        item.guid,
        item.url,
        item.title,
        item.text,
        item.outlet,
        int(item.headline_only),
        iso(item.published),
        iso(item.fetched),
        duplicate_of,
        key,
        story_id,
    )
