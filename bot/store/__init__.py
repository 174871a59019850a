"""Storage, in SQLite or PostgreSQL: the only package that knows the schema or writes SQL.

`Store` opens and migrates one SQLite file (WAL mode), or a PostgreSQL database (a postgresql://
URL, migrated by `newsalert migrate`), and holds one repository per resource:
``store.sources``, ``store.catalog``, ``store.items``, ``store.stories``, ``store.moves``,
``store.story_model``, ``store.outbox``, ``store.people``, ``store.digests``, ``store.history``,
``store.faults``, ``store.websub`` and ``store.leases``. They share the connection and the Store's
transactions, so a change that spans resources is still one commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from bot.errors import StoreError
from bot.store.catalog import CatalogRepo
from bot.store.db import BUSY_TIMEOUT, CACHE_KIB, all_rows, enable_wal
from bot.store.dialect import SQLiteDialect, is_postgres_url, redacted, sqlite_path
from bot.store.digests import DigestRepo
from bot.store.faults import FaultRepo
from bot.store.history import HistoryRepo
from bot.store.items import ItemRepo
from bot.store.leases import LeaseRepo
from bot.store.moves import MoveRepo
from bot.store.outbox import OutboxRepo
from bot.store.people import PeopleRepo
from bot.store.pg import PgDatabase, hold_sole_runner_lock, pg_driver
from bot.store.schema import migrations
from bot.store.sources import SourceRepo
from bot.store.stories import StoryRepo
from bot.store.storymodel import StoryModelRepo
from bot.store.websub import WebSubRepo

__all__ = ["Store"]


class Store:
    # Set by `--allow-newer-schema`: use a database whose migrations this version does not know.
    allow_newer_schema = False

    def __init__(self, db: sqlite_utils.Database | PgDatabase, path: str | None = None):
        self.db = db
        self.dialect = db.dialect if isinstance(db, PgDatabase) else SQLiteDialect()
        self.postgres = self.dialect.name == "postgresql"
        self.path = path  # for another connection to the same file (one per thread)
        self.in_transaction = False  # inside transaction(): new items are indexed at its end
        self.sources = SourceRepo(self)
        self.catalog = CatalogRepo(self)
        self.items = ItemRepo(self)
        self.stories = StoryRepo(self)
        self.moves = MoveRepo(self)
        self.story_model = StoryModelRepo(self)
        self.outbox = OutboxRepo(self)
        self.people = PeopleRepo(self)
        self.digests = DigestRepo(self)
        self.history = HistoryRepo(self)
        self.faults = FaultRepo(self)
        self.websub = WebSubRepo(self)
        self.leases = LeaseRepo(self)

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) and migrate. Any failure is a StoreError naming the file.

        A postgresql:// URL is opened, not migrated: its schema must be the one this version knows
        (`newsalert migrate`), since several workers share it and none may change it under another.
        """
        if is_postgres_url(str(path)):
            return cls._open_postgres(str(path), migrate=False)
        path = sqlite_path(str(path))
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT)
            db = sqlite_utils.Database(conn)
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            if str(path) != ":memory:":
                enable_wal(db)
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
                refuse_newer_schema(db, allowed=cls.allow_newer_schema, path=str(path))
                migrations.apply(db)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{path}: cannot use database: {e}") from None
        return store

    @classmethod
    def migrate(cls, target: str) -> Store:
        """Open and apply every pending migration (PostgreSQL: `newsalert migrate`; SQLite: as open)."""
        if is_postgres_url(target):
            return cls._open_postgres(target, migrate=True)
        return cls.open(target)

    @classmethod
    def _open_postgres(cls, url: str, *, migrate: bool) -> Store:
        from bot.store import pgschema  # imports psycopg only now: SQLite needs no driver

        psycopg = pg_driver()

        try:
            store = cls(PgDatabase(url), url)
            try:
                newer = pgschema.unknown(store.db)
                if newer and not cls.allow_newer_schema:
                    raise StoreError(
                        f"{redacted(url)}: migrated by a newer newsalert ({', '.join(newer)}); upgrade "
                        "newsalert, or pass --allow-newer-schema to use it anyway"
                    )
                if migrate:
                    pgschema.apply(store.db)
                elif pending := pgschema.pending(store.db):
                    raise StoreError(
                        f"{redacted(url)}: {len(pending)} migration(s) not applied ({pending[0]} first): "
                        "run `newsalert migrate`"
                    )
            except BaseException:
                store.close()
                raise
        except psycopg.Error as e:
            raise StoreError(f"{redacted(url)}: cannot use database: {e}") from None
        return store

    @classmethod
    @contextmanager
    def sole_runner(cls, target: str, *, socket_mode: bool) -> Iterator[None]:
        """While a Socket Mode `newsalert run` runs: on PostgreSQL, a lock no second Socket Mode
        worker on the database gets.

        Workers share polling and delivery through leases and claims (bot/store/leases.py), and HTTP
        workers may all serve behind a load balancer; Slack gives Socket Mode events to each open
        connection, so only one worker holds one. SQLite, or another mode: nothing.
        """
        if not is_postgres_url(target) or not socket_mode:
            yield
            return
        with hold_sole_runner_lock(target):
            yield

    @classmethod
    def open_readonly(cls, path: str | Path, timeout: float = 5.0) -> Store:
        """For health checks: no migration, no write lock, so a long poll never holds it up."""
        if is_postgres_url(str(path)):
            return cls._open_postgres(str(path), migrate=False)
        path = sqlite_path(str(path))
        try:
            conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot read database: {e}") from None
        return cls(sqlite_utils.Database(conn))

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
        if isinstance(self.db, PgDatabase):
            with self._pg_transaction(self.db):
                yield
            return
        conn = self.db.conn
        if conn.in_transaction:
            try:
                with self.db.atomic():
                    yield
            except BaseException:
                self.stories.drop_index()  # it may hold fingerprints that were just rolled back
                raise
            return
        conn.execute("BEGIN IMMEDIATE")
        self.in_transaction = True
        try:
            yield
            self.items.index_new_items()
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.stories.drop_index()
            self.items.forget_unindexed()
            raise
        finally:
            self.in_transaction = False
        conn.execute("COMMIT")

    @contextmanager
    def _pg_transaction(self, db: PgDatabase) -> Iterator[None]:
        outer = not db.in_transaction
        try:
            with db.transaction():
                if outer:
                    self.in_transaction = True
                yield
                if outer:
                    self.items.index_new_items()
        except BaseException:
            self.stories.drop_index()
            if outer:
                self.items.forget_unindexed()
            raise
        finally:
            if outer:
                self.in_transaction = False

    def copy_from_sqlite(self, path: str) -> dict[str, int]:
        """PostgreSQL: copy an existing SQLite database into this new one (`newsalert migrate --from`)."""
        from bot.store import pgschema

        if not isinstance(self.db, PgDatabase):
            raise StoreError("--from copies into a PostgreSQL database: set database_url to one")
        with self.transaction():
            copied = pgschema.copy_from_sqlite(self.db, sqlite_path(path))
            self.items.rebuild_search_index()
        return copied

    def count(self, table: str, where: str = "TRUE", params: Sequence[object] = ()) -> int:
        if table not in {"items", "matches", "alerts", "sources", "subscriptions", "stories"}:
            raise ValueError(table)
        return all_rows(self.db, f"SELECT count(*) AS n FROM {table} WHERE {where}", params)[0]["n"]

    def has_table(self, name: str) -> bool:
        rows = all_rows(self.db, f"SELECT 1 AS x FROM ({self.dialect.tables_sql()}) t WHERE name = ?", [name])
        return bool(rows)


def refuse_newer_schema(db: sqlite_utils.Database, *, allowed: bool, path: str) -> None:
    """A StoreError when a newer newsalert has migrated this file: its tables may hold columns
    this version cannot fill (a NOT NULL without default), so writing would lose alerts."""
    known = {m.name for m in migrations.pending(sqlite_utils.Database(memory=True))}
    unknown = [m.name for m in migrations.applied(db) if m.name not in known]
    if unknown and not allowed:
        raise StoreError(
            f"{path}: migrated by a newer newsalert ({', '.join(unknown)}); upgrade newsalert, "
            "or pass --allow-newer-schema to use it anyway"
        )
