"""History: search agrees with the matcher, export, retention, and the FTS5 index behind them."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import tomllib
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest

from bench.match_corpus import WATCHLISTS, items
from bot.errors import QueryError
from bot.history import export_rows, fts_match, iso_z, prune, search, write_csv, write_json
from bot.match.fold import Field
from bot.match.query import compile_query
from bot.model import Item, Source, Subscription, Watchlist
from bot.store import Store
from bot.store.schema import FTS_NOT_PLAIN, FTS_PLAIN
from bot.stories.fingerprint import Fingerprint
from tests.conftest import DATA, run_newsalert
from tests.store_checks import fts_consistent

NOW = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)
_guids = count(1)


def add(
    store: Store,
    title: str,
    text: str = "",
    *,
    source: str = "UN News",
    seen: datetime = NOW - timedelta(days=1),
    story: int | None = None,
    outlet: str = "",
    url: str | None = None,
) -> tuple[int, int]:
    """Store one item (in a new story unless ``story``); returns (item id, story id)."""
    n = next(_guids)
    story = story if story is not None else store.stories.new_story(seen)
    item = Item(
        source=source,
        guid=f"g{n}",
        url=url if url is not None else f"https://example.org/{n}",
        title=title,
        text=text,
        published=seen,
        fetched=seen,
        outlet=outlet,
    )
    return store.items.add_item(item, story_id=story), story


def story_order(store: Store, stories: set[int]) -> list[int]:
    """Stories newest first by first seen, as search lists them."""
    rows = store.db.execute("SELECT id, first_seen FROM stories").fetchall()
    first = {story_id: seen for story_id, seen in rows}
    return sorted(stories, key=lambda s: (first[s], s), reverse=True)


def reference(store: Store, query: str, since: timedelta, **filters: str) -> list[int]:
    """What search must return: the matcher run over every item in the window, no index."""
    compiled = compile_query(query)
    source = filters.get("source")
    watchlist = filters.get("watchlist")
    allowed = None
    if watchlist:
        rows = store.db.execute(
            "SELECT i.story_id FROM matches m JOIN items i ON i.id = m.item_id WHERE m.watchlist = ?",
            [watchlist],
        )
        allowed = {r[0] for r in rows}
    found = set()
    for _, story, item in store.items.items_first_seen_since(NOW - since):
        if source and source.lower() not in (item.source.lower(), item.outlet.lower()):
            continue
        if allowed is not None and story not in allowed:
            continue
        if compiled.match(item.title, item.text, source=item.source) is not None:
            found.add(story)
    return story_order(store, found)


# ---------------------------------------------------------------------------------------------------------
# The index sees every word the matcher sees


def fts_tokenizer(store: Store) -> str:
    sql = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'items_fts'").fetchone()[0]
    return re.search(r"tokenize\s*=\s*(\"[^\"]*\")", sql).group(1)


def plain(code: int) -> bool:
    inside = any(lo <= code <= hi for lo, hi in FTS_PLAIN)
    return inside and not any(lo <= code <= hi for lo, hi in FTS_NOT_PLAIN)


def test_fts5_tokenizes_every_plain_character_as_the_matcher_does(tmp_path: Path) -> None:
    # The claim FTS_PLAIN makes, checked against the SQLite actually in use: for each character, in
    # several positions, FTS5's tokens are exactly the matcher's words.
    store = Store.open(tmp_path / "t.db")
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(a, tokenize={fts_tokenizer(store)})")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    contexts = ("ab{c}cd", "x {c} y", "{c}{c}", "{c}", "Zz{c}")
    docs = {}
    for lo, hi in FTS_PLAIN:
        for code in range(lo, hi + 1):
            if plain(code):
                for k, context in enumerate(contexts):
                    docs[code * 8 + k] = context.format(c=chr(code))
    conn.executemany("INSERT INTO t (rowid, a) VALUES (?, ?)", docs.items())
    tokens: dict[int, list[str]] = {}
    for doc, term in conn.execute("SELECT doc, term FROM v ORDER BY doc, offset"):
        tokens.setdefault(doc, []).append(term)
    wrong = [
        (hex(doc // 8), text) for doc, text in docs.items() if tokens.get(doc, []) != Field(text).tokens()
    ]
    assert len(docs) > 10_000
    assert wrong == []
    store.close()


def test_items_fts_may_split_differently_are_always_candidates(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    odd = {
        "fullwidth": add(store, "ＣＳＡＭ found")[0],
        "soft hyphen": add(store, "a deep\u00adfake video")[0],
        "entity": add(store, "x", "caf&eacute; owners")[0],
        "combining": add(store, "x", "Hebrew \u05d0\u05b0 point")[0],
        "cyrillic": add(store, "Дипфейк й")[0],
        "superscript": add(store, "x²")[0],
        "zero width joiner": add(store, "a\u200db")[0],
        "last not plain": add(store, chr(0x200D))[0],
    }
    ordinary = {
        "ascii": add(store, "UNICEF calls on governments")[0],
        "curly": add(store, "UNICEF\u2019s \u201cdeepfake\u201d warning \u2014 caf\u00e9 na\u00efve")[0],
        "edges": add(store, chr(0x24F) + chr(0x1E00) + chr(0x205F) + chr(0x2B4C))[0],
        "ampersand without entity": add(store, "AT&T and R&D")[0],
    }
    listed = {row[0] for row in store.db.execute("SELECT item_id FROM items_fts_fallback")}
    assert {name for name, item_id in odd.items() if item_id not in listed} == set()
    assert {name for name, item_id in ordinary.items() if item_id in listed} == set()
    # And search still finds what the matcher finds in them.
    assert [h.title for h in search(store, "csam", now=NOW)] == ["ＣＳＡＭ found"]
    assert [h.title for h in search(store, "deepfake", now=NOW)] == [
        "UNICEF\u2019s \u201cdeepfake\u201d warning \u2014 caf\u00e9 na\u00efve",
        "a deep\u00adfake video",
    ]
    assert len(search(store, "cafe", now=NOW)) == 2
    store.close()


# ---------------------------------------------------------------------------------------------------------
# Search agrees with the matcher on a table of queries


def load_cases() -> list[dict]:
    with (DATA / "matching_cases.toml").open("rb") as f:
        return tomllib.load(f)["case"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Every text of tests/data/matching_cases.toml and 400 realistic news items, one story each but a few
    shared, spread over 60 days; in SQLite (FTS5) and in PostgreSQL (tsvector)."""
    if request.param == "postgresql":
        store = Store.open(request.getfixturevalue("pg_cluster").fresh_database())
    else:
        store = Store.open(tmp_path_factory.mktemp("corpus") / "corpus.db")
    with store.transaction():
        story = None
        for n, case in enumerate(load_cases()):
            seen = NOW - timedelta(hours=5 * n + 1)
            text = "filler " * case.get("padding", 0) + case["text"]
            _, made = add(
                store,
                case.get("title", ""),
                text,
                source=case.get("source") or "Case feed",
                seen=seen,
                story=story if n % 7 == 3 else None,
            )
            story = made
        for n, (title, text, source) in enumerate(items(400, seed=9)):
            outlet = "Reuters" if n % 9 == 0 else ""  # aggregator items name their outlet
            item_id, _ = add(
                store, title, text, source=source, seen=NOW - timedelta(hours=3 * n + 2), outlet=outlet
            )
            if n % 3 == 0:  # as if watchlist w1 had matched these when they arrived
                store.items.add_matches(item_id, {"w1": []})
    yield store
    store.close()


QUERIES = sorted(
    {case["query"] for case in load_cases()}
    | set(WATCHLISTS.values())
    | {
        "unicef deepfake",
        "-satire",
        "NOT csam",
        'source:"UN News"',
        'source:"Case feed" unicef',
        "unicef OR -x",
        'title:(nudif* OR "undress app*")',
        "text:unicef",
        "csam NEAR/5 (ai OR generated)",
        "said",
        "children",
    }
)


def test_search_agrees_with_the_matcher_on_every_query(corpus: Store) -> None:
    disagree = []
    narrowed = 0
    total = corpus.count("items")
    for query in QUERIES:
        for since in (timedelta(days=60), timedelta(days=10)):
            expected = reference(corpus, query, since)
            got = [hit.id for hit in search(corpus, query, since=since, limit=10_000, now=NOW)]
            if got != expected:
                disagree.append((query, since.days, len(expected), len(got)))
        match = fts_match(compile_query(query))
        if (
            match is not None
            and len(corpus.history.search_candidates(match, NOW - timedelta(days=60))) < total / 2
        ):
            narrowed += 1
    assert len(QUERIES) > 150
    assert disagree == []
    # The index must do its job: most queries are answered from a small candidate set.
    assert narrowed > len(QUERIES) * 0.7


@pytest.mark.parametrize(
    ("query", "filters"),
    [
        ("unicef OR csam", {"source": "Case feed"}),
        ("police OR court", {"source": "reuters"}),  # the outlet of aggregator items counts too
        ("unicef OR children", {"watchlist": "w1"}),
    ],
)
def test_filters_and_limit_agree_with_the_matcher(corpus: Store, query: str, filters: dict[str, str]) -> None:
    since = timedelta(days=60)
    expected = reference(corpus, query, since, **filters)
    got = [h.id for h in search(corpus, query, since=since, limit=10_000, now=NOW, **filters)]
    assert got == expected and got, (query, filters)
    limited = search(corpus, query, since=since, limit=3, now=NOW, **filters)
    assert [h.id for h in limited] == expected[:3]


def test_a_hit_names_its_story_by_the_earliest_matching_item(db_target: str) -> None:
    store = Store.open(db_target)
    _, story = add(store, "Ministers meet", "nothing here", seen=NOW - timedelta(hours=9))
    add(store, "UNICEF warns on deepfakes", "", seen=NOW - timedelta(hours=8), story=story, source="UN News")
    add(
        store,
        "UNICEF later copy",
        "",
        seen=NOW - timedelta(hours=7),
        story=story,
        source="BBC",
        url="https://bbc.example/x",
    )
    item_id, newer = add(store, "UNICEF again", "", seen=NOW - timedelta(hours=1))
    store.items.add_matches(item_id, {"unicef": []})
    hits = search(store, "unicef", now=NOW)
    assert [(h.id, h.title, h.sources) for h in hits] == [
        (newer, "UNICEF again", 1),
        (story, "UNICEF warns on deepfakes", 2),
    ]
    assert hits[0].watchlists == ("unicef",) and hits[1].watchlists == ()
    assert hits[1].first_seen == NOW - timedelta(hours=9)
    assert hits[0].as_json()["first_seen"] == iso_z(NOW - timedelta(hours=1))
    store.close()


def test_a_bad_query_raises_and_user_text_never_reaches_sql(db_target: str) -> None:
    store = Store.open(db_target)
    add(store, "drop table items; -- now", "x")
    with pytest.raises(QueryError):
        search(store, '"unterminated', now=NOW)
    assert [h.title for h in search(store, '"; DROP TABLE items; --"', now=NOW)] == []
    assert [h.title for h in search(store, "drop table", now=NOW)] == ["drop table items; -- now"]
    assert [h.title for h in search(store, 'items AND "x\' OR 1=1"', now=NOW)] == []
    assert store.count("items") == 1
    store.close()


def test_fts_expression_drops_only_what_cannot_narrow() -> None:
    assert fts_match(compile_query("-satire")) is None
    assert fts_match(compile_query('source:"UN News"')) is None
    assert fts_match(compile_query("unicef OR -x")) is None  # one branch could match anything
    assert fts_match(compile_query('source:"UN News" unicef')) == '("unicef" OR "unicefs")'
    assert fts_match(compile_query("=CSAM")) == '"csam"'
    assert fts_match(compile_query("deep-fake*")) == '("deep" OR "deepfake"*)'
    assert fts_match(compile_query("nudif*")) == '"nudif"*'
    assert fts_match(compile_query("title:csam")) == '{title} : (("csam" OR "csams"))'
    assert fts_match(compile_query('"child abuse material" -satire')) == (
        '("child" AND "abuse" AND ("material" OR "materials"))'
    )


def test_edited_and_deleted_items_leave_the_index_consistent(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    item_id, _ = add(store, "Old headline about ponies", "text")
    store.items.update_item_text(item_id, "New headline about UNICEF", "text")
    assert [h.title for h in search(store, "unicef", now=NOW)] == ["New headline about UNICEF"]
    assert search(store, "ponies", now=NOW) == []
    store.items.update_item_text(item_id, "ＵＮＩＣＥＦ in fullwidth", "text")
    assert [row[0] for row in store.db.execute("SELECT item_id FROM items_fts_fallback")] == [item_id]
    assert fts_consistent(store)
    store.close()


# ---------------------------------------------------------------------------------------------------------
# Export


@pytest.fixture
def alerted(db_target: str):
    store = Store.open(db_target)
    store.catalog.sync_config(
        [Source("UN News", "https://news.un.org/rss")],
        [Watchlist("csam", "csam"), Watchlist("deepfakes", "deepfake")],
        [Subscription("C1", ("csam", "deepfakes")), Subscription("C2", ("deepfakes",))],
        NOW - timedelta(days=30),
    )
    first, a = add(store, "CSAM report", "", seen=NOW - timedelta(days=2), url="https://un.example/a")
    add(store, "CSAM report, copy", "", seen=NOW - timedelta(days=1), story=a, source="BBC")
    store.items.add_matches(first, {"csam": []})
    store.outbox.enqueue_alert(first, "C1", ["csam"], NOW - timedelta(days=2))
    alert = store.outbox.queued_alerts()[0]
    store.outbox.mark_alert_sent(alert.id, "1.1", NOW - timedelta(days=2))
    store.people.add_feedback(
        first, "C1", ["csam", "unicef"], "U1", "not_relevant", NOW
    )  # one vote, two rows
    store.people.add_feedback(first, "C1", ["csam"], "U2", "not_relevant", NOW)
    store.people.set_triage(first, "C1", "done", "U3", NOW)
    second, b = add(store, '=HYPERLINK("http://evil") deepfake', "", seen=NOW - timedelta(hours=5), url="")
    store.items.add_matches(second, {"deepfakes": []})
    store.outbox.enqueue_alert(second, "C2", ["deepfakes"], NOW)  # queued, not sent: no channel yet
    add(store, "Not matched by anything", "", seen=NOW - timedelta(hours=4))
    old, _ = add(store, "Old CSAM story", "", seen=NOW - timedelta(days=90))
    store.items.add_matches(old, {"csam": []})
    yield store, a, b
    store.close()


def test_export_has_one_row_per_matched_story(alerted) -> None:
    alerted, a, b = alerted
    rows = export_rows(alerted, since=timedelta(days=30), now=NOW)
    assert rows == [
        {
            "id": b,
            "first_seen": iso_z(NOW - timedelta(hours=5)),
            "title": '=HYPERLINK("http://evil") deepfake',
            "url": "",
            "sources": 1,
            "watchlists": ["deepfakes"],
            "channels": [],
            "feedback": {},
            "triage": {},
        },
        {
            "id": a,
            "first_seen": iso_z(NOW - timedelta(days=2)),
            "title": "CSAM report",
            "url": "https://un.example/a",
            "sources": 2,
            "watchlists": ["csam"],
            "channels": ["C1"],
            "feedback": {"not_relevant": 2},
            "triage": {"C1": "done"},
        },
    ]
    assert [r["id"] for r in export_rows(alerted, since=timedelta(days=30), watchlist="csam", now=NOW)] == [a]
    assert len(export_rows(alerted, since=timedelta(days=100), now=NOW)) == 3


def test_export_csv_parses_and_cannot_smuggle_a_formula(alerted) -> None:
    alerted, _, _ = alerted
    out = io.StringIO()
    write_csv(export_rows(alerted, since=timedelta(days=30), now=NOW), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == [
        "id",
        "first_seen",
        "title",
        "url",
        "sources",
        "watchlists",
        "channels",
        "feedback",
        "triage",
    ]
    assert [r["title"] for r in rows] == ['\'=HYPERLINK("http://evil") deepfake', "CSAM report"]
    assert rows[1]["feedback"] == "not_relevant=2" and rows[1]["triage"] == "C1=done"
    assert rows[1]["channels"] == "C1" and rows[1]["sources"] == "2"
    out = io.StringIO()
    write_json(export_rows(alerted, since=timedelta(days=30), now=NOW), out)
    assert [r["watchlists"] for r in json.loads(out.getvalue())] == [["deepfakes"], ["csam"]]


def test_export_without_the_slack_tables_leaves_their_columns_empty(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    item_id, _ = add(store, "CSAM", "")
    store.items.add_matches(item_id, {"csam": []})
    store.db.execute("DROP TABLE feedback")
    store.db.execute("DROP TABLE triage")
    [row] = export_rows(store, since=timedelta(days=30), now=NOW)
    assert (row["feedback"], row["triage"]) == ({}, {})
    store.close()


# ---------------------------------------------------------------------------------------------------------
# Retention


def fts_rowids(store: Store, word: str) -> set[int]:
    rows = store.db.execute("SELECT rowid FROM items_fts WHERE items_fts MATCH ?", [f'"{word}"'])
    return {r[0] for r in rows}


def test_prune_removes_old_stories_from_the_tables_and_the_index(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    old_seen = NOW - timedelta(days=200)
    old, old_story = add(store, "Ancient UNICEF story", "", seen=old_seen)
    copy, _ = add(store, "ＵＮＩＣＥＦ copy", "", seen=old_seen, story=old_story)
    store.stories.add_fingerprint(
        old, old_story, old_seen, Fingerprint(frozenset({"ancient", "unicef"}), frozenset({"stori"}))
    )
    store.items.add_matches(old, {"unicef": []})
    store.outbox.enqueue_alert(old, "C1", ["unicef"], old_seen)
    store.outbox.mark_alert_sent(store.outbox.queued_alerts()[0].id, "1.1", old_seen)
    store.people.add_feedback(old, "C1", ["unicef"], "U1", "not_relevant", old_seen)
    store.people.set_triage(old, "C1", "done", "U1", old_seen)
    # Kept: a story still being reported, one with a queued alert, and a recent one.
    alive, alive_story = add(store, "UNICEF story still running", "", seen=old_seen)
    add(store, "UNICEF follow-up", "", seen=NOW - timedelta(days=2), story=alive_story)
    waiting, _ = add(store, "UNICEF alert stuck in the outbox", "", seen=old_seen)
    store.outbox.enqueue_alert(waiting, "C2", ["unicef"], old_seen)
    recent, _ = add(store, "UNICEF today", "", seen=NOW - timedelta(hours=1))

    assert prune(store, retention_days=180, now=NOW) == 2
    remaining = {r[0] for r in store.db.execute("SELECT id FROM items")}
    assert old not in remaining and copy not in remaining
    assert {alive, waiting, recent} <= remaining
    assert fts_rowids(store, "unicef") == remaining - {copy}
    assert fts_rowids(store, "ancient") == set()
    assert store.db.execute("SELECT count(*) FROM items_fts_fallback").fetchone()[0] == 0
    for table in ("matches", "fingerprints", "feedback", "triage"):
        assert store.db.execute(f"SELECT count(*) FROM {table} WHERE item_id = ?", [old]).fetchone()[0] == 0
    assert store.db.execute("SELECT count(*) FROM stories WHERE id = ?", [old_story]).fetchone()[0] == 0
    assert fts_consistent(store)
    assert search(store, "ancient", since=timedelta(days=365), now=NOW) == []
    assert prune(store, retention_days=180, now=NOW) == 0


def test_prune_keeps_what_an_open_digest_window_needs(db_target: str) -> None:
    store = Store.open(db_target)
    add(store, "Old story", "", seen=NOW - timedelta(days=200))
    store.db.execute(
        """INSERT INTO subscriptions (id, channel, watchlists, mode, origin, created_at, schedule, timezone)
           VALUES ('d1', 'C9', '["csam"]', 'digest', 'config', ?, 'weekly mon 09:00', 'UTC')""",
        [(NOW - timedelta(days=250)).isoformat()],
    )
    assert prune(store, retention_days=180, now=NOW) == 0
    store.db.execute(
        "UPDATE subscriptions SET digest_covered_until = ?", [(NOW - timedelta(days=1)).isoformat()]
    )
    assert prune(store, retention_days=180, now=NOW) == 1


# ---------------------------------------------------------------------------------------------------------
# The commands


def test_search_and_export_commands(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    env = {"NEWSALERT_DB": str(db)}
    store = Store.open(db)
    now = datetime.now(UTC)
    item_id, story = add(store, "UNICEF warns about deepfakes", "", seen=now - timedelta(hours=2))
    store.items.add_matches(item_id, {"unicef": []})
    add(store, "Weather", "", seen=now - timedelta(hours=1))
    store.close()

    result = run_newsalert("search", "unicef OR deep-fake*", "--json", "-v", env=env)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)  # stdout is the JSON alone; logs went to stderr
    assert [(h["id"], h["title"], h["watchlists"]) for h in hits] == [
        (story, "UNICEF warns about deepfakes", ["unicef"])
    ]
    assert set(hits[0]) == {"id", "title", "url", "sources", "first_seen", "watchlists"}

    result = run_newsalert("search", "weather", "--since", "1d", env=env)
    assert result.returncode == 0 and "Weather" in result.stdout and "1 source" in result.stdout

    result = run_newsalert("search", "unicef (", env=env)
    assert result.returncode == 2 and "query error" in result.stderr

    out = tmp_path / "export.csv"
    result = run_newsalert("export", "--since", "7d", "--format", "csv", "--output", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert [r["title"] for r in csv.DictReader(out.open(encoding="utf-8"))] == [
        "UNICEF warns about deepfakes"
    ]

    result = run_newsalert("search", "x", db=tmp_path / "missing.db")
    assert result.returncode == 3 and "no such database" in result.stderr


def test_the_python_fallback_test_agrees_with_the_sql_one_on_every_boundary(tmp_path: Path) -> None:
    # Inserts decide in Python (needs_search_fallback); edits, in the update trigger's SQL.
    from bot.store.schema import FTS_NOT_PLAIN, _fts_fallback_sql, needs_search_fallback

    store = Store.open(tmp_path / "t.db")
    codes = {0x7F, 0x10FFFF, 0x1F600}  # (no NUL: SQL strings end there)
    for lo, hi in (*FTS_PLAIN, *FTS_NOT_PLAIN):
        codes |= {lo - 1, lo, lo + 1, hi - 1, hi, hi + 1}
    texts = [f"plain {chr(c)} text" for c in sorted(codes) if 0 < c <= 0x10FFFF and not 0xD800 <= c <= 0xDFFF]
    texts += ["AT&T", "caf&eacute;", "a;b&c", "", "UNICEF"]
    sql = "SELECT " + _fts_fallback_sql("(:title || ' ' || :text)")
    differ = [
        t
        for t in texts
        if bool(store.db.execute(sql, {"title": "x", "text": t}).fetchone()[0])
        != needs_search_fallback("x", t)
    ]
    assert differ == []
    store.close()
