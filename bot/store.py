"""SQLite storage: the only module that knows the schema or writes SQL.

Items, the watchlists they matched, the alert outbox and per-source fetch state live in one
SQLite file (WAL mode). The schema is created and migrated on open with sqlite-utils
`Migrations`, one named migration per change, each in its own transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from sqlite_utils import Migrations

from bot.errors import StoreError
from bot.model import Item, Span, Subscription

migrations = Migrations("newsalert")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["sources"].create(
        {
            "name": str,
            "url": str,
            "etag": str,
            "last_modified": str,
            "last_polled": str,
            "last_success": str,
            "last_error": str,
            "last_error_at": str,
            "consecutive_failures": int,
        },
        pk="name",
        not_null={"url"},
        defaults={"consecutive_failures": 0},
    )
    db["items"].create(
        {
            "id": int,
            "source": str,
            "guid": str,
            "url": str,
            "title": str,
            "text": str,
            "outlet": str,
            "headline_only": int,
            "published": str,
            "first_seen": str,  # when the bot first stored it: digests and history key on this
            "duplicate_of": int,  # same canonical URL already stored from another source
        },
        pk="id",
        not_null={"source", "guid", "title", "published", "first_seen"},
        foreign_keys=[("duplicate_of", "items", "id")],
    )
    db["items"].create_index(["source", "guid"], unique=True)
    db["items"].create_index(["url"])
    db["items"].create_index(["first_seen"])
    db["matches"].create(
        {"item_id": int, "watchlist": str, "spans": str},
        pk=("item_id", "watchlist"),
        foreign_keys=[("item_id", "items", "id")],
    )
    db["matches"].create_index(["watchlist"])
    # Subscriptions come from the config file today and from Slack later (origin); digests
    # will add mode/schedule rows, so they get their own table with a short stable id.
    db["subscriptions"].create(
        {
            "id": str,
            "channel": str,
            "watchlists": str,  # JSON list of names
            "mode": str,
            "origin": str,
            "created_at": str,
            "broken": str,  # why delivery to this channel cannot work, when it cannot
        },
        pk="id",
        not_null={"channel", "watchlists", "mode", "origin", "created_at"},
    )
    db["subscriptions"].create_index(["channel"])
    # The outbox: one row per (item, channel). Rows are written in the same transaction as the
    # item, so an item is never stored without its alerts (and never alerted twice).
    db["alerts"].create(
        {
            "id": int,
            "item_id": int,
            "channel": str,
            "watchlists": str,  # JSON list, the subscribed watchlists this item matched
            "status": str,  # queued | sent | failed
            "created_at": str,
            "attempts": int,
            "last_error": str,
            "sent_at": str,
            "ts": str,  # Slack message ts (or "console")
        },
        pk="id",
        not_null={"item_id", "channel", "watchlists", "status", "created_at"},
        defaults={"attempts": 0, "status": "queued"},
        foreign_keys=[("item_id", "items", "id")],
    )
    db["alerts"].create_index(["item_id", "channel"], unique=True)
    db["alerts"].create_index(["status"])


@migrations()
def m002_stories(db: sqlite_utils.Database) -> None:
    """Stories: every item belongs to one; Slack threads hang off one message per story and channel."""
    db["stories"].create(
        {"id": int, "first_seen": str, "last_seen": str},
        pk="id",
        not_null={"first_seen", "last_seen"},
    )
    db["items"].add_column("story_id", int, fk="stories", fk_col="id")
    # Existing items become one story each; exact duplicates join their original's story.
    db.execute(
        "INSERT INTO stories (id, first_seen, last_seen) SELECT id, first_seen, first_seen FROM items "
        "WHERE duplicate_of IS NULL"
    )
    db.execute("UPDATE items SET story_id = COALESCE(duplicate_of, id)")
    db["items"].create_index(["story_id"])
    # The near-duplicate index: each item's fingerprint, and an inverted index of its tokens.
    db["fingerprints"].create(
        {"item_id": int, "story_id": int, "seen": str, "title": str, "lead": str},
        pk="item_id",
        not_null={"story_id", "seen", "title", "lead"},
    )
    db["fingerprints"].create_index(["seen"])
    db["story_tokens"].create({"token": str, "seen": str, "item_id": int}, pk=("token", "seen", "item_id"))
    db["token_df"].create({"token": str, "df": int}, pk="token", not_null={"df"})
    # One top-level message per (story, channel): follow-ups reply in its thread and update it.
    db["story_posts"].create(
        {"story_id": int, "channel": str, "item_id": int, "ts": str, "watchlists": str, "posted_at": str},
        pk=("story_id", "channel"),
        not_null={"item_id", "ts", "watchlists", "posted_at"},
    )


_TOTAL = "\x00total"  # token_df row counting all fingerprints: the N of IDF


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def subscription_id(sub: Subscription) -> str:
    """Short and stable across restarts for the same config entry."""
    key = json.dumps([sub.channel, sorted(sub.watchlists), sub.mode])
    return hashlib.sha1(key.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class SourceState:
    name: str
    etag: str | None = None
    last_modified: str | None = None
    last_success: datetime | None = None
    consecutive_failures: int = 0


@dataclass(frozen=True)
class QueuedAlert:
    """An outbox row joined with its item: what delivery needs to render and post."""

    id: int
    channel: str
    watchlists: tuple[str, ...]
    attempts: int
    item: Item
    spans: tuple[Span, ...]
    story_id: int
    item_id: int


@dataclass(frozen=True)
class StoryPost:
    """The top-level Slack message of a story in one channel."""

    story_id: int
    channel: str
    item_id: int
    ts: str
    watchlists: tuple[str, ...]


class Store:
    def __init__(self, db: sqlite_utils.Database):
        self.db = db

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) and migrate. Any failure is a StoreError naming the file."""
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=30)
            db = sqlite_utils.Database(conn)
            if str(path) != ":memory:":
                db.enable_wal()
            db.execute("PRAGMA foreign_keys = ON")
            migrations.apply(db)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{path}: cannot use database: {e}") from None
        return cls(db)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.db.atomic():
            yield

    # -- sources -----------------------------------------------------------------------------

    def source_state(self, name: str) -> SourceState:
        row = self._one("SELECT * FROM sources WHERE name = ?", [name])
        if row is None:
            return SourceState(name)
        return SourceState(
            name=name,
            etag=row["etag"],
            last_modified=row["last_modified"],
            last_success=from_iso(row["last_success"]),
            consecutive_failures=row["consecutive_failures"] or 0,
        )

    def record_fetch_success(
        self, name: str, url: str, now: datetime, *, etag: str | None, last_modified: str | None
    ) -> None:
        self.db.execute(
            """INSERT INTO sources (name, url, etag, last_modified, last_polled, last_success,
                                    consecutive_failures)
               VALUES (:name, :url, :etag, :lm, :now, :now, 0)
               ON CONFLICT(name) DO UPDATE SET url = :url, etag = :etag, last_modified = :lm,
                    last_polled = :now, last_success = :now, consecutive_failures = 0""",
            {"name": name, "url": url, "etag": etag, "lm": last_modified, "now": iso(now)},
        )

    def record_fetch_failure(self, name: str, url: str, now: datetime, reason: str) -> None:
        self.db.execute(
            """INSERT INTO sources (name, url, last_polled, last_error, last_error_at, consecutive_failures)
               VALUES (:name, :url, :now, :reason, :now, 1)
               ON CONFLICT(name) DO UPDATE SET url = :url, last_polled = :now, last_error = :reason,
                    last_error_at = :now, consecutive_failures = consecutive_failures + 1""",
            {"name": name, "url": url, "now": iso(now), "reason": reason},
        )

    # -- subscriptions ------------------------------------------------------------------------

    def sync_config_subscriptions(self, subs: Sequence[Subscription], now: datetime) -> None:
        """Make the config-origin rows equal the config file; rows from other origins stay."""
        wanted = {subscription_id(s): s for s in subs}
        with self.transaction():
            existing = {r["id"] for r in self._all("SELECT id FROM subscriptions WHERE origin = 'config'")}
            for stale in existing - wanted.keys():
                self.db.execute("DELETE FROM subscriptions WHERE id = ?", [stale])
            for sid, sub in wanted.items():
                if sid not in existing:
                    self.db["subscriptions"].insert(
                        {
                            "id": sid,
                            "channel": sub.channel,
                            "watchlists": json.dumps(list(sub.watchlists)),
                            "mode": sub.mode,
                            "origin": "config",
                            "created_at": iso(now),
                        }
                    )

    def realtime_subscriptions(self) -> list[Subscription]:
        rows = self._all("SELECT * FROM subscriptions WHERE mode = 'realtime' ORDER BY created_at, id")
        return [Subscription(r["channel"], tuple(json.loads(r["watchlists"])), r["mode"]) for r in rows]

    # -- items --------------------------------------------------------------------------------

    def has_item(self, source: str, guid: str) -> bool:
        return self._one("SELECT 1 FROM items WHERE source = ? AND guid = ?", [source, guid]) is not None

    def item_id_for_url(self, url: str) -> int | None:
        if not url:
            return None
        row = self._one("SELECT id FROM items WHERE url = ? ORDER BY id LIMIT 1", [url])
        return row["id"] if row else None

    def add_item(self, item: Item, *, story_id: int, duplicate_of: int | None = None) -> int:
        table = self.db["items"].insert(
            {
                "source": item.source,
                "guid": item.guid,
                "url": item.url,
                "title": item.title,
                "text": item.text,
                "outlet": item.outlet,
                "headline_only": int(item.headline_only),
                "published": iso(item.published),
                "first_seen": iso(item.fetched),
                "duplicate_of": duplicate_of,
                "story_id": story_id,
            }
        )
        self.db.execute(
            "UPDATE stories SET last_seen = max(last_seen, ?) WHERE id = ?", [iso(item.fetched), story_id]
        )
        return int(table.last_pk)

    def item_by_guid(self, source: str, guid: str) -> tuple[int, str, str] | None:
        """(id, title, text) of a stored item."""
        row = self._one("SELECT id, title, text FROM items WHERE source = ? AND guid = ?", [source, guid])
        return (row["id"], row["title"], row["text"] or "") if row else None

    def update_item_text(self, item_id: int, title: str, text: str) -> None:
        self.db.execute("UPDATE items SET title = ?, text = ? WHERE id = ?", [title, text, item_id])

    def story_of(self, item_id: int) -> int:
        return self._one("SELECT story_id FROM items WHERE id = ?", [item_id])["story_id"]

    # -- stories ------------------------------------------------------------------------------

    def new_story(self, now: datetime) -> int:
        cursor = self.db.execute(
            "INSERT INTO stories (first_seen, last_seen) VALUES (?, ?)", [iso(now), iso(now)]
        )
        return int(cursor.lastrowid)

    def token_df(self, tokens: Iterable[str]) -> dict[str, int]:
        """Document frequency of each token among fingerprinted items (absent tokens: 0)."""
        tokens = list(tokens)
        found: dict[str, int] = {}
        for chunk in range(0, len(tokens), 500):
            part = tokens[chunk : chunk + 500]
            marks = ",".join("?" * len(part))
            for row in self._all(f"SELECT token, df FROM token_df WHERE token IN ({marks})", part):
                found[row["token"]] = row["df"]
        return found

    def fingerprint_total(self) -> int:
        row = self._one("SELECT df FROM token_df WHERE token = ?", [_TOTAL])
        return row["df"] if row else 0

    def fingerprint_candidates(
        self, tokens: Sequence[str], since: datetime, *, limit: int = 30
    ) -> list[tuple[int, frozenset[str], frozenset[str]]]:
        """(story id, title tokens, lead tokens) of recent items sharing the most of ``tokens``."""
        if not tokens:
            return []
        marks = ",".join("?" * len(tokens))
        rows = self._all(
            f"""SELECT f.story_id, f.title, f.lead FROM fingerprints f JOIN (
                    SELECT item_id, count(*) AS shared FROM story_tokens
                    WHERE token IN ({marks}) AND seen >= ?
                    GROUP BY item_id ORDER BY shared DESC, item_id DESC LIMIT ?
                ) c ON c.item_id = f.item_id""",
            [*tokens, iso(since), limit],
        )
        return [(r["story_id"], frozenset(r["title"].split()), frozenset(r["lead"].split())) for r in rows]

    def add_fingerprint(
        self, item_id: int, story_id: int, seen: datetime, title: Iterable[str], lead: Iterable[str]
    ) -> None:
        title, lead = sorted(title), sorted(lead)
        self.db["fingerprints"].insert(
            {
                "item_id": item_id,
                "story_id": story_id,
                "seen": iso(seen),
                "title": " ".join(title),
                "lead": " ".join(lead),
            }
        )
        every = sorted(set(title) | set(lead))
        self.db.conn.executemany(
            "INSERT OR IGNORE INTO story_tokens (token, seen, item_id) VALUES (?, ?, ?)",
            [(t, iso(seen), item_id) for t in every],
        )
        self.db.conn.executemany(
            "INSERT INTO token_df (token, df) VALUES (?, 1) ON CONFLICT(token) DO UPDATE SET df = df + 1",
            [(t,) for t in [*every, _TOTAL]],
        )

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
        return [(r["id"], _item_from_row(r), r["duplicate_of"]) for r in rows]

    def item(self, item_id: int) -> tuple[Item, tuple[Span, ...]]:
        row = self._one("SELECT * FROM items WHERE id = ?", [item_id])
        if row is None:
            raise KeyError(item_id)
        spans = [
            s
            for m in self._all("SELECT spans FROM matches WHERE item_id = ?", [item_id])
            for s in _spans_from_json(m["spans"])
        ]
        return _item_from_row(row), tuple(sorted(set(spans), key=lambda s: (s.field, s.start)))

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

    def add_matches(self, item_id: int, matches: dict[str, list[Span]]) -> None:
        self.db["matches"].insert_all(
            (
                {"item_id": item_id, "watchlist": name, "spans": _spans_to_json(spans)}
                for name, spans in matches.items()
            ),
        )

    # -- the outbox ---------------------------------------------------------------------------

    def enqueue_alert(self, item_id: int, channel: str, watchlists: Iterable[str], now: datetime) -> bool:
        """Queue one alert; False when this item already has one for this channel."""
        cursor = self.db.execute(
            """INSERT OR IGNORE INTO alerts (item_id, channel, watchlists, status, created_at, attempts)
               VALUES (?, ?, ?, 'queued', ?, 0)""",
            [item_id, channel, json.dumps(list(watchlists)), iso(now)],
        )
        return cursor.rowcount == 1

    def queued_alerts(self, limit: int = 500) -> list[QueuedAlert]:
        rows = self._all(
            """SELECT a.id AS alert_id, a.channel, a.watchlists AS alert_watchlists, a.attempts, i.*
               FROM alerts a JOIN items i ON i.id = a.item_id
               WHERE a.status = 'queued' ORDER BY a.id LIMIT ?""",
            [limit],
        )
        spans_by_item: dict[int, list[Span]] = {}
        ids = sorted({r["id"] for r in rows})
        if ids:
            marks = ",".join("?" * len(ids))
            for m in self._all(f"SELECT item_id, spans FROM matches WHERE item_id IN ({marks})", ids):
                spans_by_item.setdefault(m["item_id"], []).extend(_spans_from_json(m["spans"]))
        return [
            QueuedAlert(
                id=r["alert_id"],
                channel=r["channel"],
                watchlists=tuple(json.loads(r["alert_watchlists"])),
                attempts=r["attempts"],
                item=_item_from_row(r),
                spans=tuple(sorted(set(spans_by_item.get(r["id"], [])), key=lambda s: (s.field, s.start))),
                story_id=r["story_id"],
                item_id=r["id"],
            )
            for r in rows
        ]

    def mark_alert_sent(self, alert_id: int, ts: str, now: datetime) -> None:
        self.db.execute(
            "UPDATE alerts SET status = 'sent', ts = ?, sent_at = ?, attempts = attempts + 1 WHERE id = ?",
            [ts, iso(now), alert_id],
        )

    def mark_alert_attempt(self, alert_id: int, error: str, *, give_up: bool) -> None:
        """Record a failed attempt; the alert stays queued unless ``give_up``."""
        self.db.execute(
            """UPDATE alerts SET attempts = attempts + 1, last_error = ?,
                   status = CASE WHEN ? THEN 'failed' ELSE status END
               WHERE id = ?""",
            [error, int(give_up), alert_id],
        )

    def count(self, table: str, where: str = "1", params: Sequence[object] = ()) -> int:
        if table not in {"items", "matches", "alerts", "sources", "subscriptions"}:
            raise ValueError(table)
        return self._one(f"SELECT count(*) AS n FROM {table} WHERE {where}", params)["n"]

    # -- helpers ------------------------------------------------------------------------------

    def _all(self, sql: str, params: Sequence[object] | dict = ()) -> list[dict]:
        cursor = self.db.execute(sql, params)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _one(self, sql: str, params: Sequence[object] | dict = ()) -> dict | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None


def _item_from_row(row: dict) -> Item:
    return Item(
        source=row["source"],
        guid=row["guid"],
        url=row["url"] or "",
        title=row["title"],
        text=row["text"] or "",
        published=datetime.fromisoformat(row["published"]),
        fetched=datetime.fromisoformat(row["first_seen"]),
        outlet=row["outlet"] or "",
        headline_only=bool(row["headline_only"]),
    )


def _spans_to_json(spans: Sequence[Span]) -> str:
    return json.dumps([[s.field, s.start, s.end, s.term] for s in spans])


def _spans_from_json(text: str | None) -> list[Span]:
    return [Span(f, start, end, term) for f, start, end, term in json.loads(text or "[]")]
