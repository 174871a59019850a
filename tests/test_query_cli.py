"""`newsalert query test`, `query backtest` and `search`, on databases filled by the real pipeline; and
the same query checks and search deadline behind Slack's `/newsalert`."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

import bot.history
from bot.app.commands import handle
from bot.app.context import AppContext
from bot.cli import main
from bot.config import load_settings
from bot.errors import SearchTimeout
from bot.history import search
from bot.ingest.poll import poll
from bot.match.backtest import highlight, snippet
from bot.model import Span
from bot.store import Store
from tests.feed_server import FeedServer

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "config" / "newsalert.toml")
NOW = datetime.now(UTC)

CURRENT = '"child abuse material*" OR =CSAM'  # the watchlist as configured
EDITED = 'csam NEAR/3 (ai OR generated) OR "child sexual abuse material*"'  # the edit being tried


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- query test ----------------------------------------------------------------------------------------


def test_query_test_shows_the_match_and_its_spans(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        *("--config", CONFIG, "query", "test", "csam NEAR/5 (ai OR generated)"),
        *("--title", "UNICEF warns", "--text", "Police seized AI-generated CSAM on Tuesday"),
    )
    assert code == 0
    assert out.splitlines() == [
        "match: csam NEAR/5 (ai OR generated)",
        "  text     14-16    'AI' for 'ai'",
        "  text     17-26    'generated' for 'generated'",
        "  text     27-31    'CSAM' for 'csam'",
        "title: UNICEF warns",
        "text: Police seized [AI]-[generated] [CSAM] on Tuesday",
    ]


def test_query_test_exits_1_when_it_does_not_match(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--config", CONFIG, "query", "test", "=CSAM", "--text", "csam in lower case")
    assert code == 1
    assert out.strip() == "no match: =CSAM"


def test_query_test_source_and_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("children at risk\n"))
    argv = ["--config", CONFIG, "query", "test", 'source:"UN News" child*', "--text", "-"]
    code, out, _ = run(capsys, *argv, "--source", "UN News")
    assert code == 0
    assert "text: [children] at risk" in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("children at risk\n"))
    assert run(capsys, *argv, "--source", "BBC")[0] == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["query", "test", "NOT csam", "--text", "weather"],
        ["query", "test", "--text", "weather", "--", "-csam"],  # "--": a QUERY starting with "-"
    ],
)
def test_query_test_not_only_match_says_there_is_nothing_to_highlight(capsys, argv: list[str]) -> None:
    code, out, _ = run(capsys, "--config", CONFIG, *argv)
    assert code == 0
    assert "(no words to highlight: it matched through NOT or source: only)" in out


def test_query_error_points_at_the_column(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--config", CONFIG, "query", "test", "csam AND (ai OR generated", "--text", "x"]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        'newsalert: query error: expected ")" at column 26',
        "  csam AND (ai OR generated",
        "                           ^",
    ]


# --- query backtest ------------------------------------------------------------------------------------


def rss(*items: tuple[str, str, datetime]) -> str:
    entries = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid>"
        f"<pubDate>{format_datetime(published)}</pubDate><description>About {title}.</description></item>"
        for title, link, published in items
    )
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>{entries}</channel></rss>"


@pytest.fixture
def history(tmp_path: Path, feeds: FeedServer) -> Iterator[tuple[str, str]]:
    """(config path, database path): a database filled by the real pipeline from loopback feeds.

    Source A has four items; source B carries A's first item again under the same URL (a syndicated
    copy: same story); source C was polled 40 days ago.
    """
    day = timedelta(days=1)
    a = feeds.serve(
        "/a.rss",
        rss(
            ("Police seize AI-generated CSAM", "https://n.example/1", NOW - 3 * day),
            ("Report on child abuse materials", "https://n.example/2", NOW - 2 * day),
            ("Europol: child sexual abuse material made with AI", "https://n.example/3", NOW - 1 * day),
            ("Weather today", "https://n.example/4", NOW),
        ),
    )
    b = feeds.serve("/b.rss", rss(("Police seize AI-generated CSAM (copy)", "https://n.example/1", NOW)))
    c = feeds.serve("/c.rss", rss(("Old: CSAM made with AI", "https://n.example/old", NOW - 41 * day)))
    config = tmp_path / "newsalert.toml"
    config.write_text(
        "[defaults]\nallow_private_sources = true\n\n"
        f'[[sources]]\nname = "A"\nurl = "{a}"\n\n[[sources]]\nname = "B"\nurl = "{b}"\n\n'
        f'[[sources]]\nname = "C"\nurl = "{c}"\n\n'
        f"[watchlists.csam]\nquery = '{CURRENT}'\n\n"
        '[[subscriptions]]\nchannel = "C0123456789"\nwatchlists = ["csam"]\n'
    )
    database = str(tmp_path / "history.db")
    settings = load_settings(config, db_path=database)
    store = Store.open(database)
    try:
        by_name = {source.name: source for source in settings.sources}
        poll(settings, store, [by_name["C"]], now=lambda: NOW - 40 * day)
        poll(settings, store, [by_name["A"]])
        poll(settings, store, [by_name["B"]])
        assert store.count("items") == 6
    finally:
        store.close()
    yield str(config), database


def section(out: str, heading: str) -> list[str]:
    """The lines of one section of the backtest output: its heading line and its indented lines."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    return lines[start:end]


def test_backtest_counts_items_and_stories_and_diffs_against_the_watchlist(
    capsys: pytest.CaptureFixture[str], history: tuple[str, str]
) -> None:
    config, database = history
    code, out, err = run(
        capsys, "--config", config, "--db", database, "query", "backtest", EDITED, "--watchlist", "csam"
    )
    assert code == 0, err
    assert out.splitlines()[0] == f"query: {EDITED}"
    assert f"history: 5 items first seen since {(NOW - timedelta(days=30)):%Y-%m-%d}" in out
    assert f"(last 30d) in {database}" in out
    # The copy from source B is a second item of the same story. Newest published first.
    assert [line.strip() for line in section(out, "would have alerted")] == [
        "would have alerted: 3 items in 2 stories",
        f"{NOW:%Y-%m-%d %H:%M}  B",
        "Police seize [AI]-[generated] [CSAM] (copy)",
        "About Police seize [AI]-[generated] [CSAM] (copy).",
        f"{NOW - timedelta(days=1):%Y-%m-%d %H:%M}  A",
        "Europol: [child sexual abuse material] made with [AI]",
        "About Europol: [child sexual abuse material] made with [AI].",
        f"{NOW - timedelta(days=3):%Y-%m-%d %H:%M}  A",
        "Police seize [AI]-[generated] [CSAM]",
        "About Police seize [AI]-[generated] [CSAM].",
    ]
    assert f'compared with watchlist "csam" as configured: {CURRENT}' in out
    assert "it would have alerted 3 items in 2 stories" in out
    newly = section(out, "newly matched")
    assert newly[0] == "newly matched: 1 item in 1 story"
    assert newly[2].strip() == "Europol: [child sexual abuse material] made with [AI]"
    gone = section(out, "no longer matched")
    assert gone[0] == "no longer matched: 1 item in 1 story"
    assert gone[2].strip() == "Report on [child abuse materials]"


def test_backtest_window(capsys: pytest.CaptureFixture[str], history: tuple[str, str]) -> None:
    config, database = history
    argv = ["--config", config, "--db", database, "query", "backtest", "csam"]
    assert "would have alerted: 2 items in 1 story" in run(capsys, *argv)[1]
    out = run(capsys, *argv, "--since", "60d")[1]
    assert "would have alerted: 3 items in 2 stories" in out
    assert "Old: [CSAM] made with AI" in out
    out = run(capsys, *argv, "--since", "1h")[1]
    assert "history: 5 items" in out  # A and B were polled just now; C's item was first seen 40 days ago


def test_backtest_of_the_configured_watchlist_alone(capsys, history: tuple[str, str]) -> None:
    config, database = history
    argv = ["--config", config, "--db", database, "query", "backtest", "--watchlist", "csam"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert out.splitlines()[0] == f"query: {CURRENT}"
    assert "would have alerted: 3 items in 2 stories" in out
    assert "compared with" not in out


def test_backtest_top_limits_each_list(capsys, history: tuple[str, str]) -> None:
    config, database = history
    argv = ["--config", config, "--db", database, "query", "backtest", "csam OR weather", "--top", "1"]
    out = run(capsys, *argv)[1]
    assert "would have alerted: 3 items in 2 stories" in out
    assert "  … and 2 more" in out
    assert out.count("  A\n") + out.count("  B\n") == 1


def test_backtest_errors(capsys, history: tuple[str, str], tmp_path: Path) -> None:
    config, database = history
    argv = ["--config", config, "--db", database, "query", "backtest"]
    code, _, err = run(capsys, *argv, "x", "--watchlist", "nope")
    assert code == 2
    assert "unknown watchlist 'nope' (defined: csam)" in err
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "needs a QUERY, a --watchlist NAME, or both" in err
    missing = tmp_path / "missing.db"
    code, _, err = run(capsys, "--config", config, "--db", str(missing), "query", "backtest", "csam")
    assert code == 3
    assert f"{missing}: no such database" in err
    assert not missing.exists()  # not created as a side effect
    code, _, err = run(capsys, *argv, "csam OR")
    assert code == 2
    assert err.splitlines()[0] == 'newsalert: query error: expected a term after "OR" at column 6'
    with pytest.raises(SystemExit) as raised:
        main(["--config", config, "--db", database, "query", "backtest", "csam", "--since", "soon"])
    assert raised.value.code == 2
    assert "expected a duration" in capsys.readouterr().err


def test_backtest_on_an_empty_window_says_so(capsys, tmp_path: Path) -> None:
    database = tmp_path / "empty.db"
    Store.open(database).close()
    code, out, _ = run(capsys, "--config", CONFIG, "--db", str(database), "query", "backtest", "csam")
    assert code == 0
    assert "history: 0 items" in out
    assert "nothing stored in that window" in out
    assert "would have alerted: 0 items in 0 stories" in out


def test_query_commands_work_on_a_database_kept_by_the_demo(tmp_path: Path) -> None:
    """The acceptance path: `newsalert demo --keep PATH`, then `newsalert --db PATH query backtest`."""
    database = tmp_path / "demo.db"

    def newsalert(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    demo = newsalert("demo", "--keep", str(database))
    assert demo.returncode == 0, demo.stderr
    result = newsalert(
        *("--db", str(database), "query", "backtest", "UNICEF NEAR/10 (deep-fake* OR AI-generated)"),
        *("--watchlist", "unicef"),
    )
    assert result.returncode == 0, result.stderr
    assert "history: 12 items" in result.stdout
    assert "[UNICEF] calls on governments to criminalize [AI-generated] child abuse material" in result.stdout
    assert "no longer matched:" in result.stdout
    test = newsalert("query", "test", "=UNICEF", "--text", "UNICEF, not unicef")
    assert (test.returncode, test.stdout.splitlines()[-1]) == (0, "text: [UNICEF], not unicef")


# --- highlighting helpers ------------------------------------------------------------------------------


def test_highlight_merges_overlapping_spans_and_ignores_other_fields() -> None:
    spans = [Span("text", 0, 4, "a"), Span("text", 2, 9, "b"), Span("title", 0, 2, "c")]
    spans.append(Span("text", 10, 12, "d"))
    assert highlight("deepfakes ai", spans, "text") == "[deepfakes] [ai]"
    assert highlight("deepfakes ai", spans, "title") == "[de]epfakes ai"


def test_snippet_is_a_window_around_the_first_match() -> None:
    text = " ".join(f"w{i}" for i in range(200)) + " CSAM " + " ".join(f"v{i}" for i in range(200))
    start = text.index("CSAM")
    found = snippet(text, [Span("text", start, start + 4, "csam")], width=60)
    assert found.startswith("…w") and found.endswith("…")
    assert "[CSAM]" in found
    assert len(found) <= 60 + 4
    assert snippet(text, [Span("title", 0, 2, "w0")]) == ""


# --- hostile queries and slow searches: one clear line at every entry point ------------------------------

HOSTILE = {
    "600-letter word": ("a" * 600, "word is too long: 600 characters, at most 100 at column 1"),
    "1,000 parentheses": (
        "(" * 1000 + "a" + ")" * 1000,
        "query is nested too deeply: at most 32 levels at column 33",
    ),
    "NOT x 2,000": ("NOT " * 2000 + "a", "query is nested too deeply: at most 32 levels at column 129"),
    "600 NEARs": (
        " NEAR/1 ".join(["a"] * 601),
        "query is nested too deeply: at most 32 levels at column 291",
    ),
}


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err[:2000]
    return lines[0]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_query_is_one_line_from_every_cli_command(
    name: str, capsys: pytest.CaptureFixture[str], history: tuple[str, str]
) -> None:
    config, database = history
    query, problem = HOSTILE[name]
    for command in (
        ["query", "test", query, "--text", "a"],
        ["query", "backtest", query],
        ["search", query],
    ):
        code, out, err = run(capsys, "--config", config, "--db", database, *command)
        assert (code, out) == (2, ""), command[:2]
        assert one_line(err) == f"newsalert: query error: {problem}"


def test_hostile_watchlist_in_the_config_names_file_line_and_watchlist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    query = HOSTILE["NOT x 2,000"][0]
    config = tmp_path / "newsalert.toml"
    config.write_text(
        '[[sources]]\nname = "UN"\nurl = "https://news.un.org/feed"\n\n'
        "[watchlists.fine]\nquery = 'csam'\n\n"
        f"[watchlists.deep]\nquery = '{query}'\n\n"
        '[[subscriptions]]\nchannel = "C0123456789"\nwatchlists = ["fine", "deep"]\n'
    )
    for command in (["check-config"], ["poll", "--once"], ["query", "test", "csam", "--text", "csam"]):
        code, _, err = run(capsys, "--config", str(config), "--db", str(tmp_path / "t.db"), *command)
        assert code == 2, command
        line = one_line(err)
        assert line.startswith(f"newsalert: config error: {config}:9: watchlists.deep.query: ")
        assert 'watchlist "deep": query is nested too deeply: at most 32 levels at column 129' in line


def test_query_error_in_a_multi_line_watchlist_names_its_own_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "newsalert.toml"
    config.write_text(
        '[[sources]]\nname = "UN"\nurl = "https://news.un.org/feed"\n\n'
        "[watchlists.csam]\nquery = '''\nCSAM OR CSEM\nOR \"child abuse material*\"\nOR (ai\n'''\n\n"
        '[[subscriptions]]\nchannel = "C0123456789"\nwatchlists = ["csam"]\n'
    )
    code, _, err = run(capsys, "--config", str(config), "check-config")
    assert code == 2
    assert one_line(err) == (
        f'newsalert: config error: {config}:9: watchlists.csam.query: watchlist "csam": '
        'expected ")" at column 7: OR (ai'
    )


def test_search_stops_at_its_deadline(
    capsys: pytest.CaptureFixture[str], history: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, database = history
    with Store.open(database) as store:
        assert [hit.title for hit in search(store, "csam", budget=60)] == ["Police seize AI-generated CSAM"]
        with pytest.raises(SearchTimeout) as raised:
            search(store, "csam", budget=0)  # checked before each candidate: 0 stops at the first
    assert (raised.value.checked, raised.value.candidates) == (0, 2)
    monkeypatch.setattr(bot.history, "SEARCH_BUDGET", 0)  # the default both the CLI and Slack use
    code, out, err = run(capsys, "--config", config, "--db", database, "search", "csam")
    assert (code, out) == (1, "")
    assert one_line(err) == (
        "newsalert: search took too long (over 0 s; 0 of 2 candidate items checked): "
        "narrow it with --since, --watchlist or --source"
    )


class Admins:
    """The Slack side of a command, for one that never needs to ask Slack (the user is a config admin)."""

    def is_workspace_admin(self, user_id: str) -> bool:
        raise AssertionError("a config admin needs no users.info")

    def join(self, channel_id: str) -> str | None:
        return None

    def can_see(self, user_id: str, channel_id: str) -> bool:
        return True

    def permalink(self, channel_id: str, ts: str) -> str | None:
        return None


def slack(history: tuple[str, str], text: str) -> str:
    """The reply to `/newsalert TEXT` from an admin, on the history's database."""
    config, database = history
    settings = replace(load_settings(config, db_path=database), slack_admins=("U0ADMIN",))
    return handle(text, user="U0ADMIN", channel="C1", ctx=AppContext(settings), workspace=Admins()).text


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_query_is_refused_from_slack(name: str, history: tuple[str, str]) -> None:
    query, problem = HOSTILE[name]
    added = slack(history, f"watchlist add longone {query}")
    assert added == f"Query error: watchlist `longone`: {problem}."
    assert "longone" not in slack(history, "watchlists")  # nothing was saved
    for command in ("query test", "search"):
        assert slack(history, f"{command} {query}") == f"Query error: {problem}."


def test_slack_search_past_its_deadline_asks_to_narrow_it(
    history: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "Police seize AI-generated CSAM" in slack(history, "search csam")
    monkeypatch.setattr(bot.history, "SEARCH_BUDGET", 0)
    assert slack(history, "search csam") == (
        "Search took too long (over 0 s). Narrow it: a shorter `since:` (such as `since:7d`), "
        "a `watchlist:`, or rarer words."
    )
