"""PostgreSQL connections: a pool per database URL (psycopg 3, psycopg-pool), and the connection the
repositories use, which takes the same SQL and parameters as the SQLite one.

psycopg is imported when a postgresql:// URL is opened, never before: the embedded SQLite default
runs without the `newsalert[postgresql]` extra installed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bot.errors import StoreError
from bot.store.dialect import PostgresDialect, redacted

CONNECT_TIMEOUT = 10  # seconds to reach the server (or to wait for a pooled connection)
# One writer at a time, as SQLite's BEGIN IMMEDIATE: every transaction() takes this advisory lock
# first. What the store relies on stays true: ids commit in order (digest windows are id ranges),
# and a read-then-write (a claim, a digest window) sees no other writer in between. Workers sharing
# a database through row locks instead (FOR UPDATE SKIP LOCKED) are issue 18's next step.
WRITE_LOCK = 0x6E657773_616C7274  # "newsalrt"
POOL_SIZE = 8  # connections per process: one per thread that opens a Store at the same time

_pools: dict[str, Any] = {}
_pools_lock = threading.Lock()
_dialect = PostgresDialect()


def pg_driver() -> Any:
    """The psycopg module, imported now; a StoreError saying what to install when it is missing."""
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "database_url is a postgresql:// URL, but psycopg is not installed: "
            "pip install 'newsalert[postgresql]'"
        ) from None
    return psycopg


def _pool(url: str) -> Any:
    """One pool per URL and process, opened on first use and kept until exit (close_pools)."""
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None:
            psycopg = pg_driver()
            from psycopg_pool import ConnectionPool

            # One plain connection first: an unreachable server or a refused login fails at once
            # with the driver's reason, where the pool would retry until its timeout.
            try:
                psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT).close()
            except psycopg.Error as e:
                raise StoreError(f"{redacted(url)}: cannot connect: {e}") from None

            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=POOL_SIZE,
                timeout=CONNECT_TIMEOUT,
                kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
                open=False,
                name="newsalert",
            )
            try:
                pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            except Exception as e:
                pool.close()
                raise StoreError(f"{redacted(url)}: cannot connect: {e}") from None
            _pools[url] = pool
        return pool


RUN_LOCK = 0x6E657773_72756E31  # "newsrun1": held by the one Socket Mode `run` (Store.sole_runner)


@contextmanager
def hold_sole_runner_lock(url: str) -> Iterator[None]:
    """Hold RUN_LOCK on a connection of its own for as long as the block runs; a StoreError when
    another process holds it. The server lets it go when the process dies (its session ends)."""
    psycopg = pg_driver()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as e:
        raise StoreError(f"{redacted(url)}: cannot connect: {e}") from None
    try:
        if not conn.execute(f"SELECT pg_try_advisory_lock({RUN_LOCK})").fetchone()[0]:
            raise StoreError(
                f"{redacted(url)}: another `newsalert run` serves Socket Mode on this database; only one "
                "may (run the others with --http behind a load balancer, or without SLACK_APP_TOKEN)"
            )
        yield
    finally:
        conn.close()


def close_pools() -> None:
    """Close every pool (tests dropping their databases, and the end of a process)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


class PgDatabase:
    """One pooled connection in autocommit mode, with sqlite_utils.Database's execute(): SQLite
    parameters (? and :name) are translated, and a statement outside a transaction commits at once,
    as sqlite-utils does. Client-side binding: a parameter's type is inferred from the SQL around it
    as SQLite does (server-side binding fails on `? IS NULL` and on a text compared with a number)."""

    dialect = _dialect

    def __init__(self, url: str):
        self.url = url
        self._pool = _pool(url)
        psycopg = pg_driver()
        try:
            self.conn = self._pool.getconn()
        except Exception as e:
            raise StoreError(f"{redacted(url)}: cannot connect: {e}") from None
        self._cursor_factory = psycopg.ClientCursor
        self._depth = 0  # open transaction() blocks: 0 outside, 1 in the outer one, more in savepoints
        self._savepoints = 0

    def execute(self, sql: str, params: Sequence[object] | dict | None = None) -> Any:
        if not self._depth and _writes(sql):  # a write on its own takes the write lock too
            with self.transaction():
                return self.execute(sql, params)
        cursor = self._cursor_factory(self.conn)
        cursor.execute(self.dialect.translate(sql), _params(params))
        return cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[object]] | Iterator[Sequence[object]]) -> None:
        rows = [[_text(v) for v in r] for r in rows]
        if not rows:
            return
        if not self._depth:
            with self.transaction():
                self.executemany(sql, rows)
            return
        cursor = self._cursor_factory(self.conn)
        cursor.executemany(self.dialect.translate(sql), rows)

    def query(self, sql: str, params: Sequence[object] | dict | None = None) -> Iterator[dict]:
        cursor = self.execute(sql, params)
        names = [c.name for c in cursor.description or ()]
        for row in cursor.fetchall():
            yield dict(zip(names, row, strict=True))

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN and the write lock (WRITE_LOCK) … COMMIT; nested, a savepoint."""
        if self._depth:
            self._savepoints += 1
            name = f"newsalert_{self._savepoints}"
            self.conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                raise
            finally:
                self._depth -= 1
            self.conn.execute(f"RELEASE SAVEPOINT {name}")
            return
        self.conn.execute("BEGIN")
        self._depth = 1
        try:
            self.conn.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            yield
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self._pool.putconn(conn)


def _writes(sql: str) -> bool:
    return sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE")


def _text(value: object) -> object:
    # PostgreSQL's text cannot hold NUL, which a feed's text may: U+FFFD stands for it (the one
    # place PostgreSQL stores a value otherwise than SQLite; token_df's keys: dialect.nul_free).
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


def _params(params: Sequence[object] | dict | None) -> Sequence[object] | dict | None:
    if params is None:
        return []  # still parsed for placeholders: translate() doubled every %
    if isinstance(params, dict):
        return {k: _text(v) for k, v in params.items()}
    return [_text(v) for v in params]
