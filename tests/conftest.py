"""What test modules share: the loopback feed and Slack servers, the one way to run `newsalert` in a
subprocess, the one way to write a newsalert.toml, and the small values several modules build."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import IO, Any

import pytest

from bot.config import Settings
from bot.model import Alert, Source, Subscription, Summary, Watchlist
from bot.store import Store
from bot.store.pg import close_pools
from tests.fake_slack import VALID_TOKEN, FakeSlack
from tests.feed_server import FeedServer
from tests.pg_cluster import Cluster, MissingPostgres

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reverse", action="store_true", help="run the tests backwards (none may need another to run first)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--reverse"):
        items.reverse()


# -- the two backends ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL 15 cluster for the whole run (tests/pg_cluster.py); never skipped."""
    try:
        cluster = Cluster()
    except MissingPostgres as e:
        pytest.fail(str(e), pytrace=False)
    try:
        cluster.start()
        cluster.make_template()
        yield cluster
    finally:
        close_pools()
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a test's store is, once per backend: a fresh SQLite file, or a fresh migrated PostgreSQL
    database. Store.open(db_target) opens it."""
    if request.param == "sqlite":
        yield str(tmp_path / "test.db")
        return
    yield request.getfixturevalue("pg_cluster").fresh_database()


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()
    assert fake.violations == [], fake.violations
    assert fake.refused == [], fake.refused  # real Slack would have refused these payloads


# -- `newsalert` in a subprocess ------------------------------------------------------------------


def _newsalert_env(
    *, db: Path | None = None, slack: FakeSlack | None = None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """This environment without the shell's SLACK_* and NEWSALERT_* settings (a test's `newsalert` must
    never reach a real workspace or database), then the database, the fake Slack, and ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NEWSALERT_"))}
    if db is not None:
        clean["NEWSALERT_DB"] = str(db)
    if slack is not None:
        clean |= {"SLACK_BOT_TOKEN": VALID_TOKEN, "SLACK_API_URL": slack.url}
    return clean | dict(env or {})


def start_newsalert(
    *args: str,
    config: Path | None = None,
    db: Path | None = None,
    slack: FakeSlack | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    stdout: int | IO[Any] | None = subprocess.PIPE,
    stderr: int | IO[Any] | None = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """`python -m bot [--config CONFIG] ARGS`, started and left running: every test that runs newsalert
    comes through here, so all of them get the same clean environment."""
    command = [sys.executable, "-m", "bot", *(["--config", str(config)] if config else []), *args]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=_newsalert_env(db=db, slack=slack, env=env),
        stdout=stdout,
        stderr=stderr,
        text=True,
    )


def run_newsalert(
    *args: str,
    config: Path | None = None,
    db: Path | None = None,
    slack: FakeSlack | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`start_newsalert`, waited for: its exit code and its output as text."""
    proc = start_newsalert(*args, config=config, db=db, slack=slack, env=env, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "the condition") -> None:
    """Return once ``condition()`` is true; fail the test if it is not within ``timeout`` seconds (a
    generous deadline for a loaded machine, not a measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


# -- newsalert.toml ---------------------------------------------------------------------------------


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r} in a test config")


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def write_config(
    path: Path,
    *,
    defaults: Mapping[str, object] | None = None,
    sources: Iterable[Mapping[str, object]] = (),
    watchlists: Mapping[str, str] | None = None,
    subscriptions: Iterable[Mapping[str, object]] = (),
    slack: Mapping[str, object] | None = None,
) -> Path:
    """Write a newsalert.toml at ``path``: ``[defaults]``, one ``[[sources]]`` table per mapping,
    ``[watchlists.NAME] query``, ``[[subscriptions]]``, ``[slack]``. Tests of the config parser itself
    write their TOML by hand, since its lines and typos are what they test."""
    document: dict[str, object] = {}
    lines: list[str] = []

    def table(header: str, values: Mapping[str, object]) -> None:
        lines.append(header)
        lines.extend(f"{_key(k)} = {_toml(v)}" for k, v in values.items())
        lines.append("")

    if defaults:
        document["defaults"] = dict(defaults)
        table("[defaults]", defaults)
    for source in sources:
        document.setdefault("sources", []).append(dict(source))  # type: ignore[union-attr]
        table("[[sources]]", source)
    for name, query in (watchlists or {}).items():
        document.setdefault("watchlists", {})[name] = {"query": query}  # type: ignore[index]
        table(f"[watchlists.{_key(name)}]", {"query": query})
    for subscription in subscriptions:
        document.setdefault("subscriptions", []).append(dict(subscription))  # type: ignore[union-attr]
        table("[[subscriptions]]", subscription)
    if slack:
        document["slack"] = dict(slack)
        table("[slack]", slack)
    text = "\n".join(lines)
    assert tomllib.loads(text) == json.loads(json.dumps(document)), text  # the writer wrote what it was given
    path.write_text(text, encoding="utf-8")
    return path


# The end-to-end scenario of tests/test_e2e.py and tests/test_crash.py: a WordPress source and an RSS
# source whose fixtures hold one UNICEF story and one hostile CSAM item, four watchlists, two channels.
E2E_CHANNELS = ("C0000000001", "C0000000002")
E2E_STORY = "UNICEF calls on governments to criminalize AI-generated child abuse material"


def write_e2e_config(path: Path, feeds: FeedServer, **defaults: object) -> Path:
    """Serve the e2e fixtures from ``feeds`` and write the config that polls them."""
    wp = feeds.serve(
        "/wp-json/wp/v2/posts",
        (DATA / "e2e" / "wp-posts.json").read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    rss = feeds.serve("/feed.rss", (DATA / "e2e" / "news.rss").read_bytes(), etag='"v1"')
    return write_config(
        path,
        # The feeds are on 127.0.0.1, and the fixtures are dated February 2026: no first-poll window.
        defaults={"allow_private_sources": True, "first_poll_window": "0", **defaults},
        sources=[{"name": "APP", "url": wp, "type": "wordpress"}, {"name": "Syndicated", "url": rss}],
        watchlists={
            "csam": 'CSAM OR "child sexual abuse material*" OR "child abuse material*"',
            "deepfakes": 'deep-fake* OR nudif* OR "undress app*"',
            "unicef": "UNICEF",
            "sextortion": 'sextort* OR "sexual extortion"',
        },
        subscriptions=[
            {"channel": E2E_CHANNELS[0], "watchlists": ["csam", "deepfakes", "unicef"]},
            {"channel": E2E_CHANNELS[1], "watchlists": ["csam", "deepfakes", "unicef", "sextortion"]},
        ],
    )


# -- values for in-process tests --------------------------------------------------------------------

NOW = datetime.now(UTC)  # "now" for in-process tests: they date items and sync their config at it


def rss(*items: tuple[str, str, datetime | None], guid_prefix: str = "") -> str:
    """An RSS 2.0 feed of (title, link, published) items; each is described as "About TITLE."."""
    out = []
    for title, link, published in items:
        date = f"<pubDate>{format_datetime(published)}</pubDate>" if published else ""
        out.append(
            f"<item><title>{title}</title><link>{link}</link>"
            f"<guid isPermaLink='false'>{guid_prefix}{link}</guid>{date}"
            f"<description>About {title}.</description></item>"
        )
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>{''.join(out)}</channel></rss>"


def settings_for(tmp_path: Path, *sources: Source, window: int | None = 86400) -> Settings:
    """Settings for an in-process poll of ``sources`` into tmp_path/t.db: watchlists csam and
    deepfakes, channel C1 subscribed to both and C2 to deepfakes."""
    return Settings(
        path="test.toml",
        sources=sources,
        watchlists=(
            Watchlist("csam", 'CSAM OR "child sexual abuse material"'),
            Watchlist("deepfakes", "deep-fake* OR nudif*"),
        ),
        subscriptions=(Subscription("C1", ("csam", "deepfakes")), Subscription("C2", ("deepfakes",))),
        first_poll_window=window,
        allow_private_sources=True,
        fetch_timeout=2,
        max_response_bytes=64 * 1024,
        db_path=str(tmp_path / "t.db"),
    )


def sync(store: Store, settings: Settings) -> None:
    """Load ``settings``' sources, watchlists and subscriptions into the store, as a start does."""
    store.catalog.sync_config(settings.sources, settings.watchlists, settings.subscriptions, NOW)


def alert(**changes: Any) -> Alert:
    """An alert about a UNICEF/CSAM story in channel C1, with ``changes``."""
    values: dict[str, Any] = dict(
        id=1,
        channel="C1",
        title="UNICEF calls for action on AI-generated CSAM",
        url="https://news.example/story?a=1&b=2",
        source="APP",
        outlet="",
        published=datetime(2026, 2, 5, 17, 12, tzinfo=UTC),
        watchlists=("csam", "unicef"),
        summary=Summary("UNICEF said CSAM is rising.", ((0, 6), (12, 16))),
    )
    values.update(changes)
    return Alert(**values)
