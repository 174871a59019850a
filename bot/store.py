"""SQLite storage: the only module that knows the schema or writes SQL.

Items, the watchlists they matched, the alert outbox and per-source fetch state live in one
SQLite file (WAL mode). The schema is created and migrated on open with sqlite-utils
`Migrations`, one named migration per change, each in its own transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from sqlite_utils import Migrations

from bot.errors import StoreError
from bot.model import Item, Source, Span, Subscription, Watchlist
from bot.normalize import url_key

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


@migrations()
def m003_delivery_protocol(db: sqlite_utils.Database) -> None:
    """Claims, retries and dead letters for the outbox."""
    db["alerts"].add_column("next_attempt_at", str)  # not before this (backoff); NULL = now
    # 1 from just before a post until its outcome is known: a crash or a lost answer leaves it set,
    # and the next attempt first looks in Slack for the message before posting again.
    db["alerts"].add_column("in_flight", int, not_null_default=0)
    db["alerts"].add_column("plain_text", int, not_null_default=0)  # Block Kit rejected: text only
    db.execute("UPDATE alerts SET status = 'dead' WHERE status = 'failed'")
    # One deliverer per channel at a time: keeps a story's parent before its replies, keeps the
    # per-channel rate, and lets two `newsalert run` share a database without double posts.
    db["channel_claims"].create(
        {"channel": str, "worker": str, "claimed_at": str}, pk="channel", not_null={"worker", "claimed_at"}
    )


@migrations()
def m004_url_key(db: sqlite_utils.Database) -> None:
    """Dedup on a key that AMP, mobile and www. variants of one page share (normalize.url_key)."""
    db["items"].add_column("url_key", str)
    for row in list(db.query("SELECT id, url FROM items")):
        db.execute("UPDATE items SET url_key = ? WHERE id = ?", [url_key(row["url"] or ""), row["id"]])
    db["items"].create_index(["url_key"])


@migrations()
def m005_catalog(db: sqlite_utils.Database) -> None:
    """Sources, watchlists and subscriptions live in the database; the config file seeds them.

    ``origin`` says where a row came from (config, slack, opml). ``changed_by`` is set when a
    person changed or removed it from Slack: from then on the database's copy wins over the
    config file, so a subscription removed in Slack stays removed though the file still lists it.
    ``removed_at`` keeps removed rows (and that memory) instead of deleting them.
    """
    for column, kind in [
        ("type", str),
        ("interval", int),
        ("origin", str),
        ("removed_at", str),
        ("changed_by", str),
        ("added_at", str),
    ]:
        db["sources"].add_column(column, kind)
    db["watchlists"].create(
        {
            "name": str,
            "query": str,
            "description": str,
            "origin": str,
            "removed_at": str,
            "changed_by": str,
            "updated_at": str,
        },
        pk="name",
        not_null={"query", "origin"},
    )
    db["subscriptions"].add_column("removed_at", str)
    db["subscriptions"].add_column("changed_by", str)


@migrations()
def m008_source_health(db: sqlite_utils.Database) -> None:
    """When a failing source may be fetched again, and sources the web says are gone."""
    db["sources"].add_column("next_poll_at", str)  # backoff / Retry-After; NULL = at its interval
    db["sources"].add_column("disabled_at", str)  # HTTP 410: not polled again until re-added
    db["sources"].add_column("disabled_reason", str)


BUSY_TIMEOUT = 30.0  # seconds a connection waits for another's write lock before giving up
_TOTAL = "\x00total"  # token_df row counting all fingerprints: the N of IDF


def _enable_wal(db: sqlite_utils.Database) -> None:
    # Switching the journal mode needs the database to itself for a moment, and SQLite does not
    # wait for that with the busy timeout: retry briefly when another process is opening it too.
    for attempt in range(50):
        try:
            db.enable_wal()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 49:
                raise
            time.sleep(0.1)


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
    in_flight: bool = False
    plain_text: bool = False
    created_at: datetime | None = None
    last_error: str = ""
    next_attempt_at: datetime | None = None


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
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT)
            db = sqlite_utils.Database(conn)
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            if str(path) != ":memory:":
                _enable_wal(db)
            db.execute("PRAGMA foreign_keys = ON")
            store = cls(db)
            # Two processes starting at once must not both migrate: the first takes the write
            # lock, the second waits and then finds nothing pending.
            with store.transaction():
                migrations.apply(db)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{path}: cannot use database: {e}") from None
        return store

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, BEGIN IMMEDIATE: the write lock is taken up front.

        A deferred BEGIN that reads and then writes can fail at once with "database is
        locked" when another connection got there first (SQLite cannot wait for a lock it
        might deadlock on); IMMEDIATE waits for the busy timeout instead. Nested: a savepoint.
        """
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

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
        self,
        name: str,
        url: str,
        now: datetime,
        *,
        etag: str | None,
        last_modified: str | None,
    ) -> None:
        self.db.execute(
            """INSERT INTO sources (name, url, etag, last_modified, last_polled, last_success,
                                    consecutive_failures)
               VALUES (:name, :url, :etag, :lm, :now, :now, 0)
               ON CONFLICT(name) DO UPDATE SET etag = :etag, last_modified = :lm,
                    last_polled = :now, last_success = :now, consecutive_failures = 0, next_poll_at = NULL""",
            {"name": name, "url": url, "etag": etag, "lm": last_modified, "now": iso(now)},
        )

    def record_fetch_failure(
        self,
        name: str,
        url: str,
        now: datetime,
        reason: str,
        *,
        retry_at: datetime | None = None,
        disable: bool = False,
    ) -> None:
        """A failed fetch; ``retry_at`` holds the source back (backoff), ``disable`` stops it (410)."""
        self.db.execute(
            """INSERT INTO sources (name, url, last_polled, last_error, last_error_at, consecutive_failures,
                                    next_poll_at, disabled_at, disabled_reason)
               VALUES (:name, :url, :now, :reason, :now, 1, :retry, :disabled, :why)
               ON CONFLICT(name) DO UPDATE SET last_polled = :now, last_error = :reason,
                    last_error_at = :now, consecutive_failures = consecutive_failures + 1,
                    next_poll_at = :retry, disabled_at = :disabled, disabled_reason = :why""",
            {
                "name": name,
                "url": url,
                "now": iso(now),
                "reason": reason,
                "retry": iso(retry_at) if retry_at else None,
                "disabled": iso(now) if disable else None,
                "why": reason if disable else None,
            },
        )

    def move_source(self, name: str, url: str) -> None:
        """A permanent redirect: fetch the new address from now on (and forget the old validators)."""
        self.db.execute(
            "UPDATE sources SET url = ?, etag = NULL, last_modified = NULL WHERE name = ?", [url, name]
        )

    def source_due(self, name: str, now: datetime) -> bool:
        row = self._one("SELECT next_poll_at, disabled_at FROM sources WHERE name = ?", [name])
        if row is None:
            return True
        return row["disabled_at"] is None and (row["next_poll_at"] is None or row["next_poll_at"] <= iso(now))

    # -- subscriptions ------------------------------------------------------------------------

    def sync_config(
        self,
        sources: Sequence[Source],
        watchlists: Sequence[Watchlist],
        subscriptions: Sequence[Subscription],
        now: datetime,
    ) -> None:
        """Make the config file's rows match the file; rows made or changed from Slack stay as they are.

        For each kind: a row someone changed from Slack (changed_by set) or that came from
        elsewhere is left alone; any other row listed in the file takes the file's values and is
        active; a config row no longer in the file is marked removed.
        """
        with self.transaction():
            self._sync(
                "sources",
                "name",
                {
                    # A restart gives a source disabled as gone (HTTP 410) one more try.
                    s.name: {"name": s.name, "url": s.url, "type": s.type, "interval": s.interval,
                             "disabled_at": None, "disabled_reason": None}
                    for s in sources
                },
                now,
            )
            self._sync(
                "watchlists",
                "name",
                {
                    w.name: {"name": w.name, "query": w.query, "description": w.description}
                    for w in watchlists
                },
                now,
            )
            self._sync("subscriptions", "id", _subscription_rows(subscriptions), now)

    def _sync(self, table: str, key: str, wanted: dict[str, dict], now: datetime) -> None:
        existing = {
            r[key]: r for r in self._all(f"SELECT {key}, origin, removed_at, changed_by FROM {table}")
        }
        for name, row in existing.items():
            if (
                row["origin"] == "config"
                and not row["changed_by"]
                and name not in wanted
                and not row["removed_at"]
            ):
                self.db.execute(f"UPDATE {table} SET removed_at = ? WHERE {key} = ?", [iso(now), name])
        for name, values in wanted.items():
            row = existing.get(name)
            if row is not None and (row["changed_by"] or row["origin"] not in (None, "config")):
                continue
            stamp = {"sources": "added_at", "watchlists": "updated_at", "subscriptions": "created_at"}[table]
            record = {**values, "origin": "config", "removed_at": None, stamp: iso(now)}
            columns = ", ".join(record)
            # The first-seen stamp is set by the insert only: an update keeps the original.
            updates = ", ".join(f"{c} = excluded.{c}" for c in record if c not in (key, stamp))
            self.db.execute(
                f"""INSERT INTO {table} ({columns}) VALUES ({", ".join("?" * len(record))})
                    ON CONFLICT({key}) DO UPDATE SET {updates}""",
                list(record.values()),
            )

    def sync_config_subscriptions(self, subs: Sequence[Subscription], now: datetime) -> None:
        with self.transaction():
            self._sync("subscriptions", "id", _subscription_rows(subs), now)

    def active_sources(self) -> list[Source]:
        rows = self._all(
            """SELECT * FROM sources WHERE origin IS NOT NULL AND removed_at IS NULL AND disabled_at IS NULL
               ORDER BY added_at, name"""
        )
        return [Source(r["name"], r["url"], r["type"] or "feed", r["interval"] or 900) for r in rows]

    def active_watchlists(self) -> list[Watchlist]:
        rows = self._all("SELECT * FROM watchlists WHERE removed_at IS NULL ORDER BY rowid")
        return [Watchlist(r["name"], r["query"], r["description"] or "") for r in rows]

    def realtime_subscriptions(self) -> list[Subscription]:
        rows = self._all(
            """SELECT * FROM subscriptions WHERE mode = 'realtime' AND removed_at IS NULL
               ORDER BY created_at, id"""
        )
        return [Subscription(r["channel"], tuple(json.loads(r["watchlists"])), r["mode"]) for r in rows]

    # -- items --------------------------------------------------------------------------------

    def has_item(self, source: str, guid: str) -> bool:
        return self._one("SELECT 1 FROM items WHERE source = ? AND guid = ?", [source, guid]) is not None

    def item_id_for_url(self, url: str) -> int | None:
        """The first stored item whose link is the same page (www./m./AMP variants included)."""
        if not url:
            return None
        row = self._one("SELECT id FROM items WHERE url_key = ? ORDER BY id LIMIT 1", [url_key(url)])
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
                "url_key": url_key(item.url),
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

    def channels_with_pending_alerts(self, now: datetime) -> list[str]:
        """Channels whose oldest queued alert is due (a channel waits behind its first alert)."""
        rows = self._all(
            """SELECT a.channel FROM alerts a
               JOIN (SELECT channel, min(id) AS first FROM alerts WHERE status = 'queued' GROUP BY channel) f
                 ON a.id = f.first
               WHERE a.next_attempt_at IS NULL OR a.next_attempt_at <= ? ORDER BY a.id""",
            [iso(now)],
        )
        return [r["channel"] for r in rows]

    def claim_channel(
        self,
        channel: str,
        worker: str,
        now: datetime,
        *,
        stale_before: datetime,
        dead_workers: Iterable[str] = (),
    ) -> bool:
        """Become the one deliverer of ``channel``; False while another live worker holds it."""
        dead = list(dead_workers)
        marks = ",".join("?" * len(dead)) or "NULL"
        with self.transaction():
            self.db.execute(
                f"""INSERT INTO channel_claims (channel, worker, claimed_at) VALUES (?, ?, ?)
                    ON CONFLICT(channel) DO UPDATE
                    SET worker = excluded.worker, claimed_at = excluded.claimed_at
                    WHERE channel_claims.worker = excluded.worker OR channel_claims.claimed_at < ?
                       OR channel_claims.worker IN ({marks})""",
                [channel, worker, iso(now), iso(stale_before), *dead],
            )
            row = self._one("SELECT worker FROM channel_claims WHERE channel = ?", [channel])
        return row is not None and row["worker"] == worker

    def claim_holders(self) -> list[str]:
        return [r["worker"] for r in self._all("SELECT DISTINCT worker FROM channel_claims")]

    def release_channel(self, channel: str, worker: str) -> None:
        self.db.execute("DELETE FROM channel_claims WHERE channel = ? AND worker = ?", [channel, worker])

    def pending_alerts(self, channel: str, now: datetime, limit: int = 200) -> list[QueuedAlert]:
        """The channel's queued alerts up to the first one not yet due, oldest first.

        Order matters: a story's parent must be posted before its replies, so an alert waiting
        for its retry time holds back the ones queued after it.
        """
        due: list[QueuedAlert] = []
        for queued in self._queued("a.status = 'queued' AND a.channel = ?", [channel], limit):
            if queued.next_attempt_at is not None and queued.next_attempt_at > now:
                break
            due.append(queued)
        return due

    def queued_alerts(self, limit: int = 500) -> list[QueuedAlert]:
        return self._queued("a.status = 'queued'", [], limit)

    def dead_alerts(self, limit: int = 500) -> list[QueuedAlert]:
        return self._queued("a.status = 'dead'", [], limit)

    def _queued(self, where: str, params: list, limit: int) -> list[QueuedAlert]:
        rows = self._all(
            f"""SELECT a.id AS alert_id, a.channel, a.watchlists AS alert_watchlists, a.attempts,
                       a.in_flight, a.plain_text, a.created_at AS alert_created, a.last_error,
                       a.next_attempt_at, i.*
                FROM alerts a JOIN items i ON i.id = a.item_id
                WHERE {where} ORDER BY a.id LIMIT ?""",
            [*params, limit],
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
                in_flight=bool(r["in_flight"]),
                plain_text=bool(r["plain_text"]),
                created_at=datetime.fromisoformat(r["alert_created"]),
                last_error=r["last_error"] or "",
                next_attempt_at=from_iso(r["next_attempt_at"]),
            )
            for r in rows
        ]

    def mark_alert_in_flight(self, alert_id: int) -> None:
        self.db.execute("UPDATE alerts SET in_flight = 1 WHERE id = ?", [alert_id])

    def mark_alert_sent(self, alert_id: int, ts: str, now: datetime) -> None:
        self.db.execute(
            """UPDATE alerts SET status = 'sent', ts = ?, sent_at = ?, attempts = attempts + 1, in_flight = 0,
                   next_attempt_at = NULL WHERE id = ?""",
            [ts, iso(now), alert_id],
        )

    def mark_alert_retry(self, alert_id: int, error: str, *, not_before: datetime, in_flight: bool) -> None:
        """A failed attempt; the alert stays queued until ``not_before``.

        ``in_flight`` stays set when the attempt may have reached Slack (no answer came back).
        """
        self.db.execute(
            """UPDATE alerts SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, in_flight = ?
               WHERE id = ?""",
            [error, iso(not_before), int(in_flight), alert_id],
        )

    def mark_alert_plain_text(self, alert_id: int, error: str) -> None:
        self.db.execute(
            """UPDATE alerts SET plain_text = 1, attempts = attempts + 1, last_error = ?, in_flight = 0
               WHERE id = ?""",
            [error, alert_id],
        )

    def mark_alert_dead(self, alert_id: int, error: str) -> None:
        """A dead letter: kept, listed by `newsalert outbox`, retried only by a human."""
        self.db.execute(
            """UPDATE alerts SET status = 'dead', attempts = attempts + 1, last_error = ?, in_flight = 0
               WHERE id = ?""",
            [error, alert_id],
        )

    def retry_dead_alerts(self, alert_ids: Sequence[int] = ()) -> int:
        """Queue dead letters again (all when no ids are given) and clear their channels' broken mark."""
        where = f"id IN ({','.join('?' * len(alert_ids))})" if alert_ids else "1"
        with self.transaction():
            channels = [
                r["channel"]
                for r in self._all(
                    f"SELECT DISTINCT channel FROM alerts WHERE status = 'dead' AND {where}", list(alert_ids)
                )
            ]
            cursor = self.db.execute(
                f"""UPDATE alerts SET status = 'queued', next_attempt_at = NULL, plain_text = 0, attempts = 0
                    WHERE status = 'dead' AND {where}""",
                list(alert_ids),
            )
            for channel in channels:
                self.set_channel_broken(channel, None)
        return cursor.rowcount

    def set_channel_broken(self, channel: str, reason: str | None) -> None:
        """Mark (or, with None, clear) every subscription of ``channel`` as undeliverable."""
        self.db.execute("UPDATE subscriptions SET broken = ? WHERE channel = ?", [reason, channel])

    def broken_subscriptions(self) -> list[tuple[str, str]]:
        rows = self._all(
            "SELECT DISTINCT channel, broken FROM subscriptions WHERE broken IS NOT NULL ORDER BY channel"
        )
        return [(r["channel"], r["broken"]) for r in rows]

    def count(self, table: str, where: str = "1", params: Sequence[object] = ()) -> int:
        if table not in {"items", "matches", "alerts", "sources", "subscriptions", "stories"}:
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
                yield row["id"], row["story_key"], _item_from_row(row)


def _subscription_rows(subs: Sequence[Subscription]) -> dict[str, dict]:
    return {
        subscription_id(s): {
            "id": subscription_id(s),
            "channel": s.channel,
            "watchlists": json.dumps(list(s.watchlists)),
            "mode": s.mode,
        }
        for s in subs
    }


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
