"""The layout's rules, checked on the source: Slack only in bot/slack/, SQL only in bot/store/, rooms a
person can hold, every module saying what it is for, and the package whole when installed."""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app.home import home_view
from bot.app.replies import source_health_line, status_lines
from bot.demo import STARTER_CONFIG
from bot.model import Source, Subscription, Watchlist
from bot.ops.health import health, healthz, source_health
from bot.store import Store
from tests.conftest import run_newsalert

ROOT = Path(__file__).resolve().parent.parent
BOT = ROOT / "bot"
MODULES = sorted(BOT.rglob("*.py"))
MAX_LINES = 600  # "~600": a file a newcomer can read in one sitting
MAX_CLASS_LINES = 300
SQL = re.compile(
    r"\b(?:SELECT\s.+\sFROM|INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b",
    re.S,
)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_only_bot_slack_imports_slack() -> None:
    offenders = [
        _rel(path)
        for path in MODULES
        if not _rel(path).startswith("bot/slack/")
        and any(name.split(".")[0] in ("slack_sdk", "slack_bolt") for name in _imports(_tree(path)))
    ]
    assert offenders == []


def test_only_bot_store_writes_sql() -> None:
    offenders = []
    for path in MODULES:
        if _rel(path).startswith("bot/store/"):
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                offenders.append(f"{_rel(path)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_each_module_is_one_room_with_a_docstring(path: Path) -> None:
    tree = _tree(path)
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{_rel(path)} has {lines} lines"
    doc = ast.get_docstring(tree)
    assert doc and len(doc.split("\n\n")[0]) <= 400, (
        f"{_rel(path)}: start with a one or two sentence docstring"
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"{_rel(path)}: class {node.name} has {size} lines"


def test_the_readme_module_map_matches_the_tree() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- module map -->", 2)[1]
    listed = set(re.findall(r"`(bot/[\w/]+\.py)`", block))
    actual = {_rel(p) for p in MODULES if p.name != "__init__.py" or p.parent.name == "store"}
    assert listed == actual


def test_the_starter_config_is_the_checkout_config() -> None:
    # One file in two places on purpose (the checkout runs it, the wheel ships it): never two versions.
    assert STARTER_CONFIG.read_text(encoding="utf-8") == (ROOT / "config" / "newsalert.toml").read_text(
        encoding="utf-8"
    )


def test_demo_and_init_work_from_any_directory(tmp_path: Path) -> None:
    demo = run_newsalert("demo", cwd=tmp_path, timeout=120)
    assert demo.returncode == 0, demo.stderr
    assert "sources (0 failed)" in demo.stdout and "alerts sent" in demo.stdout
    first = run_newsalert("init", "conf/", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "conf" / "newsalert.toml").read_text() == STARTER_CONFIG.read_text()
    again = run_newsalert("init", "conf/", cwd=tmp_path)
    assert again.returncode == 2 and "not overwritten" in again.stderr
    assert run_newsalert("check-config", config=Path("conf/newsalert.toml"), cwd=tmp_path).returncode == 0


def test_every_surface_agrees_on_which_sources_are_failing(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    db = tmp_path / "t.db"
    store = Store.open(db)
    names = ["Healthy", "Failing", "Recovered", "Gone", "New"]
    store.catalog.sync_config(
        [Source(n, f"https://{n.lower()}.example/rss") for n in names],
        [Watchlist("csam", "csam")],
        [Subscription("C1", ("csam",))],
        now - timedelta(days=2),
    )
    ok = {"etag": None, "last_modified": None}
    store.sources.record_fetch_success(
        "Healthy", "https://healthy.example/rss", now - timedelta(minutes=5), **ok
    )
    store.sources.record_fetch_success(
        "Failing", "https://failing.example/rss", now - timedelta(hours=3), **ok
    )
    for minutes in (60, 30, 5):
        store.sources.record_fetch_failure(
            "Failing", "https://failing.example/rss", now - timedelta(minutes=minutes), "HTTP 503"
        )
    store.sources.record_fetch_failure(
        "Recovered", "https://recovered.example/rss", now - timedelta(hours=1), "x"
    )
    store.sources.record_fetch_success(
        "Recovered", "https://recovered.example/rss", now - timedelta(minutes=1), **ok
    )
    store.sources.record_fetch_failure(
        "Gone", "https://gone.example/rss", now - timedelta(minutes=2), "HTTP 410 Gone", disable=True
    )
    expected = {"Failing", "Gone"}

    sources = source_health(store, now)
    assert {s.name for s in sources if s.failing} == expected
    lines = {s.name: source_health_line(s, now) for s in sources}  # `/newsalert sources`
    assert {n for n, line in lines.items() if line.startswith(("⚠️", "⛔"))} == expected
    report = health(store, now)
    text = "\n".join(status_lines(report, {}, now))  # `/newsalert status`
    assert {n for n in names if f"*{n}*" in text} == expected
    home = json.dumps(home_view(store, "U1", lambda channel: True, now), ensure_ascii=False)  # App Home
    assert {n for n in names if f"⚠️ *{n}*" in home or f"⛔ *{n}*" in home} == expected
    store.close()
    status, body = healthz(str(db), scheduler_alive=True)  # /healthz
    assert {s["name"] for s in body["sources"] if s["state"] in ("failing", "disabled")} == expected
    assert status in (200, 503)


TESTS = ROOT / "tests"

PENDING: dict[str, list[str]] = {}  # test modules allowed to import another one: none


def imported_modules(path: Path) -> set[str]:
    """The dotted names of every module ``path`` imports, wherever the import is (inside functions
    too). `from a import b` gives both `a` and `a.b`, since b may be a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(ROOT).parts[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + (node.module.split(".") if node.module else []))
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_no_test_module_imports_another() -> None:
    # A helper in a test module is shared code in the wrong place: whoever edits, renames or deletes
    # that test file breaks another. What modules share belongs in conftest.py or a helper module
    # (fake_slack, feed_server, slack_limits, store_checks).
    modules = {path.stem for path in TESTS.glob("test_*.py")}
    test_modules = {f"tests.{name}" for name in modules} | modules  # `import test_x` from the rootdir too
    found = {}
    for path in sorted(TESTS.glob("test_*.py")):
        imported = sorted(imported_modules(path) & test_modules)
        if imported:
            found[path.name] = imported
    assert found == PENDING, (
        "a test module imports another (move the shared helper to tests/conftest.py), or an entry of "
        "PENDING is done and can go"
    )
