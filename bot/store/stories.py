"""Stories: their fingerprints and signals, the in-memory window index over them, splits and merges,
and their Slack thread parents. (The story model's decisions, versions and labels: storymodel.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np

from bot.model import Item, PostedAlert, StoryPost
from bot.store.db import Repository, iso
from bot.store.rows import (
    item_from_row,
)
from bot.store.schema import PRUNED, TOTAL
from bot.stories.embed import DIM, from_blob, to_blob
from bot.stories.fingerprint import Fingerprint
from bot.stories.index import Indexed, StoryIndex
from bot.stories.signals import Figure, Signals

_NO_VECTOR = np.zeros(DIM, dtype=np.float32)


class StoryRepo(Repository):
    def __init__(self, store):
        super().__init__(store)
        # The story window's fingerprints, in memory (StoryIndex): loaded on first use, kept in
        # step with add_fingerprint, and reloaded when another connection has written.
        self._story_index: StoryIndex | None = None
        self._story_index_version = -1
        self._story_index_since = datetime.max.replace(tzinfo=UTC)
        self._story_index_signature = (0, 0, 0)

    def drop_index(self) -> None:
        """Forget the in-memory index (after a rollback or a deletion): the next use loads it again."""
        self._story_index = None

    def new_story(self, now: datetime) -> int:
        sql = "INSERT INTO stories (first_seen, last_seen) VALUES (?, ?)"
        return self._insert_id(sql, [iso(now), iso(now)])

    def story_index(self, since: datetime) -> StoryIndex:
        """The fingerprints seen since ``since``, and every document frequency, in memory.

        Loaded once, then kept in step by add_fingerprint. When another connection has committed
        (PRAGMA data_version: our own commits do not change it), it is loaded again only if that
        changed the index: fingerprints added (the highest id, the total) or deleted (a counter
        retention bumps). Delivery and Slack commands write all the time; they do not count.
        Loaded again too when asked for an earlier window than loaded.
        """
        # PostgreSQL has no data_version: every use compares the signature (three indexed lookups).
        version = 0 if self._store.postgres else self.db.execute("PRAGMA data_version").fetchone()[0]
        written = self._store.postgres or version != self._story_index_version
        index = self._story_index
        if index is not None and written and since >= self._story_index_since:
            if self._index_signature() != self._story_index_signature:
                index = None
            self._story_index_version = version
        if index is None or since < self._story_index_since:
            signature = self._index_signature()
            df = dict(self.db.execute("SELECT token, df FROM token_df").fetchall())
            df.pop(self.dialect.nul_free(PRUNED), None)
            index = StoryIndex(df, df.pop(self.dialect.nul_free(TOTAL), 0))
            rows = self.db.execute(
                "SELECT item_id, story_id, seen, title, lead, entities, figures, vector, headline_only "
                "FROM fingerprints WHERE seen >= ? ORDER BY seen, item_id",
                [iso(since)],
            )
            for item_id, story_id, seen, title, lead, entities, figures, vector, headline_only in rows:
                fp = Fingerprint(frozenset(title.split()), frozenset(lead.split()))
                signals = Signals(
                    frozenset((entities or "").split()),
                    frozenset(Figure.parse(f) for f in (figures or "").split()),
                    from_blob(vector) if vector else _NO_VECTOR,  # fingerprinted before m015
                    bool(headline_only) if headline_only is not None else not lead,
                )
                index.add(Indexed(item_id, story_id, datetime.fromisoformat(seen), fp, signals), count=False)
            self._story_index, self._story_index_since = index, since
            self._story_index_version, self._story_index_signature = version, signature
        return index

    def count_tokens(self, tokens: Iterable[str]) -> None:
        """One more for each of ``tokens`` in token_df (and its counter rows, TOTAL and PRUNED)."""
        self._many(
            """INSERT INTO token_df (token, df) VALUES (?, 1)
               ON CONFLICT(token) DO UPDATE SET df = token_df.df + 1""",
            [(self.dialect.nul_free(t),) for t in tokens],
        )

    def _index_signature(self) -> tuple[int, int, int]:
        """(highest fingerprinted item id, fingerprints ever, deletions): what changes the index."""
        row = self.db.execute(
            """SELECT (SELECT coalesce(max(item_id), 0) FROM fingerprints),
                      (SELECT coalesce(max(df), 0) FROM token_df WHERE token = ?),
                      (SELECT coalesce(max(df), 0) FROM token_df WHERE token = ?)""",
            [self.dialect.nul_free(TOTAL), self.dialect.nul_free(PRUNED)],
        ).fetchone()
        return (row[0], row[1], row[2])

    def add_fingerprint(
        self, item_id: int, story_id: int, seen: datetime, fp: Fingerprint, signals: Signals | None = None
    ) -> None:
        """Index an item for clustering: later items can join its story.

        Without ``signals`` it is compared by its words alone, as fingerprints stored before m015 are.
        """
        if signals is None:
            signals = Signals(frozenset(), frozenset(), _NO_VECTOR, not fp.lead)
        self.db.execute(
            """INSERT INTO fingerprints (item_id, story_id, seen, title, lead, entities, figures, vector,
                                         headline_only) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                item_id,
                story_id,
                iso(seen),
                " ".join(sorted(fp.title)),
                " ".join(sorted(fp.lead)),
                " ".join(sorted(signals.entities)),
                " ".join(sorted(map(str, signals.figures))),
                to_blob(signals.vector) if signals.vector.any() else None,
                int(signals.headline_only),
            ],
        )
        self.count_tokens([*fp.tokens, TOTAL])
        if self._story_index is not None:
            self._story_index.add(Indexed(item_id, story_id, seen, fp, signals))
            highest, total, pruned = self._story_index_signature
            self._story_index_signature = (max(highest, item_id), total + 1, pruned)

    def story_channels(self, story_id: int) -> set[str]:
        """Channels that already have an alert (queued or sent) for this story."""
        rows = self._all(
            "SELECT DISTINCT a.channel FROM alerts a JOIN items i ON i.id = a.item_id WHERE i.story_id = ?",
            [story_id],
        )
        return {r["channel"] for r in rows}

    def story_sources(self, story_id: int) -> list[str]:
        """Who reported the story, first first: the outlet for aggregator items, else the source."""
        rows = self._all(
            """SELECT COALESCE(NULLIF(outlet, ''), source) AS label, min(first_seen) AS first
               FROM items WHERE story_id = ? AND duplicate_of IS NULL GROUP BY label ORDER BY first, label""",
            [story_id],
        )
        return [r["label"] for r in rows]

    def story_items(self, story_id: int) -> list[tuple[int, Item, int | None]]:
        """(id, item, duplicate_of) of every item of a story, oldest first."""
        rows = self._all("SELECT * FROM items WHERE story_id = ? ORDER BY first_seen, id", [story_id])
        return [(r["id"], item_from_row(r), r["duplicate_of"]) for r in rows]

    def story_post(self, story_id: int, channel: str) -> StoryPost | None:
        row = self._one("SELECT * FROM story_posts WHERE story_id = ? AND channel = ?", [story_id, channel])
        if row is None:
            return None
        return StoryPost(story_id, channel, row["item_id"], row["ts"], tuple(json.loads(row["watchlists"])))

    def save_story_post(self, post: StoryPost, now: datetime) -> None:
        self.db.execute(
            """INSERT INTO story_posts (story_id, channel, item_id, ts, watchlists, posted_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(story_id, channel) DO UPDATE SET watchlists = excluded.watchlists""",
            [post.story_id, post.channel, post.item_id, post.ts, json.dumps(list(post.watchlists)), iso(now)],
        )

    def update_story_post(self, post: StoryPost) -> bool:
        """Record the watchlists a reply added to the story's parent ``post``; False (and nothing
        written) when that message is no longer the story's parent in that channel: a correction
        folded it away meanwhile, and its record must not come back."""
        cursor = self.db.execute(
            "UPDATE story_posts SET watchlists = ? WHERE story_id = ? AND channel = ? AND ts = ?",
            [json.dumps(list(post.watchlists)), post.story_id, post.channel, post.ts],
        )
        return cursor.rowcount == 1

    def story_post_at(self, channel: str, ts: str) -> StoryPost | None:
        """The story whose top-level message in ``channel`` is the message ``ts``."""
        row = self._one("SELECT story_id FROM story_posts WHERE channel = ? AND ts = ?", [channel, ts])
        return self.story_post(row["story_id"], channel) if row else None

    def latest_story_posts(self, limit: int = 10, channels: Iterable[str] | None = None) -> list[PostedAlert]:
        """The newest alert messages (story_posts) with their item and triage state, newest first."""
        where, params = "", []
        if channels is not None:
            chosen = sorted(set(channels))
            if not chosen:
                return []
            where = f"WHERE p.channel IN ({','.join('?' * len(chosen))})"
            params = chosen
        rows = self._all(
            f"""SELECT p.story_id, p.channel, p.item_id, p.ts, p.posted_at, p.watchlists,
                       i.title, i.url, i.source, i.outlet, t.state, t.user_id AS state_by
                FROM story_posts p JOIN items i ON i.id = p.item_id
                LEFT JOIN triage t ON t.item_id = p.item_id AND t.channel = p.channel
                {where} ORDER BY p.posted_at DESC, p.rowid DESC LIMIT ?""",
            [*params, limit],
        )
        return [
            PostedAlert(
                story_id=r["story_id"],
                channel=r["channel"],
                item_id=r["item_id"],
                ts=r["ts"],
                posted_at=datetime.fromisoformat(r["posted_at"]),
                watchlists=tuple(json.loads(r["watchlists"])),
                title=r["title"],
                url=r["url"] or "",
                source=r["source"],
                outlet=r["outlet"] or "",
                state=r["state"],
                state_by=r["state_by"],
            )
            for r in rows
        ]

    def story_posts_of(self, story_id: int) -> list[StoryPost]:
        """The story's top-level message in every channel that has one."""
        rows = self._all("SELECT channel FROM story_posts WHERE story_id = ? ORDER BY channel", [story_id])
        return [p for r in rows if (p := self.story_post(story_id, r["channel"])) is not None]

    def delete_story_post(self, story_id: int, channel: str) -> None:
        self.db.execute("DELETE FROM story_posts WHERE story_id = ? AND channel = ?", [story_id, channel])

    def move_story_post(self, story_id: int, channel: str, to_story: int) -> None:
        """The message that was ``story_id``'s parent in ``channel`` is now ``to_story``'s."""
        self.db.execute(
            "UPDATE story_posts SET story_id = ? WHERE story_id = ? AND channel = ?",
            [to_story, story_id, channel],
        )

    def split_item(self, item_id: int, now: datetime) -> int:
        """Take an item (and its exact duplicates) out of its story into a new one; returns its id.

        The caller records the correction (record_label) and re-threads Slack; call in a transaction.
        """
        story_id = self.new_story(now)
        moved = [
            item_id,
            *(r["id"] for r in self._all("SELECT id FROM items WHERE duplicate_of = ?", [item_id])),
        ]
        marks = ",".join("?" * len(moved))
        self.db.execute(f"UPDATE items SET story_id = ? WHERE id IN ({marks})", [story_id, *moved])
        self.db.execute(
            f"UPDATE fingerprints SET story_id = ? WHERE item_id IN ({marks})", [story_id, *moved]
        )
        self._move_in_index(moved, story_id)
        return story_id

    def merge_stories(self, source: int, into: int) -> list[int]:
        """Every item of story ``source`` joins story ``into``; returns the items moved.

        Slack's thread parents (story_posts) are left for the caller, which folds the threads.
        """
        if source == into:
            return []
        moved = [r["id"] for r in self._all("SELECT id FROM items WHERE story_id = ?", [source])]
        self.db.execute("UPDATE items SET story_id = ? WHERE story_id = ?", [into, source])
        self.db.execute("UPDATE fingerprints SET story_id = ? WHERE story_id = ?", [into, source])
        self._move_in_index(moved, into)
        return moved

    def _move_in_index(self, item_ids: list[int], story_id: int) -> None:
        if self._story_index is not None:
            self._story_index.move(item_ids, story_id)
        # Other connections load their index again (the signature counts this as a change).
        self.count_tokens([PRUNED])
        if self._story_index is not None:
            highest, total, pruned = self._story_index_signature
            self._story_index_signature = (highest, total, pruned + 1)
