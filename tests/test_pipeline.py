"""One poll in-process: real loopback HTTP feeds, a real SQLite file, no Slack."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.ingest.ingest import plan_alerts
from bot.ingest.poll import flood_cutoff, poll
from bot.model import Source, SourceState, Subscription
from bot.store import Store
from tests.conftest import (  # tests/test_prepare.py still imports rss, settings_for and sync from here
    NOW,
    rss,
    settings_for,
    sync,
)
from tests.feed_server import FeedServer


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "t.db")
    yield s
    s.close()


def test_matching_items_are_queued_per_channel(tmp_path, feeds: FeedServer, store: Store) -> None:
    url = feeds.serve(
        "/a.rss",
        rss(
            ("Police find CSAM on servers", "https://n.example/1", NOW),
            ("Nudify apps banned", "https://n.example/2", NOW),
            ("Weather today", "https://n.example/3", NOW),
        ),
    )
    settings = settings_for(tmp_path, Source("A", url))
    sync(store, settings)
    report = poll(settings, store)
    assert (report.polled, report.failed, report.new_items, report.matches) == (1, 0, 3, 2)
    queued = {(q.item.title, q.channel, q.watchlists) for q in store.outbox.queued_alerts()}
    assert queued == {
        ("Police find CSAM on servers", "C1", ("csam",)),
        ("Nudify apps banned", "C1", ("deepfakes",)),
        ("Nudify apps banned", "C2", ("deepfakes",)),
    }


def test_first_poll_alerts_only_recent_items_but_stores_all(tmp_path, feeds, store) -> None:
    url = feeds.serve(
        "/a.rss",
        rss(
            ("Old CSAM story", "https://n.example/old", NOW - timedelta(days=3)),
            ("New CSAM story", "https://n.example/new", NOW - timedelta(hours=2)),
            ("Undated CSAM story", "https://n.example/undated", None),
        ),
    )
    settings = settings_for(tmp_path, Source("A", url))
    sync(store, settings)
    report = poll(settings, store)
    assert report.new_items == 3
    assert report.held_back == 1
    assert {q.item.title for q in store.outbox.queued_alerts()} == {"New CSAM story", "Undated CSAM story"}


def test_after_the_first_poll_late_items_still_alert(tmp_path, feeds, store) -> None:
    url = feeds.serve("/a.rss", rss(("First CSAM story", "https://n.example/1", NOW)))
    settings = settings_for(tmp_path, Source("A", url))
    sync(store, settings)
    poll(settings, store)
    feeds.serve(
        "/a.rss",
        rss(
            ("First CSAM story", "https://n.example/1", NOW),
            ("Late CSAM story from last month", "https://n.example/late", NOW - timedelta(days=30)),
        ),
    )
    poll(settings, store)
    assert "Late CSAM story from last month" in {q.item.title for q in store.outbox.queued_alerts()}


def test_flood_cutoff_rules() -> None:
    day = 86400
    assert flood_cutoff(SourceState("a"), NOW, day) == NOW - timedelta(days=1)
    assert flood_cutoff(SourceState("a", last_success=NOW - timedelta(hours=1)), NOW, day) is None
    # back after a long failure: guarded again
    assert flood_cutoff(SourceState("a", last_success=NOW - timedelta(days=3)), NOW, day) is not None
    assert flood_cutoff(SourceState("a"), NOW, None) is None


def test_same_url_from_two_sources_is_one_alert(tmp_path, feeds, store) -> None:
    a = feeds.serve("/a.rss", rss(("CSAM ring exposed", "https://n.example/story?utm_source=a", NOW)))
    b = feeds.serve("/b.rss", rss(("CSAM ring exposed (wire)", "https://N.example/story#top", NOW)))
    settings = settings_for(tmp_path, Source("A", a), Source("B", b))
    sync(store, settings)
    report = poll(settings, store)
    assert report.new_items == 2
    assert [q.channel for q in store.outbox.queued_alerts()] == ["C1"]


def test_copies_of_one_page_in_a_poll_are_one_original_the_matched_one(tmp_path, feeds, store) -> None:
    # Unmatched copies of one page before a matched one in its feed, and another in a later feed:
    # the matched one is stored first (the alert path), and alerts; the others are its duplicates.
    a = feeds.serve(
        "/a.rss",
        rss(
            ("Weather today", "https://n.example/w?utm_source=a", NOW),
            ("Weather today, updated", "https://n.example/w#top", NOW),
            ("Sports", "https://n.example/s", NOW),
            ("CSAM found", "https://n.example/w?utm_medium=b", NOW),
        ),
    )
    b = feeds.serve(
        "/b.rss",
        rss(
            ("Weather and more", "https://N.example/w", NOW),
            ("Rain", "https://n.example/r", NOW),  # and an unmatched copy of an unmatched page
            ("Rain again", "https://n.example/r#again", NOW),
        ),
    )
    settings = settings_for(tmp_path, Source("A", a), Source("B", b))
    sync(store, settings)
    report = poll(settings, store)
    assert (report.new_items, report.matches, report.alerts_queued) == (7, 1, 1)
    rows = store.db.execute("SELECT title, duplicate_of, story_id, id FROM items ORDER BY id").fetchall()
    by_title = {title: (dup, story, item_id) for title, dup, story, item_id in rows}
    assert rows[0][0] == "CSAM found"  # stored before every unmatched item
    _, story, original = by_title["CSAM found"]
    for title in ("Weather today", "Weather today, updated", "Weather and more"):
        assert by_title[title][:2] == (original, story)
    assert by_title["Sports"][0] is None and by_title["Sports"][1] != story
    assert by_title["Rain again"][:2] == (by_title["Rain"][2], by_title["Rain"][1])
    assert store.count("stories") == 3


def test_seen_items_never_alert_again_across_restarts(tmp_path, feeds) -> None:
    url = feeds.serve("/a.rss", rss(("CSAM story", "https://n.example/1", NOW)))
    settings = settings_for(tmp_path, Source("A", url))
    first = Store.open(settings.db_path)
    sync(first, settings)
    assert poll(settings, first).new_items == 1
    first.close()
    second = Store.open(settings.db_path)
    report = poll(settings, second)
    assert report.new_items == 0
    assert second.count("alerts") == 1
    second.close()


def test_failures_are_isolated_and_recorded(tmp_path, feeds, store) -> None:
    good = feeds.serve("/good.rss", rss(("CSAM story", "https://n.example/1", NOW)))
    missing = feeds.url("/missing.rss")
    broken = feeds.serve("/broken.rss", "<rss><channel><item><title>unterminated")
    html = feeds.serve(
        "/page.html",
        "<!doctype html><html><body><p>Not a feed</p></body></html>",
        headers={"Content-Type": "text/html"},
    )
    huge = feeds.serve(
        "/huge.rss", rss(*[(f"item {i} " + "x" * 500, f"https://n.example/h{i}", NOW) for i in range(200)])
    )
    slow = feeds.serve("/slow.rss", rss(("slow", "https://n.example/s", NOW)), delay=4)
    settings = settings_for(
        tmp_path,
        *(
            Source(n, u)
            for n, u in [
                ("good", good),
                ("missing", missing),
                ("broken", broken),
                ("html", html),
                ("huge", huge),
                ("slow", slow),
            ]
        ),
    )
    sync(store, settings)
    report = poll(settings, store)
    assert report.polled == 6
    assert report.failed == 5
    assert report.new_items == 1
    errors = {name: store.sources.source_state(name) for name in ("missing", "html", "huge", "slow")}
    assert all(state.consecutive_failures == 1 for state in errors.values())
    rows = {r["name"]: r["last_error"] for r in store.db["sources"].rows}
    assert "404" in rows["missing"]
    assert "too large" in rows["huge"]
    assert "timed out" in rows["slow"]
    assert rows["good"] is None


def test_conditional_get_uses_the_etag(tmp_path, feeds, store) -> None:
    url = feeds.serve("/a.rss", rss(("CSAM story", "https://n.example/1", NOW)), etag='"abc"')
    settings = settings_for(tmp_path, Source("A", url))
    sync(store, settings)
    poll(settings, store)
    report = poll(settings, store)
    assert feeds.requests[-1][1].get("If-None-Match") == '"abc"'
    assert report.failed == 0 and report.new_items == 0
    assert store.sources.source_state("A").consecutive_failures == 0


def test_user_agent_names_the_bot(tmp_path, feeds, store) -> None:
    url = feeds.serve("/a.rss", rss(("x", "https://n.example/1", NOW)))
    settings = dataclasses.replace(settings_for(tmp_path, Source("A", url)), user_agent="newsalert/test")
    sync(store, settings)
    poll(settings, store)
    assert feeds.requests[0][1]["User-Agent"] == "newsalert/test"


def test_plan_alerts_merges_subscriptions_of_one_channel() -> None:
    subs = [
        Subscription("C1", ("csam",)),
        Subscription("C1", ("deepfakes", "unicef")),
        Subscription("C2", ("x",)),
    ]
    assert plan_alerts(["unicef", "csam"], subs) == {"C1": ["unicef", "csam"]}
    assert plan_alerts([], subs) == {}


def test_amp_and_mobile_copies_of_one_page_are_one_alert(tmp_path, feeds, store) -> None:
    a = feeds.serve("/a.rss", rss(("CSAM ring exposed", "https://www.news.example/world/csam-ring", NOW)))
    b = feeds.serve("/b.rss", rss(("CSAM ring exposed", "https://m.news.example/world/csam-ring/amp/", NOW)))
    settings = settings_for(tmp_path, Source("A", a), Source("B", b))
    sync(store, settings)
    poll(settings, store)
    assert [q.channel for q in store.outbox.queued_alerts()] == ["C1"]
    assert store.db["items"].get(2)["duplicate_of"] == 1


def test_a_failing_source_backs_off_and_a_gone_one_is_disabled(tmp_path, feeds, store) -> None:
    flaky = feeds.serve("/flaky.rss", "busy", status=503, headers={"Retry-After": "120"})
    gone = feeds.serve("/gone.rss", "gone", status=410)
    settings = settings_for(tmp_path, Source("flaky", flaky, interval=60), Source("gone", gone))
    sync(store, settings)
    assert poll(settings, store).failed == 2
    row = store.db["sources"].get("flaky")
    retry_at = datetime.fromisoformat(row["next_poll_at"])
    # Never before the server's 120 s; up to 10% later (the source's jitter, bot/ingest/schedule.py).
    assert timedelta(seconds=110) < retry_at - datetime.now(UTC) <= timedelta(seconds=132)
    assert (row["poll_interval"], row["poll_reason"]) == (120, "retry-after")
    assert not store.sources.source_due("flaky", datetime.now(UTC))
    assert [s.name for s in store.catalog.active_sources()] == ["flaky"]  # "gone" is disabled
    assert "410" in store.db["sources"].get("gone")["disabled_reason"]
    before = len(feeds.requests)
    assert poll(settings, store, due_only=True).polled == 0  # backing off: not even fetched
    assert len(feeds.requests) == before
    assert poll(settings, store).polled == 1  # an explicit poll still tries it


def test_a_permanent_redirect_moves_the_source(tmp_path, feeds, store) -> None:
    new = feeds.serve("/new.rss", rss(("CSAM story", "https://n.example/1", NOW)))
    old = feeds.serve("/old.rss", "", status=301, headers={"Location": new})
    settings = settings_for(tmp_path, Source("A", old))
    sync(store, settings)
    assert poll(settings, store).new_items == 1
    assert store.catalog.active_sources()[0].url == new
