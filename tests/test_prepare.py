"""Preparing bodies in worker processes (bot/ingest/prepare.py): one or several processes give
the same, a body that overruns its budget or kills its process fails that source alone."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.errors import ParseAborted, ParseError
from bot.ingest import guard, prepare
from bot.ingest.poll import poll
from bot.ingest.prepare import Job, Preparer
from bot.match.query import Matcher
from bot.model import Source
from bot.store import Store
from tests.conftest import rss, settings_for, sync
from tests.feed_server import FeedServer
from tests.store_checks import fts_consistent

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


def test_a_poll_prepared_by_several_processes_stores_what_one_process_does(
    tmp_path: Path, feeds: FeedServer
) -> None:
    sources = serve_sources(feeds)
    one = poll_once(tmp_path, "one", sources, pool_min_bytes=10**12)
    several = poll_once(tmp_path, "several", sources, pool_min_bytes=0)
    assert several == one
    assert len(one["items"]) > 20 and one["alerts"]
    # The broken source is named, with its URL, whichever process parsed it.
    assert [name for name, _ in several["failing"]] == ["broken"]
    # The three outlets' copies are one story, though two match no watchlist by their wording.
    raid = {story for source, *_, story in one["items"] if source.startswith("outlet")}
    assert len(raid) == 1


def test_what_a_process_prepares_is_what_preparing_inline_gives(feeds: FeedServer) -> None:
    sources = serve_sources(feeds)
    jobs = [Job(s, feeds.routes[s.url.removeprefix(feeds.url(""))].body, {}, NOW) for s in sources]
    matcher = Matcher({"csam": "CSAM", "deepfakes": "deepfake*"})
    inline = [comparable(prepare._prepare_job(job, matcher)) for job in jobs]
    with Preparer({"csam": "CSAM", "deepfakes": "deepfake*"}) as preparer:
        assert [comparable(r) for r in preparer.run(jobs)] == inline
    assert inline[-1] == ("ParseError", f"{sources[-1].url}: not a feed: got HTML")


def comparable(result: object) -> object:
    return (type(result).__name__, str(result)) if isinstance(result, Exception) else result


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


@pytest.fixture
def fresh_workers() -> Iterator[None]:
    """No process kept from an earlier test: the ones this test starts see its environment."""
    prepare.stop_workers()
    yield
    prepare.stop_workers()


def slow_body() -> bytes:
    """A malformed feed just under the markup caps: feedparser needs ~4 s of CPU for it (on a
    2-core CI machine); however much faster a machine is, it is not 0.5 s."""
    flood = "<a>" * (guard.MAX_TAGS - 50) + "&x;" * (guard.MAX_REFERENCES - 50)
    return (
        "<?xml version='1.0'?><rss version='2.0'><channel><title>t</title><item><title>Slow</title>"
        f"<link>https://slow.example/1</link><description>{flood}</description></item></channel></rss>&"
    ).encode()


def test_a_body_over_its_budget_is_stopped_and_the_rest_carries_on(
    fresh_workers: None, caplog: pytest.LogCaptureFixture
) -> None:
    body = rss(("CSAM case", "https://a.example/1", NOW)).encode()
    jobs = [Job(Source(f"s{n}", f"http://127.0.0.1/{n}.rss"), body, {}, NOW) for n in range(4)]
    jobs.insert(1, Job(Source("slow", "https://user:pw@slow.example/feed?token=t"), slow_body(), {}, NOW))
    with Preparer({"csam": "CSAM"}, timeout=0.5) as preparer:
        results = list(preparer.run(jobs))
        again = list(preparer.run(jobs[2:]))  # the replacement process serves the next batch
    stopped = results[1]
    assert isinstance(stopped, ParseAborted) and stopped.timed_out
    assert stopped.reason == "parse took longer than 0.5 s; stopped"
    assert str(stopped).startswith("https://***@slow.example/feed?token=***: parse took longer")
    assert [[p.item.title for p in r] for r in results[:1] + results[2:]] == [["CSAM case"]] * 4  # type: ignore[union-attr]
    assert again == results[2:]
    assert sum("parse stopped, worker replaced" in r.getMessage() for r in caplog.records) == 1


def test_a_process_that_dies_on_a_body_fails_that_source_alone(
    fresh_workers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The failpoint SIGKILLs the process reading s2's body (the environment is inherited).
    monkeypatch.setenv("NEWSALERT_FAILPOINT", "prepare-worker:s2")
    body = rss(("CSAM case", "https://a.example/1", NOW)).encode()
    jobs = [Job(Source(f"s{n}", f"http://127.0.0.1/{n}.rss"), body, {}, NOW) for n in range(5)]
    with Preparer({"csam": "CSAM"}, workers=2, pool_min_bytes=0) as preparer:
        results = list(preparer.run(jobs))
    died = results[2]
    assert isinstance(died, ParseAborted) and not died.timed_out
    assert died.reason == "the process reading the feed died (killed by signal 9)"
    assert [len(r) for r in results[:2] + results[3:]] == [1, 1, 1, 1]  # type: ignore[arg-type]


def test_without_processes_bodies_are_prepared_inline(
    fresh_workers: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.ingest import workers

    def cannot_start(*args: object, **kwargs: object) -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(workers.subprocess, "Popen", cannot_start)
    body = rss(("CSAM case", "https://a.example/1", NOW)).encode()
    jobs = [Job(Source(f"s{n}", f"http://127.0.0.1/{n}.rss"), body, {}, NOW) for n in range(3)]
    with Preparer({"csam": "CSAM"}) as preparer:
        results = list(preparer.run(jobs))
    assert [len(r) for r in results] == [1, 1, 1]  # type: ignore[arg-type]
    assert any("without a time budget" in r.getMessage() for r in caplog.records)


def test_a_bug_met_by_one_feed_fails_that_source_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # What each process runs per body, run here so that a bug can be planted in it.
    real_parse = prepare.parse

    def parse(body: bytes, source: Source, headers: object = None) -> list:
        if source.name == "s1":
            raise KeyError("a field the parser did not expect")
        return real_parse(body, source, headers)  # type: ignore[arg-type]

    monkeypatch.setattr(prepare, "parse", parse)
    body = rss(("CSAM case", "https://a.example/1", NOW)).encode()
    jobs = [Job(Source(f"s{n}", f"http://127.0.0.1/{n}.rss"), body, {}, NOW) for n in range(3)]
    matcher = Matcher({"csam": "CSAM"})
    results = [prepare._prepare_job(job, matcher) for job in jobs]
    assert isinstance(results[1], ParseError) and "KeyError" in results[1].reason
    assert [len(r) for r in (results[0], results[2])] == [1, 1]  # type: ignore[arg-type]
    assert any("Traceback" in (r.exc_text or "") for r in caplog.records)


def test_batches_and_commit_groups_do_not_change_what_is_stored(
    tmp_path: Path, feeds: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.ingest import poll as pipeline

    sources = serve_sources(feeds)
    whole = poll_once(tmp_path, "whole", sources, pool_min_bytes=10**12)
    # Batches of 3 sources sharing the processes, a commit every other new item, and the rest of
    # each source stored right after the alert path of the next.
    monkeypatch.setattr(pipeline, "POLL_BATCH", 3)
    monkeypatch.setattr(pipeline, "GROUP_ITEMS", 2)
    monkeypatch.setattr(pipeline, "REST_LAG", 1)
    assert poll_once(tmp_path, "pieces", sources, pool_min_bytes=0) == whole


def test_parse_timeout_is_a_setting(tmp_path: Path) -> None:
    from bot.config import load_settings

    path = tmp_path / "c.toml"
    path.write_text('[defaults]\nparse_timeout = "3s"\n')
    assert load_settings(path, environ={}).parse_timeout == 3
    path.write_text("")
    assert load_settings(path, environ={}).parse_timeout == 10
