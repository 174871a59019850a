"""Issue 15's delivery faults, each reproduced against loopback feeds and the fake Slack.

A flooding source, a Slack outage and its recovery, a refused or rate-limited digest, a newer
database: one bad input never silences or delays anyone else's alerts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.alerts.digest import send_digest
from bot.alerts.outbox import Deliverer, deliver_pending, retry_delay
from bot.alerts.sink import ConsoleSink, RateLimiter
from bot.ingest.poll import poll
from bot.model import Item, Source, Span, Subscription, Watchlist
from bot.ops.health import health, healthz
from bot.slack.sink import SlackSink
from bot.store import Store
from bot.store.rows import subscription_id
from tests.conftest import rss, run_newsalert, settings_for, sync, write_config
from tests.fake_slack import VALID_TOKEN, FakeSlack
from tests.feed_server import FeedServer
from tests.store_checks import story_of, table_rows

NOW = datetime.now(UTC)


def unlike(i: int, prefix: str) -> str:
    """A headline sharing no words with the others but the watchlist's: one story each."""
    words = hashlib.sha1(f"{prefix}{i}".encode()).hexdigest()
    return f"CSAM {' '.join(words[n : n + 6] for n in range(0, 30, 6))}"


def fast() -> RateLimiter:
    return RateLimiter(rate=10_000.0, burst=10_000)  # the test is about order, not pace


@pytest.fixture
def store(db_target: str):
    s = Store.open(db_target)
    yield s
    s.close()


def test_a_flooding_source_is_summarised_and_cannot_delay_another_sources_alert(
    tmp_path, feeds: FeedServer, store: Store, slack: FakeSlack
) -> None:
    flood = feeds.serve(
        "/flood.rss",
        rss(*((unlike(i, "f"), f"https://flood.example/{i}", NOW) for i in range(500))),
    )
    other = feeds.serve("/other.rss", rss(("CSAM ring arrested in Lyon", "https://other.example/1", NOW)))
    settings = dataclasses.replace(
        settings_for(tmp_path, Source("Flood", flood), Source("Other", other)),
        max_response_bytes=4 * 1024 * 1024,
    )
    sync(store, settings)
    report = poll(settings, store)
    assert report.summarised == 480
    delivered = Deliverer(store, SlackSink(VALID_TOKEN, slack.url, timeout=5), limiter=fast()).run()
    posts = slack.top_level("C1")
    assert delivered.sent == len(posts) == 22  # 20 of the flood, its summary, and the other one
    texts = [p["text"] for p in posts]
    assert any("Lyon" in t for t in texts[:3])  # not 501st in line
    summary = [t for t in texts if "more matching items" in t]
    assert summary == [
        'Source *Flood* published 480 more matching items: see `/newsalert search source:"Flood" since:1h`'
    ]
    verdict = health(store)
    assert verdict.floods == (("Flood", "C1", 480),)
    assert 'source "Flood" flooded channel C1' in " ".join(verdict.notes)


def test_after_an_outage_a_successful_slack_call_sends_waiting_alerts_at_once(
    tmp_path, feeds: FeedServer, store: Store
) -> None:
    url = feeds.serve("/a.rss", rss(*((unlike(i, "a"), f"https://a.example/{i}", NOW) for i in range(5))))
    settings = settings_for(tmp_path, Source("A", url))
    sync(store, settings)
    poll(settings, store)
    gone = FakeSlack().start()
    gone.stop()  # the outage: nothing answers on that port
    report = deliver_pending(store, SlackSink(VALID_TOKEN, gone.url, timeout=2), limiter=fast())
    assert report.sent == 0 and report.queued == 5
    waiting = [r["next_attempt_at"] for r in table_rows(store, "alerts") if r["next_attempt_at"]]
    assert waiting and all(datetime.fromisoformat(w) > datetime.now(UTC) for w in waiting)
    back = FakeSlack().start()
    try:
        up = SlackSink(VALID_TOKEN, back.url, timeout=5)
        up.check_auth()  # what `poll --once` does first, right after Slack recovers
        report = deliver_pending(store, up, limiter=fast())
        assert (report.sent, report.queued) == (5, 0)
        assert len(back.top_level("C1")) == 5
    finally:
        back.stop()


def test_the_outage_backoff_is_capped_at_two_minutes() -> None:
    assert [retry_delay(n).total_seconds() for n in (0, 1, 4, 5, 30)] == [5, 10, 80, 120, 120]


# --- digests ------------------------------------------------------------------------------------

DIGEST_SUB = Subscription("C1", ("csam",), "digest", "daily 09:00", "UTC")


def digest_store(path: Path | str, created: datetime) -> Store:
    store = Store.open(path)
    store.catalog.sync_config([], [Watchlist("csam", "CSAM")], [DIGEST_SUB], created)
    return store


def add_story(store: Store, n: int, seen: datetime, url: str = "") -> int:
    item = Item(
        "S", f"g{n}", url or f"https://n.example/{n}", f"CSAM story {n}", "Police found CSAM.", seen, seen
    )
    with store.transaction():
        item_id = store.items.add_item(item, story_id=store.stories.new_story(seen))
        store.items.add_matches(item_id, {"csam": [Span("title", 0, 4, "csam")]})
    return story_of(store, item_id)


def test_an_item_stored_in_the_second_the_subscription_was_made_is_in_the_first_digest(tmp_path) -> None:
    created = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
    store = digest_store(tmp_path / "d.db", created)
    story = add_story(store, 1, created + timedelta(milliseconds=300))  # the same second
    sid = subscription_id(DIGEST_SUB)
    assert [s.story_id for s in send_digest(store, ConsoleSink(io.StringIO()), sid, created).stories] == [
        story
    ]
    store.close()


def test_polls_and_digest_sends_at_once_put_every_story_in_exactly_one_digest(db_target: str) -> None:
    path = db_target
    digest_store(path, datetime.now(UTC) - timedelta(seconds=5)).close()
    sid = subscription_id(DIGEST_SUB)
    written: list[int] = []
    digested: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(first: int) -> None:
        try:
            with Store.open(path) as store:
                for n in range(first, first + 150):
                    written.append(add_story(store, n, datetime.now(UTC)))
        except BaseException as e:  # reported by the test, not lost in the thread
            errors.append(e)

    def sender() -> None:
        try:
            with Store.open(path) as store:
                while not stop.is_set():
                    # Digests built in the same second as the writes: the case times could not order.
                    digest = send_digest(store, ConsoleSink(io.StringIO()), sid, datetime.now(UTC))
                    digested.extend(s.story_id for s in digest.stories)
        except BaseException as e:
            errors.append(e)

    writers = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(2)]
    senders = [threading.Thread(target=sender) for _ in range(2)]
    for t in writers + senders:
        t.start()
    for t in writers:
        t.join(timeout=120)
    stop.set()
    for t in senders:
        t.join(timeout=120)
    assert errors == []
    with Store.open(path) as store:
        digested.extend(
            s.story_id for s in send_digest(store, ConsoleSink(io.StringIO()), sid, datetime.now(UTC)).stories
        )
    assert len(written) == 300
    assert sorted(digested) == sorted(written)  # each once: none lost, none twice


def test_a_digest_slack_refuses_is_re_rendered_within_limits_and_sent(tmp_path, slack: FakeSlack) -> None:
    created = datetime.now(UTC) - timedelta(hours=1)
    store = digest_store(tmp_path / "d.db", created)
    long_link = "https://n.example/q?" + "&".join(f"a{n}=b" for n in range(500))  # ~2,000 characters
    add_story(store, 1, created + timedelta(minutes=1), url=long_link)
    add_story(store, 2, created + timedelta(minutes=2))
    sid = subscription_id(DIGEST_SUB)
    digest = send_digest(store, SlackSink(VALID_TOKEN, slack.url, timeout=5), sid, datetime.now(UTC))
    assert len(digest.stories) == 2
    (posted,) = slack.top_level("C1")
    text = json.dumps(posted["blocks"])
    assert "CSAM story 1" in text and "CSAM story 2" in text and long_link[:60] not in text
    assert [r["status"] for r in store.db["digests"].rows] == ["sent"]
    # Slack refused the first rendering (the case this reproduces), and only that one.
    assert len(slack.refused) == 1 and "section text" in slack.refused[0]
    slack.refused.clear()
    store.close()


def test_a_digest_refused_even_as_plain_text_does_not_stay_sending(tmp_path, slack: FakeSlack) -> None:
    created = datetime.now(UTC) - timedelta(hours=1)
    store = digest_store(tmp_path / "d.db", created)
    add_story(store, 1, created + timedelta(minutes=1))
    for _ in range(3):
        slack.fail_next("chat.postMessage", error="invalid_blocks")
    sid = subscription_id(DIGEST_SUB)
    send_digest(store, SlackSink(VALID_TOKEN, slack.url, timeout=5), sid, datetime.now(UTC))
    assert [r["status"] for r in store.db["digests"].rows] == ["failed"]
    assert store.digests.unfinished_digest(sid) is None
    store.close()


def test_a_rate_limited_digest_waits_and_is_sent_in_the_same_run(tmp_path, slack: FakeSlack) -> None:
    created = datetime.now(UTC) - timedelta(hours=1)
    store = digest_store(tmp_path / "d.db", created)
    add_story(store, 1, created + timedelta(minutes=1))
    slack.rate_limit("C1", retry_after=1, times=2)
    waits: list[float] = []
    sid = subscription_id(DIGEST_SUB)
    send_digest(
        store, SlackSink(VALID_TOKEN, slack.url, timeout=5), sid, datetime.now(UTC), sleep=waits.append
    )
    assert waits.count(1.0) == 2
    assert len(slack.top_level("C1")) == 1
    assert [r["status"] for r in store.db["digests"].rows] == ["sent"]
    store.close()


# --- the database -------------------------------------------------------------------------------


def feed_config(tmp_path: Path, feeds: FeedServer) -> Path:
    url = feeds.serve("/a.rss", rss(("CSAM ring arrested in Lyon", "https://n.example/lyon", NOW)))
    return write_config(
        tmp_path / "newsalert.toml",
        defaults={"allow_private_sources": True},
        sources=[{"name": "A", "url": url}],
        watchlists={"csam": "CSAM"},
        subscriptions=[{"channel": "C0000000001", "watchlists": ["csam"]}],
    )


def newer_schema(db: Path) -> None:
    """What a newer newsalert leaves: a migration this one does not know, and a column it cannot fill."""
    with Store.open(db) as store:
        store.db["alerts"].add_column("priority", str)
        store.db["alerts"].transform(not_null={"priority"})
        store.db.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
            " VALUES ('newsalert', 'm099_x', '')"
        )
        store.db.conn.commit()


def test_a_database_migrated_by_a_newer_version_is_refused(tmp_path, feeds: FeedServer) -> None:
    db = tmp_path / "t.db"
    newer_schema(db)
    config = feed_config(tmp_path, feeds)
    result = run_newsalert("poll", "--once", config=config, db=db)
    assert result.returncode == 3, result.stderr
    assert (
        "migrated by a newer newsalert (m099_x)" in result.stderr and "--allow-newer-schema" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_an_alert_that_cannot_be_stored_fails_the_poll_and_loses_nothing(tmp_path, feeds: FeedServer) -> None:
    db = tmp_path / "t.db"
    newer_schema(db)
    config = feed_config(tmp_path, feeds)
    result = run_newsalert("poll", "--once", "--allow-newer-schema", config=config, db=db)
    assert result.returncode == 3, result.stderr
    assert "database error" in result.stderr and "NOT NULL" in result.stderr
    assert "Traceback" not in result.stderr
    with Store.open_readonly(db) as store:  # the item was not kept without its alert: it alerts later
        assert store.count("items") == 0


def test_a_database_error_mid_poll_is_one_line_not_a_traceback(tmp_path, feeds: FeedServer) -> None:
    db = tmp_path / "t.db"
    with Store.open(db) as store:  # every write to items now fails, as on a full disk
        store.db.execute(
            "CREATE TRIGGER full BEFORE INSERT ON items"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
        store.db.conn.commit()
    result = run_newsalert("poll", "--once", config=feed_config(tmp_path, feeds), db=db)
    assert result.returncode == 3, result.stderr
    assert "database or disk is full" in result.stderr and "Traceback" not in result.stderr


def test_a_watchlist_that_cannot_compile_is_disabled_and_the_others_alert(
    tmp_path, feeds: FeedServer, store: Store
) -> None:
    url = feeds.serve("/a.rss", rss(("CSAM ring arrested in Lyon", "https://n.example/lyon", NOW)))
    settings = settings_for(tmp_path, Source("A", url))
    sync(store, settings)
    # Stored by an older version or a bad edit: a query the compiler cannot take.
    store.db.execute(
        "UPDATE watchlists SET query = ? WHERE name = 'deepfakes'", ["(" * 5000 + "x" + ")" * 5000]
    )
    store.db.conn.commit()
    report = poll(settings, store)
    assert report.alerts_queued == 1  # csam still alerts
    verdict = health(store)
    assert verdict.needs_human
    assert any(p.startswith('watchlist "deepfakes" disabled') for p in verdict.problems)
    db = store.path  # the store's own file or PostgreSQL database
    assert db is not None
    result = run_newsalert("status", env={"NEWSALERT_DB": db})
    assert result.returncode == 1 and 'watchlist "deepfakes" disabled' in result.stdout
    assert healthz(db, scheduler_alive=True)[0] == 503


def test_the_console_is_not_paced_like_slack(tmp_path, feeds: FeedServer, store: Store) -> None:
    """Point 10: without a token, a poll of 300 alerts prints them at once instead of over minutes."""
    url = feeds.serve("/many.rss", rss(*((unlike(i, "c"), f"https://c.example/{i}", NOW) for i in range(30))))
    settings = settings_for(tmp_path, Source("Many", url))
    sync(store, settings)
    poll(settings, store)
    slept: list[float] = []
    limiter = RateLimiter(sleep=slept.append)  # Slack's pace: one post per 1.1 s per channel
    out = io.StringIO()
    report = Deliverer(store, ConsoleSink(out), limiter=limiter).run()
    # 20 alerts and the flood summary; a paced sink would wait 1.1 s before each after the first.
    assert report.sent == 21 and slept == []
