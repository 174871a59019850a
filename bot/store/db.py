"""The connection: opening and migrating the SQLite file, transactions, and what every repository shares.

Repositories (one module per resource in this package) get a Repository base that reaches the
shared connection and the Store's transaction, so a multi-resource change is still one commit.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlite_utils

from bot.store.dialect import SQLiteDialect

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from bot.store import Store

CACHE_KIB = 32 * 1024  # SQLite's page cache per connection
BUSY_TIMEOUT = 30.0  # seconds a connection waits for another's write lock before giving up


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def chunks(ids: Sequence[int], size: int = 500) -> Iterator[list[int]]:
    """``ids`` in pieces small enough for one IN (...) list."""
    ids = list(ids)
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def enable_wal(db: sqlite_utils.Database) -> None:
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


def all_rows(db: sqlite_utils.Database, sql: str, params: Sequence[object] | dict = ()) -> list[dict]:
    cursor = db.execute(sql, params)
    names = [c[0] for c in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class Repository:
    """One resource's queries. Rows are turned into bot.model values here: no caller sees a row."""

    def __init__(self, store: Store):
        self._store = store

    @property
    def db(self) -> sqlite_utils.Database:
        return self._store.db

    @property
    def dialect(self) -> SQLiteDialect:
        """What SQLite and PostgreSQL spell differently (bot/store/dialect.py)."""
        return self._store.dialect

    def _insert_id(self, sql: str, params: Sequence[object] | dict = ()) -> int:
        """Run an INSERT into a table with an ``id`` key; the new row's id (lastrowid, or RETURNING)."""
        if self._store.postgres:
            return int(self.db.execute(f"{sql} RETURNING id", params).fetchone()[0])
        return int(self.db.execute(sql, params).lastrowid)

    def _many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """One statement for each of ``rows`` (executemany on either backend)."""
        db = self._store.db
        if isinstance(db, sqlite_utils.Database):
            db.conn.executemany(sql, rows)
        else:
            db.executemany(sql, list(rows))

    def transaction(self) -> AbstractContextManager[None]:
        return self._store.transaction()

    def has_table(self, name: str) -> bool:
        return self._store.has_table(name)

    def _all(self, sql: str, params: Sequence[object] | dict = ()) -> list[dict]:
        return all_rows(self.db, sql, params)

    def _one(self, sql: str, params: Sequence[object] | dict = ()) -> dict | None:
        rows = all_rows(self.db, sql, params)
        return rows[0] if rows else None
