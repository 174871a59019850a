"""Preparing bodies in a process pool (bot/prepare.py) gives what preparing them inline gives."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.errors import ParseError
from bot.ingest.poll import poll
from bot.ingest.prepare import Job, Preparer
from bot.model import Source
from bot.store import Store
from tests.feed_server import FeedServer
from tests.store_checks import fts_consistent
from tests.test_pipeline import rss, settings_for, sync

NOW = datetime.now(UTC)
FIXTURES = Path(__file__).parent / "data" / "feeds"
LEAD = (
    "Dutch police said on Tuesday they had seized 14 servers in Rotterdam used to share child abuse "
    "images with 2,300 users, and arrested two men aged 41 and 36 after a two-year investigation."
)


def wire_copy(n: int, title: str) -> str:
    return (
        "<?xml version='1.0'?><rss version='2.0'><channel><title>t</title><item>"
        f"<title>{title}</title><link>https://outlet{n}.example/rotterdam-raid</link>"
        f"<guid>https://outlet{n}.example/rotterdam-raid</guid><description>{LEAD}</description>"
        "</item></channel></rss>"
    )


def serve_sources(feeds: FeedServer) -> list[Source]:
    """A dozen sources: the fixture feeds, a story syndicated across three, and a broken one."""
    sources = []
    for name in ("atom-xhtml.xml", "rss1-rdf.xml", "rss2-content-encoded.xml"):
        sources.append(Source(name, feeds.serve(f"/{name}", (FIXTURES / name).read_bytes())))
    for n in range(6):
        titles = [
            (f"Deepfake app {k} removed from stores", f"https://n{n}.example/{k}", NOW) for k in range(5)
        ]
        sources.append(Source(f"news {n}", feeds.serve(f"/news{n}.rss", rss(*titles))))
    for n in range(3):  # one wire story from three outlets, only the first matching by its wording
        title = "Police seize CSAM servers in Rotterdam" if n == 0 else "Police seize servers in Rotterdam"
        sources.append(Source(f"outlet {n}", feeds.serve(f"/outlet{n}.rss", wire_copy(n, title))))
    sources.append(Source("broken", feeds.serve("/broken.rss", "<html>not a feed</html>")))
    return sources


def snapshot(store: Store) -> dict[str, list]:
    """What a poll stored, in a form that does not depend on ids."""
    items = store.db.execute(
        "SELECT i.source, i.guid, i.title, i.text, i.url, d.guid, s.guid FROM items i "
        "LEFT JOIN items d ON d.id = i.duplicate_of "
        "JOIN (SELECT story_id, min(guid) AS guid FROM items GROUP BY story_id) s ON s.story_id = i.story_id "
        "ORDER BY i.source, i.guid"
    ).fetchall()
    matches = store.db.execute(
        "SELECT i.guid, m.watchlist, m.spans FROM matches m JOIN items i ON i.id = m.item_id ORDER BY 1, 2"
    ).fetchall()
    alerts = store.db.execute(
        "SELECT i.guid, a.channel, a.watchlists FROM alerts a JOIN items i ON i.id = a.item_id ORDER BY 1, 2"
    ).fetchall()
    failing = store.db.execute("SELECT name, last_error FROM sources WHERE last_error IS NOT NULL").fetchall()
    return {"items": items, "matches": matches, "alerts": alerts, "failing": failing}


def poll_once(tmp_path: Path, name: str, sources: list[Source], pool_min_bytes: int) -> dict[str, list]:
    settings = settings_for(tmp_path / name, *sources, window=None)
    (tmp_path / name).mkdir()
    with Store.open(settings.db_path) as store:
        sync(store, settings)
        report = poll(settings, store, pool_min_bytes=pool_min_bytes, now=lambda: NOW)
        assert report.polled == len(sources) and report.failed == 1
        assert fts_consistent(store)
        return snapshot(store)


def test_a_poll_prepared_in_a_pool_stores_what_an_inline_one_does(tmp_path: Path, feeds: FeedServer) -> None:
    sources = serve_sources(feeds)
    inline = poll_once(tmp_path, "inline", sources, pool_min_bytes=10**12)
    pooled = poll_once(tmp_path, "pooled", sources, pool_min_bytes=0)
    assert pooled == inline
    assert len(inline["items"]) > 20 and inline["alerts"]
    # The broken source is named, with its URL, whichever process parsed it.
    assert [name for name, _ in pooled["failing"]] == ["broken"]
    # The three outlets' copies are one story, though two match no watchlist by their wording.
    raid = {story for source, *_, story in inline["items"] if source.startswith("outlet")}
    assert len(raid) == 1


def test_what_a_worker_logs_is_logged_by_the_poll(
    tmp_path: Path, feeds: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Two items with one guid: the parser drops the second and says so, in the worker.
    body = rss(("CSAM case", "https://a.example/1", NOW), ("CSAM case again", "https://a.example/1", NOW))
    jobs = [Job(Source(f"s{n}", feeds.serve(f"/{n}.rss", body)), body.encode(), {}, NOW) for n in range(4)]
    with caplog.at_level(logging.INFO), Preparer({"csam": "CSAM"}, workers=2, pool_min_bytes=0) as preparer:
        results = list(preparer.run(jobs))
    assert [len(r) for r in results] == [1, 1, 1, 1]  # type: ignore[arg-type]
    dropped = [r for r in caplog.records if "duplicate guid" in r.getMessage()]
    assert len(dropped) == 4, [r.getMessage() for r in caplog.records]


def test_when_the_workers_die_the_rest_is_prepared_inline(
    tmp_path: Path, feeds: FeedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The failpoint SIGKILLs each worker on its first job (the environment is inherited).
    monkeypatch.setenv("NEWSALERT_FAILPOINT", "prepare-worker")
    body = rss(("CSAM case", "https://a.example/1", NOW))
    jobs = [Job(Source(f"s{n}", f"http://127.0.0.1/{n}.rss"), body.encode(), {}, NOW) for n in range(6)]
    with Preparer({"csam": "CSAM"}, workers=2, pool_min_bytes=0) as preparer:
        results = list(preparer.run(jobs))
        later = list(preparer.run(jobs))  # the next batch of the poll: inline, no second pool
    assert [[p.item.title for p in r] for r in results] == [["CSAM case"]] * 6  # type: ignore[union-attr]
    assert later == results
    assert sum("pool broke" in r.getMessage() for r in caplog.records) == 1


def test_a_bug_met_by_one_feed_fails_that_source_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.ingest import prepare

    real_parse = prepare.parse

    def parse(body: bytes, source: Source, headers: object = None) -> list:
        if source.name == "s1":
            raise KeyError("a field the parser did not expect")
        return real_parse(body, source, headers)  # type: ignore[arg-type]

    monkeypatch.setattr(prepare, "parse", parse)
    body = rss(("CSAM case", "https://a.example/1", NOW)).encode()
    jobs = [Job(Source(f"s{n}", f"http://127.0.0.1/{n}.rss"), body, {}, NOW) for n in range(3)]
    with Preparer({"csam": "CSAM"}) as preparer:
        results = list(preparer.run(jobs))
    assert isinstance(results[1], ParseError) and "KeyError" in results[1].reason
    assert [len(r) for r in (results[0], results[2])] == [1, 1]  # type: ignore[arg-type]
    assert any("Traceback" in (r.exc_text or "") for r in caplog.records)


def test_batches_and_commit_groups_do_not_change_what_is_stored(
    tmp_path: Path, feeds: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.ingest import poll as pipeline

    sources = serve_sources(feeds)
    whole = poll_once(tmp_path, "whole", sources, pool_min_bytes=10**12)
    # Batches of 3 sources sharing one pool, and a commit every other new item.
    monkeypatch.setattr(pipeline, "POLL_BATCH", 3)
    monkeypatch.setattr(pipeline, "GROUP_ITEMS", 2)
    assert poll_once(tmp_path, "pieces", sources, pool_min_bytes=0) == whole
