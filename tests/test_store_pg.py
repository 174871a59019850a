"""PostgreSQL mode: one schema with SQLite's, `newsalert migrate` (and --from a SQLite file), workers that
refuse an unmigrated or newer schema, database_url in the config, and passwords kept out of messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from bot.config import load_settings
from bot.history import search
from bot.model import Item
from bot.store import Store, pgschema
from bot.store.dialect import _pg_params, redacted
from bot.store.pg import close_pools
from bot.store.schema import migrations
from tests import pg_cluster
from tests.conftest import run_newsalert, write_config
from tests.fake_slack import FakeSlack
from tests.pg_cluster import Cluster, MissingPostgres

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
_PG_TYPES = {
    "INTEGER": "bigint",
    "TEXT": "text",
    "FLOAT": "double precision",
    "REAL": "double precision",
    "BLOB": "bytea",
}


def _sqlite_columns() -> dict[str, dict[str, tuple[str, bool]]]:
    db = sqlite_utils.Database(memory=True)
    migrations.apply(db)
    out = {}
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        if table.startswith(("items_fts", "_sqlite")) and table != "items_fts_fallback":
            continue
        out[table] = {
            name: (_PG_TYPES[kind], bool(notnull or pk))
            for _, name, kind, notnull, _, pk in db.execute(f'PRAGMA table_info("{table}")')
        }
    return out


def test_the_postgresql_schema_is_the_sqlite_one(pg_cluster: Cluster) -> None:
    store = Store.open(pg_cluster.fresh_database())
    got: dict[str, dict[str, tuple[str, bool]]] = {}
    rows = store.db.execute(
        """SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
           WHERE table_schema = current_schema()"""
    )
    for table, column, kind, nullable in rows:
        if table in (pgschema.TABLE, "items_search") or (
            table in pgschema.ROWID_TABLES and column == "rowid"
        ):
            continue
        got.setdefault(table, {})[column] = (kind, nullable == "NO")
    assert got == _sqlite_columns()
    # Every migration is recorded, under SQLite's names, and nothing is pending.
    assert pgschema.applied(store.db) == pgschema.known() and pgschema.pending(store.db) == []
    # Each SQLite migration after the baseline has its PostgreSQL counterpart.
    later = pgschema.known()[pgschema.known().index(pgschema.BASELINE) + 1 :]
    assert [name for name in later if name not in pgschema.LATER] == []
    store.close()


def test_workers_refuse_an_unmigrated_database_until_newsalert_migrate(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    url = pg_cluster.empty_database()
    config = write_config(tmp_path / "newsalert.toml")
    env = {"NEWSALERT_DATABASE_URL": url}
    refused = run_newsalert("poll", "--once", config=config, env=env)
    assert refused.returncode == 3, refused.stderr
    assert "not applied" in refused.stderr and "run `newsalert migrate`" in refused.stderr
    assert "Traceback" not in refused.stderr

    done = run_newsalert("migrate", config=config, env=env)
    assert done.returncode == 0, done.stderr
    assert "schema up to date" in done.stdout
    with Store.migrate(url) as store:  # nothing left to apply
        assert pgschema.pending(store.db) == []
    polled = run_newsalert("poll", "--once", config=config, env=env)
    assert polled.returncode == 0, polled.stderr


def test_only_one_socket_mode_worker_per_postgresql_database(
    pg_cluster: Cluster, tmp_path: Path, slack: FakeSlack
) -> None:
    """Slack hands Socket Mode events to every open connection: a second Socket Mode worker on the
    database is refused at start (HTTP workers and those without the app are not, see test_workers)."""
    config = write_config(tmp_path / "newsalert.toml")
    url = pg_cluster.fresh_database()
    env = {"NEWSALERT_DATABASE_URL": url, "SLACK_APP_TOKEN": "xapp-1-fake"}
    with Store.sole_runner(url, socket_mode=True):  # as the Socket Mode worker already running holds it
        second = run_newsalert("run", config=config, env=env, slack=slack)
    assert second.returncode == 3, second.stderr
    assert "another `newsalert run` serves Socket Mode on this database" in second.stderr
    assert "Traceback" not in second.stderr
    assert not [c for c in slack.calls if c.method == "apps.connections.open"]


def test_a_database_a_newer_newsalert_migrated_is_refused(pg_cluster: Cluster) -> None:
    url = pg_cluster.fresh_database()
    store = Store.open(url)
    pgschema._record(store.db, "m999_from_the_future")
    store.close()
    with pytest.raises(Exception, match=r"newer newsalert .*m999_from_the_future"):
        Store.open(url)
    Store.allow_newer_schema = True
    try:
        Store.open(url).close()
    finally:
        Store.allow_newer_schema = False


def _item(n: int, title: str) -> Item:
    when = NOW - timedelta(hours=n)
    return Item("feed", f"g{n}", f"https://n.example/{n}", title, "body text", when, when, "", False)


def test_migrate_from_copies_a_sqlite_database_and_search_finds_its_items(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    old = tmp_path / "old.db"
    lite = Store.open(old)
    with lite.transaction():
        for n, title in enumerate(["Deepfake ring arrested", "Weather today", "Nudify apps banned"]):
            story = lite.stories.new_story(NOW)
            item_id = lite.items.add_item(_item(n, title), story_id=story, new_story=True)
            lite.outbox.enqueue_alert(item_id, "C1", ["w"], NOW)
    lite.close()

    url = pg_cluster.empty_database()
    config = write_config(tmp_path / "newsalert.toml")
    done = run_newsalert(
        "migrate", "--from", f"sqlite:///{old}", config=config, env={"NEWSALERT_DATABASE_URL": url}
    )
    assert done.returncode == 0, done.stderr
    assert "items: 3" in done.stdout and "alerts: 3" in done.stdout

    store = Store.open(url)
    # Stories newest first: the three were made at one time, so the last made comes first.
    assert [h.title for h in search(store, "deepfake OR nudif*", now=NOW)] == [
        "Nudify apps banned",
        "Deepfake ring arrested",
    ]
    # Ids go on after the copied ones.
    assert store.stories.new_story(NOW) == 4
    store.close()
    twice = run_newsalert("migrate", "--from", str(old), config=config, env={"NEWSALERT_DATABASE_URL": url})
    assert twice.returncode == 3 and "not empty" in twice.stderr


def test_database_url_selects_the_backend_and_its_password_stays_out_of_messages(tmp_path: Path) -> None:
    path = tmp_path / "newsalert.toml"
    path.write_text('database_url = "postgresql://bot:s3cret@db.example:5432/news"\n')
    settings = load_settings(str(path), environ={})
    assert settings.db_path == "postgresql://bot:s3cret@db.example:5432/news"
    assert redacted(settings.db_path) == "postgresql://bot:***@db.example:5432/news"
    # The environment wins over the file, and --db over both.
    env = {"NEWSALERT_DATABASE_URL": "postgresql://other/db"}
    assert load_settings(str(path), environ=env).db_path == "postgresql://other/db"
    assert load_settings(str(path), db_path="x.db", environ=env).db_path == "x.db"
    path.write_text('database_url = "mysql://db/news"\n')
    with pytest.raises(Exception, match=r"only postgresql:// and sqlite:/// URLs"):
        load_settings(str(path), environ={})
    path.write_text(f'database_url = "sqlite:///{tmp_path}/n.db"\n')
    Store.open(load_settings(str(path), environ={}).db_path).close()
    assert (tmp_path / "n.db").exists()


def test_unreachable_server_is_a_database_error_without_the_password(tmp_path: Path) -> None:
    config = write_config(tmp_path / "newsalert.toml")
    url = "postgresql://bot:s3cret@127.0.0.1:1/news?connect_timeout=2"
    done = run_newsalert("status", config=config, env={"NEWSALERT_DATABASE_URL": url})
    assert done.returncode == 3 and "cannot connect" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    close_pools()


def test_parameters_are_translated_outside_quoted_text() -> None:
    assert _pg_params("SELECT ? , :name, '?', 'a:b', x::text, 'it''s ?', 5 % 2, '%e'") == (
        "SELECT %s , %(name)s, '?', 'a:b', x::text, 'it''s ?', 5 %% 2, '%%e'"
    )


def test_without_postgresql_the_tests_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pg_cluster, "BIN", tmp_path)  # a machine without PostgreSQL 15
    with pytest.raises(MissingPostgres, match="apt install postgresql-15 postgresql-contrib"):
        Cluster()


def test_items_added_together_get_the_ids_one_at_a_time_would_on_both_backends(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    # SQLite hands out the ids itself in one INSERT per table; PostgreSQL's identity columns do
    # not move past explicit ids, so there the rows go one at a time. Either way an item added
    # afterwards gets the next id, and duplicates and joined stories are stored as given.
    for target in (str(tmp_path / "lite.db"), pg_cluster.empty_database()):
        store = Store.migrate(target)
        with store.transaction():
            first = store.stories.new_story(NOW)
            original = store.items.add_item(
                _item(0, "Deepfake ring arrested"), story_id=first, new_story=True
            )
            rows = [
                (_item(1, "Weather today"), None, None, "k1"),
                (_item(2, "Deepfake ring arrested (wire)"), first, original, "k0"),
                (_item(3, "Nudify apps banned"), first, None, "k3"),
            ]
            added = store.items.add_items(rows)
            assert added == [(original + 1, first + 1), (original + 2, first), (original + 3, first)]
            assert store.items.add_item(_item(4, "Later"), story_id=first) == original + 4
            assert store.stories.new_story(NOW) == first + 2
        assert store.count("items") == 5 and store.count("stories") == 3
        store.close()
