"""A throwaway PostgreSQL 15 cluster for the tests: initdb into a temporary directory, pg_ctl start on a
free loopback port (the socket in that directory too), one template database migrated once, and a
fresh database per test copied from it (CREATE DATABASE … TEMPLATE: a few milliseconds).

The server refuses to run as root: when the tests do, initdb and pg_ctl run as the system user
``postgres``. Nothing is skipped when PostgreSQL is missing: the fixture fails and says what to install.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

BIN = Path(os.environ.get("NEWSALERT_PG_BIN", "/usr/lib/postgresql/15/bin"))
INSTALL = "apt install postgresql-15 postgresql-contrib"
TEMPLATE = "newsalert_template"


class MissingPostgres(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (BIN / tool).exists():
                raise MissingPostgres(
                    f"the PostgreSQL tests need PostgreSQL 15 ({BIN / tool} is missing): {INSTALL}"
                )
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise MissingPostgres(f"running as root needs the system user postgres: {INSTALL}") from None
        self.dir = Path(tempfile.mkdtemp(prefix="newsalert-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self._made = 0
        self._lock = threading.Lock()
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        command = [*args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> Cluster:
        self._run(
            str(BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir}"
            # A test cluster: nothing it holds must survive a crash of the machine.
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def make_template(self) -> None:
        """The template every test database copies: created and migrated once."""
        from bot.store import Store
        from bot.store.pg import close_pools

        self.admin(f"CREATE DATABASE {TEMPLATE}")
        Store.migrate(self.url(TEMPLATE)).close()
        close_pools()  # a template with a connection open cannot be copied

    def fresh_database(self) -> str:
        """The URL of a new database, already migrated."""
        with self._lock:
            self._made += 1
            name = f"test_{os.getpid()}_{self._made}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def empty_database(self) -> str:
        with self._lock:
            self._made += 1
            name = f"empty_{os.getpid()}_{self._made}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
