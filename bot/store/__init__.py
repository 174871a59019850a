"""SQLite storage: the only module that knows the schema or writes SQL.

Items, the watchlists they matched, the alert outbox and per-source fetch state live in one
SQLite file (WAL mode). The schema is created and migrated on open with sqlite-utils
`Migrations`, one named migration per change, each in its own transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from sqlite_utils import Migrations

from bot.errors import StoreError
from bot.ingest.normalize import url_key
from bot.model import Item, Source, Span, Subscription, Watchlist
from bot.stories.fingerprint import Fingerprint, StoryIndex

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


@migrations()
def m006_slack_app(db: sqlite_utils.Database) -> None:
    """What people do from Slack: mutes, not-relevant feedback, triage of alerts, and an audit trail.

    ``feedback`` and ``triage`` key on the item of the story's top-level message in a channel
    (story_posts.item_id), which is what the buttons sit on; `newsalert export` reads both.
    """
    # kind: 'story' (target = story id) or 'source' (target = source name); until NULL = for good.
    db["mutes"].create(
        {"channel": str, "kind": str, "target": str, "user_id": str, "created_at": str, "until": str},
        pk=("channel", "kind", "target"),
        not_null={"user_id", "created_at"},
    )
    db["feedback"].create(
        {
            "id": int,
            "item_id": int,
            "channel": str,
            "watchlist": str,
            "user_id": str,
            "kind": str,  # 'not_relevant'
            "created_at": str,
        },
        pk="id",
        not_null={"item_id", "channel", "watchlist", "user_id", "kind", "created_at"},
        foreign_keys=[("item_id", "items", "id")],
    )
    # One vote per person per alert and watchlist: a second click changes nothing.
    db["feedback"].create_index(["item_id", "channel", "watchlist", "user_id", "kind"], unique=True)
    db["feedback"].create_index(["watchlist"])
    db["triage"].create(
        {"item_id": int, "channel": str, "state": str, "user_id": str, "updated_at": str},
        pk=("item_id", "channel"),
        not_null={"state", "user_id", "updated_at"},
        foreign_keys=[("item_id", "items", "id")],
    )
    db["audit"].create(
        {"id": int, "at": str, "user_id": str, "channel": str, "action": str, "detail": str},
        pk="id",
        not_null={"at", "user_id", "action"},
    )
    db["audit"].create_index(["at"])


@migrations()
def m009_digests(db: sqlite_utils.Database) -> None:
    """Digest subscriptions, and the digests sent: each one's window, so coverage is exact."""
    for column, kind in [
        ("schedule", str),
        ("timezone", str),
        ("skip_empty", int),
        ("top", int),
        ("digest_covered_until", str),
    ]:
        db["subscriptions"].add_column(column, kind)
    db["digests"].create(
        {
            "id": int,
            "subscription_id": str,
            "window_start": str,
            "window_end": str,
            "status": str,
            "ts": str,
            "created_at": str,
        },
        pk="id",
        not_null={"subscription_id", "window_start", "window_end", "status", "created_at"},
    )
    db["digests"].create_index(["subscription_id", "status"])


# Search (bot/history.py) takes its candidates from FTS5 and confirms each with the watchlist
# matcher, so FTS5 must see at least the words the matcher sees. Its unicode61 tokenizer splits and
# folds every character in FTS_PLAIN the way bot.query does, except those in FTS_NOT_PLAIN
# (tests/test_history.py checks each one against the SQLite in use). An item with any other
# character (fullwidth letters, Hebrew points, Cyrillic "й", soft hyphens …), or with an "&…;" the
# matcher would decode as an HTML entity, is listed in items_fts_fallback: search always hands it to
# the matcher. Frozen with m007: changing these needs a migration that recreates the triggers.
FTS_PLAIN = (
    (0x01, 0x24F),  # ASCII, Latin-1, Latin Extended-A/B
    (0x1E00, 0x1EFF),  # Latin Extended Additional
    (0x2000, 0x205F),  # general punctuation (dashes, curly quotes, spaces)
    (0x20A0, 0x20B9),  # currency signs
    (0x2190, 0x23F3),  # arrows, technical symbols
    (0x24EB, 0x26FF),  # box drawing, shapes, miscellaneous symbols
    (0x2701, 0x2B4C),  # dingbats, more arrows
)
FTS_NOT_PLAIN = (
    (0xAA, 0xAA),  # ª: the matcher folds compatibility forms (NFKD), FTS5 keeps them
    (0xAD, 0xAD),  # soft hyphen: dropped inside a word by the matcher, a separator for FTS5
    (0xB2, 0xB3),  # ² ³
    (0xB9, 0xBA),  # ¹ º
    (0x1E0, 0x1E3),  # letters whose decomposition FTS5 folds differently
    (0x1EE, 0x1EF),
    (0x1FC, 0x1FF),
    (0x200B, 0x200D),  # zero-width space and joiners
)


def _glob_class(ranges: tuple[tuple[int, int], ...]) -> str:
    """SQL for the inside of a GLOB [...] class; char() keeps odd characters out of the schema text."""
    codes: list[int] = []
    for lo, hi in ranges:
        codes += [lo] if lo == hi else [lo, ord("-"), hi]
    return f"char({', '.join(map(str, codes))})"


def _fts_fallback_sql(words: str) -> str:
    """SQL condition: the matcher may see words in ``words`` that FTS5 does not (see FTS_PLAIN)."""
    return (
        f"({words} GLOB '*[^' || {_glob_class(FTS_PLAIN)} || ']*'"
        f" OR {words} GLOB '*[' || {_glob_class(FTS_NOT_PLAIN)} || ']*'"
        f" OR (instr({words}, '&') > 0 AND instr({words}, ';') > 0))"
    )


@migrations()
def m007_history(db: sqlite_utils.Database) -> None:
    """Full-text search over items: FTS5 on title and text, kept in sync by triggers.

    External content (content='items'): the index holds no second copy of the text. The triggers
    are the only writers; a later migration that rebuilds the items table (sqlite-utils
    transform) must recreate them. Rows are never REPLACEd into items (that would skip the
    delete trigger unless recursive_triggers is on).
    """
    db.execute(
        """CREATE VIRTUAL TABLE items_fts USING fts5(title, text, content='items', content_rowid='id',
               tokenize="unicode61 remove_diacritics 2 tokenchars '_'")"""
    )
    db.execute("CREATE TABLE items_fts_fallback (item_id INTEGER PRIMARY KEY)")
    # The lowest item id first seen on each UTC day: a search window's lowest possible id, so FTS5
    # can skip older postings by rowid (min(id) over a month of the first_seen index is ~0.2 s).
    db.execute("CREATE TABLE items_by_day (day TEXT PRIMARY KEY, first_id INTEGER NOT NULL)")
    words = "coalesce(new.title, '') || ' ' || coalesce(new.text, '')"
    fallback = (
        f"INSERT INTO items_fts_fallback (item_id) SELECT new.id WHERE {_fts_fallback_sql(f'({words})')};"
    )
    db.execute(
        f"""CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
                INSERT INTO items_fts (rowid, title, text) VALUES (new.id, new.title, new.text);
                {fallback}
                INSERT INTO items_by_day (day, first_id) VALUES (substr(new.first_seen, 1, 10), new.id)
                    ON CONFLICT (day) DO UPDATE SET first_id = min(first_id, excluded.first_id);
            END"""
    )
    db.execute(
        """CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
               INSERT INTO items_fts (items_fts, rowid, title, text)
                   VALUES ('delete', old.id, old.title, old.text);
               DELETE FROM items_fts_fallback WHERE item_id = old.id;
           END"""
    )
    db.execute(
        f"""CREATE TRIGGER items_fts_update AFTER UPDATE OF title, text ON items BEGIN
                INSERT INTO items_fts (items_fts, rowid, title, text)
                    VALUES ('delete', old.id, old.title, old.text);
                INSERT INTO items_fts (rowid, title, text) VALUES (new.id, new.title, new.text);
                DELETE FROM items_fts_fallback WHERE item_id = old.id;
                {fallback}
            END"""
    )
    db.execute("INSERT INTO items_fts (items_fts) VALUES ('rebuild')")
    stored = "(coalesce(title, '') || ' ' || coalesce(text, ''))"
    db.execute(f"INSERT INTO items_fts_fallback SELECT id FROM items WHERE {_fts_fallback_sql(stored)}")
    db.execute("INSERT INTO items_by_day SELECT substr(first_seen, 1, 10), min(id) FROM items GROUP BY 1")
    # Retention deletes items: the foreign key items.duplicate_of is checked on each delete, and
    # without an index every check would scan the whole table.
    db.execute(
        "CREATE INDEX IF NOT EXISTS items_duplicate_of ON items (duplicate_of) WHERE duplicate_of IS NOT NULL"
    )


@migrations()
def m010_body_hash(db: sqlite_utils.Database) -> None:
    """A digest of the last body each source answered 200 with and that was ingested: a server
    without ETag/Last-Modified that sends the same bytes again needs no parse (pipeline.poll)."""
    db["sources"].add_column("body_hash", str)


@migrations()
def m011_story_index_in_memory(db: sqlite_utils.Database) -> None:
    """The token index of the story window is built in memory from the fingerprints table
    (stories.StoryIndex): the per-token rows of story_tokens are no longer written or read."""
    db.execute("DROP TABLE IF EXISTS story_tokens")


@migrations()
def m012_index_new_items_in_bulk(db: sqlite_utils.Database) -> None:
    """New items are added to the search index by Store (index_new_items), in one statement per
    transaction, instead of by a trigger per row: a poll's items are indexed in a fifth of the
    time. The trigger's search-fallback test (two GLOBs over the whole text, which cost more
    than the indexing itself) is made in Python (needs_search_fallback). Edits and deletes keep
    their triggers."""
    db.execute("DROP TRIGGER items_fts_insert")


@migrations()
def m013_index_matched_items_only(db: sqlite_utils.Database) -> None:
    """Stories index only the items a watchlist matched (pipeline.ingest). Earlier versions
    fingerprinted every item: those of unmatched items go, and the document frequencies are
    counted again over the fingerprints left, so an upgraded bot loads a small index."""
    db.execute("DELETE FROM fingerprints WHERE item_id NOT IN (SELECT item_id FROM matches)")
    counts: Counter[str] = Counter()
    total = 0
    for title, lead in db.execute("SELECT title, lead FROM fingerprints"):
        counts.update(set(title.split()) | set(lead.split()))
        total += 1
    db.execute("DELETE FROM token_df WHERE token != ?", [_PRUNED])
    db.conn.executemany("INSERT INTO token_df (token, df) VALUES (?, ?)", [*counts.items(), (_TOTAL, total)])


def _regex_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges
    )


# What _fts_fallback_sql says in SQL (the update trigger still uses it), as one expression.
_FALLBACK_CHARS = re.compile(f"[^{_regex_class(FTS_PLAIN)}]|[{_regex_class(FTS_NOT_PLAIN)}]")


def needs_search_fallback(title: str, text: str) -> bool:
    """True when the matcher may see words in the item that FTS5 does not (see FTS_PLAIN)."""
    words = f"{title} {text}"
    if "&" in words and ";" in words:
        return True
    if words.isascii():  # every ASCII character but NUL is plain: no need for the expression
        return "\x00" in words
    return bool(_FALLBACK_CHARS.search(words))


CACHE_KIB = 32 * 1024  # SQLite's page cache per connection
BUSY_TIMEOUT = 30.0  # seconds a connection waits for another's write lock before giving up
_TOTAL = "\x00total"  # token_df row counting all fingerprints: the N of IDF
_PRUNED = "\x00pruned"  # token_df row counting the deletions of fingerprints (retention)


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
    fields: list = [sub.channel, sorted(sub.watchlists), sub.mode]
    if sub.mode == "digest":  # realtime ids predate digests and must not change
        fields += [sub.schedule, sub.timezone]
    key = json.dumps(fields)
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
    def __init__(self, db: sqlite_utils.Database, path: str | None = None):
        self.db = db
        self.path = path  # for another connection to the same file (one per thread)
        # The story window's fingerprints, in memory (stories.StoryIndex): loaded on first use,
        # kept in step with add_fingerprint, and reloaded when another connection has written.
        self._story_index: StoryIndex | None = None
        self._story_index_version = -1
        self._story_index_since = datetime.max.replace(tzinfo=UTC)
        self._story_index_signature = (0, 0, 0)
        self._in_transaction = False  # inside transaction(): new items are indexed at its end
        self._unindexed_from: int | None = None  # the first item id not yet in the search index

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
            # WAL with synchronous=NORMAL: a commit is not flushed to disk on its own, only at
            # checkpoints. The database stays consistent whatever happens; a power cut (not a
            # crash of the bot) may lose the last commits, which the next poll fetches again.
            db.execute("PRAGMA synchronous = NORMAL")
            # A first poll of a thousand sources writes ~200 MB; the default 2 MB page cache
            # would read the items' indexes back from the OS for every insert.
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            store = cls(db, None if str(path) == ":memory:" else str(path))
            # Two processes starting at once must not both migrate: the first takes the write
            # lock, the second waits and then finds nothing pending.
            with store.transaction():
                migrations.apply(db)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{path}: cannot use database: {e}") from None
        return store

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, BEGIN IMMEDIATE: the write lock is taken up front.

        A deferred BEGIN that reads and then writes can fail at once with "database is
        locked" when another connection got there first (SQLite cannot wait for a lock it
        might deadlock on); IMMEDIATE waits for the busy timeout instead. Nested: a savepoint.
        """
        conn = self.db.conn
        if conn.in_transaction:
            try:
                with self.db.atomic():
                    yield
            except BaseException:
                self._story_index = None  # it may hold fingerprints that were just rolled back
                raise
            return
        conn.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield
            self.index_new_items()
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._story_index = None
            self._unindexed_from = None
            raise
        finally:
            self._in_transaction = False
        conn.execute("COMMIT")

    def index_new_items(self) -> None:
        """Add the items stored since the last call to the search index (items_fts, items_by_day).

        Inside a transaction, add_item leaves that to the commit: one INSERT … SELECT indexes a
        whole batch for a fraction of the cost of one insert per row. Called before anything
        that edits or deletes items, whose triggers expect the index to hold them.
        """
        start, self._unindexed_from = self._unindexed_from, None
        if start is None:
            return
        self.db.execute(
            "INSERT INTO items_fts (rowid, title, text) SELECT id, title, text FROM items WHERE id >= ?",
            [start],
        )
        self.db.execute(
            """INSERT INTO items_by_day (day, first_id)
               SELECT substr(first_seen, 1, 10), min(id) FROM items WHERE id >= ? GROUP BY 1
               ON CONFLICT (day) DO UPDATE SET first_id = min(first_id, excluded.first_id)""",
            [start],
        )

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
                    s.name: {
                        "name": s.name,
                        "url": s.url,
                        "type": s.type,
                        "interval": s.interval,
                        "disabled_at": None,
                        "disabled_reason": None,
                    }
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
        return [_subscription_from_row(r) for r in rows]

    # -- items --------------------------------------------------------------------------------

    def has_item(self, source: str, guid: str) -> bool:
        return self._one("SELECT 1 FROM items WHERE source = ? AND guid = ?", [source, guid]) is not None

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
        cursor = self.db.execute(
            """INSERT INTO items (source, guid, url, title, text, outlet, headline_only, published,
                                  first_seen, duplicate_of, url_key, story_id)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
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
                url_key(item.url) if key is None else key,
                story_id,
            ],
        )
        item_id = int(cursor.lastrowid)
        if self._unindexed_from is None:
            self._unindexed_from = item_id
        if not self._in_transaction:
            self.index_new_items()
        if needs_search_fallback(item.title, item.text):
            self.db.execute("INSERT INTO items_fts_fallback (item_id) VALUES (?)", [item_id])
        if not new_story:
            self.db.execute(
                "UPDATE stories SET last_seen = max(last_seen, ?) WHERE id = ?", [iso(item.fetched), story_id]
            )
        return item_id

    def items_by_guid(self, source: str, guids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
        """guid -> (id, title, text) of the items of ``source`` already stored, among ``guids``."""
        found: dict[str, tuple[int, str, str]] = {}
        for part in _chunks(list(dict.fromkeys(guids))):
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
        for part in _chunks(list(dict.fromkeys(k for k in keys if k))):
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

    def story_of(self, item_id: int) -> int:
        return self._one("SELECT story_id FROM items WHERE id = ?", [item_id])["story_id"]

    # -- stories ------------------------------------------------------------------------------

    def new_story(self, now: datetime) -> int:
        cursor = self.db.execute(
            "INSERT INTO stories (first_seen, last_seen) VALUES (?, ?)", [iso(now), iso(now)]
        )
        return int(cursor.lastrowid)

    def story_index(self, since: datetime) -> StoryIndex:
        """The fingerprints seen since ``since``, and every document frequency, in memory.

        Loaded once, then kept in step by add_fingerprint. When another connection has committed
        (PRAGMA data_version: our own commits do not change it), it is loaded again only if that
        changed the index: fingerprints added (the highest id, the total) or deleted (a counter
        retention bumps). Delivery and Slack commands write all the time; they do not count.
        Loaded again too when asked for an earlier window than loaded.
        """
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        index = self._story_index
        if index is not None and version != self._story_index_version and since >= self._story_index_since:
            if self._index_signature() != self._story_index_signature:
                index = None
            self._story_index_version = version
        if index is None or since < self._story_index_since:
            signature = self._index_signature()
            df = dict(self.db.execute("SELECT token, df FROM token_df").fetchall())
            df.pop(_PRUNED, None)
            index = StoryIndex(df, df.pop(_TOTAL, 0))
            rows = self.db.execute(
                "SELECT item_id, story_id, seen, title, lead FROM fingerprints WHERE seen >= ? "
                "ORDER BY seen, item_id",
                [iso(since)],
            )
            for item_id, story_id, seen, title, lead in rows:
                fp = Fingerprint(frozenset(title.split()), frozenset(lead.split()))
                index.add(item_id, story_id, datetime.fromisoformat(seen), fp, count=False)
            self._story_index, self._story_index_since = index, since
            self._story_index_version, self._story_index_signature = version, signature
        return index

    def _count_tokens(self, tokens: Iterable[str]) -> None:
        """One more for each of ``tokens`` in token_df (and its counter rows, _TOTAL and _PRUNED)."""
        self.db.conn.executemany(
            "INSERT INTO token_df (token, df) VALUES (?, 1) ON CONFLICT(token) DO UPDATE SET df = df + 1",
            [(t,) for t in tokens],
        )

    def _index_signature(self) -> tuple[int, int, int]:
        """(highest fingerprinted item id, fingerprints ever, deletions): what changes the index."""
        row = self.db.execute(
            """SELECT (SELECT coalesce(max(item_id), 0) FROM fingerprints),
                      (SELECT coalesce(max(df), 0) FROM token_df WHERE token = ?),
                      (SELECT coalesce(max(df), 0) FROM token_df WHERE token = ?)""",
            [_TOTAL, _PRUNED],
        ).fetchone()
        return (row[0], row[1], row[2])

    def add_fingerprint(self, item_id: int, story_id: int, seen: datetime, fp: Fingerprint) -> None:
        """Index an item for clustering: later items can join its story."""
        self.db.execute(
            "INSERT INTO fingerprints (item_id, story_id, seen, title, lead) VALUES (?, ?, ?, ?, ?)",
            [item_id, story_id, iso(seen), " ".join(sorted(fp.title)), " ".join(sorted(fp.lead))],
        )
        self._count_tokens([*fp.tokens, _TOTAL])
        if self._story_index is not None:
            self._story_index.add(item_id, story_id, seen, fp)
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
        for name, spans in matches.items():
            self.db.execute(
                "INSERT INTO matches (item_id, watchlist, spans) VALUES (?, ?, ?)",
                [item_id, name, _spans_to_json(spans)],
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

    # -- digests -----------------------------------------------------------------------------

    def subscriptions(self) -> list[tuple[str, Subscription, datetime, datetime | None]]:
        """(id, subscription, created_at, digest covered until) of every active subscription."""
        rows = self._all("SELECT * FROM subscriptions WHERE removed_at IS NULL ORDER BY created_at, id")
        return [
            (
                r["id"],
                _subscription_from_row(r),
                datetime.fromisoformat(r["created_at"]),
                from_iso(r["digest_covered_until"]),
            )
            for r in rows
        ]

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

    # -- slack app ---------------------------------------------------------------------------
    # What people change from Slack. Catalog rows they touch get ``changed_by`` (and ``removed_at``
    # rather than a delete), so the config file no longer overrides them on the next start.

    def channel_subscriptions(self, channel: str) -> list[tuple[str, str, str | None]]:
        """(watchlist, origin, changed_by) of every realtime subscription of ``channel``."""
        rows = self._all(
            """SELECT watchlists, origin, changed_by FROM subscriptions
               WHERE channel = ? AND mode = 'realtime' AND removed_at IS NULL ORDER BY created_at, id""",
            [channel],
        )
        seen: dict[str, tuple[str, str, str | None]] = {}
        for r in rows:
            for name in json.loads(r["watchlists"]):
                seen.setdefault(name, (name, r["origin"], r["changed_by"]))
        return list(seen.values())

    def subscribe(self, channel: str, watchlists: Sequence[str], user: str, now: datetime) -> list[str]:
        """Add realtime subscriptions of ``channel``; returns the watchlists it did not have yet."""
        with self.transaction():
            have = {name for name, _, _ in self.channel_subscriptions(channel)}
            added = [w for w in dict.fromkeys(watchlists) if w not in have]
            for name in added:
                self._slack_subscription(channel, name, user, now)
        return added

    def unsubscribe(self, channel: str, watchlists: Sequence[str], user: str, now: datetime) -> list[str]:
        """Remove realtime subscriptions of ``channel``; returns the watchlists it did have.

        A row listing several watchlists (as the config file writes them) is marked removed as a
        whole and the ones still wanted come back as rows of their own, made from Slack.
        """
        drop = set(watchlists)
        with self.transaction():
            rows = self._all(
                """SELECT id, watchlists FROM subscriptions
                   WHERE channel = ? AND mode = 'realtime' AND removed_at IS NULL""",
                [channel],
            )
            removed: list[str] = []
            keep: list[str] = []
            untouched: set[str] = set()
            for r in rows:
                names = json.loads(r["watchlists"])
                if drop.isdisjoint(names):
                    untouched.update(names)
                    continue
                self.db.execute(
                    "UPDATE subscriptions SET removed_at = ?, changed_by = ? WHERE id = ?",
                    [iso(now), user, r["id"]],
                )
                removed += [n for n in names if n in drop]
                keep += [n for n in names if n not in drop]
            for name in dict.fromkeys(keep):
                if name not in untouched:
                    self._slack_subscription(channel, name, user, now)
        return [w for w in dict.fromkeys(watchlists) if w in removed]

    def _slack_subscription(self, channel: str, watchlist: str, user: str, now: datetime) -> None:
        # The id a config entry for this one watchlist would have: re-subscribing revives that row.
        sub_id = subscription_id(Subscription(channel, (watchlist,)))
        self.db.execute(
            """INSERT INTO subscriptions (id, channel, watchlists, mode, origin, created_at, changed_by)
               VALUES (?, ?, ?, 'realtime', 'slack', ?, ?)
               ON CONFLICT(id) DO UPDATE SET removed_at = NULL, broken = NULL,
                    changed_by = excluded.changed_by""",
            [sub_id, channel, json.dumps([watchlist]), iso(now), user],
        )

    def subscribe_digest(self, sub: Subscription, user: str, now: datetime) -> str:
        """Add (or revive) a digest subscription made from Slack; returns its id."""
        sid = subscription_id(sub)
        self.db.execute(
            """INSERT INTO subscriptions (id, channel, watchlists, mode, schedule, timezone, skip_empty, top,
                                          origin, created_at, changed_by)
               VALUES (?, ?, ?, 'digest', ?, ?, ?, ?, 'slack', ?, ?)
               ON CONFLICT(id) DO UPDATE SET removed_at = NULL, broken = NULL,
                    changed_by = excluded.changed_by""",
            [
                sid,
                sub.channel,
                json.dumps(list(sub.watchlists)),
                sub.schedule,
                sub.timezone,
                int(sub.skip_empty),
                sub.top,
                iso(now),
                user,
            ],
        )
        return sid

    def unsubscribe_digest(self, channel: str, subscription_id: str, user: str, now: datetime) -> bool:
        cursor = self.db.execute(
            """UPDATE subscriptions SET removed_at = ?, changed_by = ?
               WHERE id = ? AND channel = ? AND mode = 'digest' AND removed_at IS NULL""",
            [iso(now), user, subscription_id, channel],
        )
        return cursor.rowcount == 1

    def watchlist_row(self, name: str) -> dict | None:
        return self._one("SELECT * FROM watchlists WHERE name = ?", [name])

    def save_watchlist(self, name: str, query: str, user: str, now: datetime) -> None:
        """Add (or revive, or change the query of) a watchlist from Slack."""
        self.db.execute(
            """INSERT INTO watchlists (name, query, description, origin, updated_at, changed_by)
               VALUES (?, ?, '', 'slack', ?, ?)
               ON CONFLICT(name) DO UPDATE SET query = excluded.query, removed_at = NULL,
                    changed_by = excluded.changed_by, updated_at = excluded.updated_at""",
            [name, query, iso(now), user],
        )

    def remove_watchlist(self, name: str, user: str, now: datetime) -> bool:
        cursor = self.db.execute(
            "UPDATE watchlists SET removed_at = ?, changed_by = ? WHERE name = ? AND removed_at IS NULL",
            [iso(now), user, name],
        )
        return cursor.rowcount == 1

    def channels_subscribed_to(self, watchlist: str) -> list[str]:
        return sorted({s.channel for s in self.realtime_subscriptions() if watchlist in s.watchlists})

    def source_rows(self) -> list[dict]:
        """Every active source with its fetch state (last success, last error …), by name."""
        return self._all(
            """SELECT * FROM sources WHERE origin IS NOT NULL AND removed_at IS NULL
               ORDER BY name COLLATE NOCASE"""
        )

    def source_row(self, name: str) -> dict | None:
        return self._one("SELECT * FROM sources WHERE name = ?", [name])

    def add_source(self, source: Source, user: str, now: datetime) -> None:
        """Add (or revive) a source from Slack. Validators are reset: the URL may have changed."""
        self.db.execute(
            """INSERT INTO sources (name, url, type, interval, origin, added_at, changed_by,
                                    consecutive_failures)
               VALUES (?, ?, ?, ?, 'slack', ?, ?, 0)
               ON CONFLICT(name) DO UPDATE SET url = excluded.url, type = excluded.type,
                    interval = excluded.interval, origin = COALESCE(sources.origin, 'slack'),
                    removed_at = NULL, changed_by = excluded.changed_by, added_at = excluded.added_at,
                    etag = NULL, last_modified = NULL, disabled_at = NULL, disabled_reason = NULL""",
            [source.name, source.url, source.type, source.interval, iso(now), user],
        )

    def remove_source(self, name: str, user: str, now: datetime) -> bool:
        cursor = self.db.execute(
            """UPDATE sources SET removed_at = ?, changed_by = ?
               WHERE name = ? AND origin IS NOT NULL AND removed_at IS NULL""",
            [iso(now), user, name],
        )
        return cursor.rowcount == 1

    def mute(
        self, channel: str, kind: str, target: str, user: str, now: datetime, until: datetime | None = None
    ) -> None:
        """Mute a story ('story', its id) or a source ('source', its name) in one channel."""
        self.db.execute(
            """INSERT INTO mutes (channel, kind, target, user_id, created_at, until) VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(channel, kind, target) DO UPDATE SET user_id = excluded.user_id,
                    created_at = excluded.created_at, until = excluded.until""",
            [channel, kind, target, user, iso(now), iso(until) if until else None],
        )

    def unmute(self, channel: str, kind: str, target: str) -> bool:
        cursor = self.db.execute(
            "DELETE FROM mutes WHERE channel = ? AND kind = ? AND target = ?", [channel, kind, target]
        )
        return cursor.rowcount == 1

    def channel_mutes(self, channel: str, now: datetime) -> list[dict]:
        """The mutes in force in ``channel``; story mutes carry the story's first title."""
        return self._all(
            """SELECT m.*, (SELECT title FROM items WHERE story_id = CAST(m.target AS INTEGER)
                            ORDER BY id LIMIT 1) AS title
               FROM mutes m WHERE m.channel = ? AND (m.until IS NULL OR m.until > ?)
               ORDER BY m.kind, m.created_at""",
            [channel, iso(now)],
        )

    def alert_muted(self, channel: str, story_id: int, source: str, now: datetime) -> str | None:
        """Why an alert must not be posted in ``channel`` (its story or its source is muted), or None."""
        row = self._one(
            """SELECT kind, target FROM mutes WHERE channel = ? AND (until IS NULL OR until > ?)
               AND ((kind = 'story' AND target = ?) OR (kind = 'source' AND target = ?))""",
            [channel, iso(now), str(story_id), source],
        )
        if row is None:
            return None
        return "story muted" if row["kind"] == "story" else f"source {row['target']} muted"

    def channels_muting_source(self, source: str, now: datetime) -> set[str]:
        rows = self._all(
            """SELECT channel FROM mutes WHERE kind = 'source' AND target = ?
               AND (until IS NULL OR until > ?)""",
            [source, iso(now)],
        )
        return {r["channel"] for r in rows}

    def mark_alert_muted(self, alert_id: int, reason: str) -> None:
        """Not posted, on purpose: a mute. Kept (status 'muted') so the outbox tells why."""
        self.db.execute(
            "UPDATE alerts SET status = 'muted', last_error = ?, in_flight = 0 WHERE id = ?",
            [reason, alert_id],
        )

    def story_post_at(self, channel: str, ts: str) -> StoryPost | None:
        """The story whose top-level message in ``channel`` is the message ``ts``."""
        row = self._one("SELECT story_id FROM story_posts WHERE channel = ? AND ts = ?", [channel, ts])
        return self.story_post(row["story_id"], channel) if row else None

    def add_feedback(
        self, item_id: int, channel: str, watchlists: Sequence[str], user: str, kind: str, now: datetime
    ) -> int:
        """Record feedback on an alert for each of its watchlists; returns how many rows were new."""
        added = 0
        with self.transaction():
            for watchlist in dict.fromkeys(watchlists):
                cursor = self.db.execute(
                    """INSERT OR IGNORE INTO feedback (item_id, channel, watchlist, user_id, kind, created_at)
                       VALUES (?, ?, ?, ?, ?, ?)""",
                    [item_id, channel, watchlist, user, kind, iso(now)],
                )
                added += cursor.rowcount
        return added

    def not_relevant_rates(self) -> dict[str, tuple[int, int]]:
        """watchlist -> (alerts marked not relevant, alerts posted), over every story message."""
        posted = {
            r["watchlist"]: r["n"]
            for r in self._all(
                """SELECT j.value AS watchlist, count(*) AS n
                   FROM story_posts, json_each(story_posts.watchlists) j GROUP BY j.value"""
            )
        }
        flagged = {
            r["watchlist"]: r["n"]
            for r in self._all(
                """SELECT watchlist, count(DISTINCT item_id || ' ' || channel) AS n FROM feedback
                   WHERE kind = 'not_relevant' GROUP BY watchlist"""
            )
        }
        return {w: (flagged.get(w, 0), posted.get(w, 0)) for w in sorted(set(posted) | set(flagged))}

    def set_triage(self, item_id: int, channel: str, state: str, user: str, now: datetime) -> None:
        self.db.execute(
            """INSERT INTO triage (item_id, channel, state, user_id, updated_at) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT(item_id, channel) DO UPDATE SET state = excluded.state, user_id = excluded.user_id,
                    updated_at = excluded.updated_at""",
            [item_id, channel, state, user, iso(now)],
        )

    def message_state(self, channel: str, story_id: int, item_id: int, now: datetime) -> dict:
        """Who triaged, muted or flagged the alert on ``item_id`` in ``channel`` (render.MessageState)."""
        triage = self._one(
            "SELECT state, user_id FROM triage WHERE item_id = ? AND channel = ?", [item_id, channel]
        )
        source = self._one("SELECT source FROM items WHERE id = ?", [item_id])
        mutes = {
            r["kind"]: r["user_id"]
            for r in self._all(
                """SELECT kind, user_id FROM mutes WHERE channel = ? AND (until IS NULL OR until > ?)
                   AND ((kind = 'story' AND target = ?) OR (kind = 'source' AND target = ?))""",
                [channel, iso(now), str(story_id), source["source"] if source else ""],
            )
        }
        flagged = self._all(
            """SELECT user_id, min(id) AS first FROM feedback WHERE item_id = ? AND channel = ?
               AND kind = 'not_relevant' GROUP BY user_id ORDER BY first""",
            [item_id, channel],
        )
        return {
            "triage": triage["state"] if triage else None,
            "triage_by": triage["user_id"] if triage else None,
            "story_muted_by": mutes.get("story"),
            "source_muted_by": mutes.get("source"),
            "not_relevant_by": tuple(r["user_id"] for r in flagged),
        }

    def latest_story_posts(self, limit: int = 10, channels: Iterable[str] | None = None) -> list[dict]:
        """The newest alert messages (story_posts) with their item and triage state, newest first."""
        where, params = "", []
        if channels is not None:
            chosen = sorted(set(channels))
            if not chosen:
                return []
            where = f"WHERE p.channel IN ({','.join('?' * len(chosen))})"
            params = chosen
        return self._all(
            f"""SELECT p.story_id, p.channel, p.item_id, p.ts, p.posted_at, p.watchlists,
                       i.title, i.url, i.source, i.outlet, t.state, t.user_id AS state_by
                FROM story_posts p JOIN items i ON i.id = p.item_id
                LEFT JOIN triage t ON t.item_id = p.item_id AND t.channel = p.channel
                {where} ORDER BY p.posted_at DESC, p.rowid DESC LIMIT ?""",
            [*params, limit],
        )

    def record_audit(self, user: str, channel: str | None, action: str, detail: str, now: datetime) -> None:
        self.db.execute(
            "INSERT INTO audit (at, user_id, channel, action, detail) VALUES (?, ?, ?, ?, ?)",
            [iso(now), user, channel, action, detail],
        )

    def audit_log(self, limit: int = 100) -> list[dict]:
        """The latest changes made from Slack, newest first."""
        return self._all("SELECT * FROM audit ORDER BY id DESC LIMIT ?", [limit])

    # -- history and operations ---------------------------------------------------------------
    # Search, export and retention (bot/history.py), health (bot/status.py), OPML (bot/opml.py).

    @classmethod
    def open_readonly(cls, path: str | Path, timeout: float = 5.0) -> Store:
        """For health checks: no migration, no write lock, so a long poll never holds it up."""
        try:
            conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot read database: {e}") from None
        return cls(sqlite_utils.Database(conn))

    def has_table(self, name: str) -> bool:
        row = self._one("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?", [name])
        return row is not None

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
        else:
            pool = """(SELECT rowid AS id FROM items_fts WHERE items_fts MATCH :match AND rowid >= :lo
                       UNION SELECT item_id FROM items_fts_fallback WHERE item_id >= :lo) c
                      JOIN items i ON i.id = c.id"""
        where = ["i.first_seen >= :since"]
        if source is not None:
            where.append("(i.source = :source COLLATE NOCASE OR i.outlet = :source COLLATE NOCASE)")
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

    def search_texts(self, item_ids: Sequence[int]) -> dict[int, dict]:
        """id -> title, text, source, url of the given items."""
        found: dict[int, dict] = {}
        for part in _chunks(item_ids):
            marks = ",".join("?" * len(part))
            for r in self._all(f"SELECT id, title, text, source, url FROM items WHERE id IN ({marks})", part):
                found[r["id"]] = r
        return found

    def story_watchlists(self, story_ids: Sequence[int]) -> dict[int, list[str]]:
        """story id -> the watchlists any of its items matched, in the order they first matched."""
        found: dict[int, list[str]] = {}
        for part in _chunks(story_ids):
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

    def matched_items_since(self, since: datetime, watchlist: str | None = None) -> list[dict]:
        """Items first seen since ``since`` that matched a watchlist (``watchlist`` if given), with
        their story: stories newest first, each story's items oldest first."""
        extra, params = ("AND m.watchlist = ?", [iso(since), watchlist]) if watchlist else ("", [iso(since)])
        return self._all(
            f"""SELECT DISTINCT i.story_id, s.first_seen AS story_first_seen, i.id, i.title, i.url,
                       i.first_seen
                FROM matches m JOIN items i ON i.id = m.item_id JOIN stories s ON s.id = i.story_id
                WHERE i.first_seen >= ? {extra}
                ORDER BY s.first_seen DESC, s.id DESC, i.first_seen, i.id""",
            params,
        )

    def story_channels_sent(self, story_ids: Sequence[int]) -> dict[int, list[str]]:
        """story id -> the channels an alert about it was delivered to."""
        found: dict[int, list[str]] = {}
        for part in _chunks(story_ids):
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
        for part in _chunks(story_ids):
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
        for part in _chunks(story_ids):
            marks = ",".join("?" * len(part))
            rows = self._all(
                f"""SELECT i.story_id, t.channel, t.state FROM triage t JOIN items i ON i.id = t.item_id
                    WHERE i.story_id IN ({marks}) ORDER BY t.channel, t.updated_at""",
                part,
            )
            for r in rows:
                found.setdefault(r["story_id"], {})[r["channel"]] = r["state"]  # the latest wins
        return found

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
            for part in _chunks(story_ids)
            for r in self._all(f"SELECT id FROM items WHERE story_id IN ({','.join('?' * len(part))})", part)
        ]
        self._story_index = None  # it would offer the deleted stories as candidates
        self.index_new_items()  # the delete trigger takes their text out of the index
        self._count_tokens([_PRUNED])  # other connections' story indexes see it, and load again
        for part in _chunks(item_ids):
            marks = ",".join("?" * len(part))
            for table in ("fingerprints", "matches", "alerts"):
                self.db.execute(f"DELETE FROM {table} WHERE item_id IN ({marks})", part)
            # Rows other features keep per item (Slack feedback and triage, and any later table with
            # a foreign key to items) go with it: the delete below would fail on them otherwise.
            for table, column in self._references("items"):
                if table not in ("items", "fingerprints", "matches", "alerts"):
                    self.db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", part)
        for part in _chunks(story_ids):
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
        tables = self._all(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'"
        )
        for r in tables:
            for fk in self.db.execute(f"PRAGMA foreign_key_list([{r['name']}])").fetchall():
                if fk[2] == parent:  # (id, seq, table, from, to, …)
                    found.append((r["name"], fk[3]))
        return found

    def fts_consistent(self) -> bool:
        """FTS5's own check that items_fts matches the items table."""
        try:
            self.db.execute("INSERT INTO items_fts (items_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError:
            return False
        return True

    def source_health_rows(self, since: datetime) -> list[dict]:
        """Every active source with its fetch state and ``items``: how many it brought since ``since``."""
        return self._all(
            """SELECT s.*, coalesce(n.items, 0) AS items FROM sources s
               LEFT JOIN (SELECT source, count(*) AS items FROM items WHERE first_seen >= ? GROUP BY source) n
                 ON n.source = s.name
               WHERE s.origin IS NOT NULL AND s.removed_at IS NULL ORDER BY s.name COLLATE NOCASE""",
            [iso(since)],
        )

    def outbox_summary(self) -> dict:
        """queued (count), oldest (the oldest queued alert: created_at, channel, last_error), dead."""
        counts = {
            r["status"]: r["n"]
            for r in self._all(
                "SELECT status, count(*) AS n FROM alerts WHERE status IN ('queued', 'dead') GROUP BY status"
            )
        }
        oldest = self._one(
            """SELECT created_at, channel, last_error FROM alerts WHERE status = 'queued'
               ORDER BY created_at, id LIMIT 1"""
        )
        return {"queued": counts.get("queued", 0), "dead": counts.get("dead", 0), "oldest": oldest}

    def broken_active_subscriptions(self) -> list[tuple[str, str]]:
        """(channel, why) of active subscriptions that cannot be delivered."""
        rows = self._all(
            """SELECT DISTINCT channel, broken FROM subscriptions
               WHERE broken IS NOT NULL AND removed_at IS NULL ORDER BY channel"""
        )
        return [(r["channel"], r["broken"]) for r in rows]

    def source_catalog(self) -> list[dict]:
        """name, url, removed_at of every source row, removed ones included (for imports)."""
        return self._all("SELECT name, url, removed_at FROM sources ORDER BY name")

    def import_source(self, source: Source, now: datetime) -> None:
        """Add a source from an OPML import, or bring back the removed row of the same name."""
        self.db.execute(
            """INSERT INTO sources (name, url, type, interval, origin, added_at, consecutive_failures)
               VALUES (?, ?, ?, ?, 'opml', ?, 0)
               ON CONFLICT(name) DO UPDATE SET url = excluded.url, type = excluded.type,
                    interval = excluded.interval, origin = 'opml', added_at = excluded.added_at,
                    removed_at = NULL, changed_by = NULL, etag = NULL, last_modified = NULL,
                    disabled_at = NULL, disabled_reason = NULL, next_poll_at = NULL
               WHERE sources.removed_at IS NOT NULL OR sources.origin IS NULL""",
            [source.name, source.url, source.type, source.interval, iso(now)],
        )

    def body_hash(self, name: str) -> str | None:
        """The digest recorded by set_body_hash() for the source's last ingested 200 body."""
        row = self._one("SELECT body_hash FROM sources WHERE name = ?", [name])
        return row["body_hash"] if row else None

    def set_body_hash(self, name: str, digest: str | None) -> None:
        """Record it in the transaction that stores the body's items (so never without them)."""
        self.db.execute("UPDATE sources SET body_hash = ? WHERE name = ?", [digest, name])


def _chunks(ids: Sequence[int], size: int = 500) -> Iterator[list[int]]:
    """``ids`` in pieces small enough for one IN (...) list."""
    ids = list(ids)
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _subscription_rows(subs: Sequence[Subscription]) -> dict[str, dict]:
    return {
        subscription_id(s): {
            "id": subscription_id(s),
            "channel": s.channel,
            "watchlists": json.dumps(list(s.watchlists)),
            "mode": s.mode,
            "schedule": s.schedule or None,
            "timezone": s.timezone if s.mode == "digest" else None,
            "skip_empty": int(s.skip_empty),
            "top": s.top,
        }
        for s in subs
    }


def _subscription_from_row(r: dict) -> Subscription:
    return Subscription(
        channel=r["channel"],
        watchlists=tuple(json.loads(r["watchlists"])),
        mode=r["mode"],
        schedule=r.get("schedule") or "",
        timezone=r.get("timezone") or "UTC",
        skip_empty=bool(r.get("skip_empty")),
        top=r.get("top") or 15,
    )


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
