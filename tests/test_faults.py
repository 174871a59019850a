"""Issue 15's delivery faults, each reproduced against loopback feeds and the fake Slack.

A flooding source, a Slack outage and its recovery, a refused or rate-limited digest, a newer
database: one bad input never silences or delays anyone else's alerts.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.alerts.outbox import Deliverer, deliver_pending, retry_delay
from bot.alerts.sink import RateLimiter
from bot.ingest.poll import poll
from bot.model import Source
from bot.ops.health import health
from bot.slack.sink import SlackSink
from bot.store import Store
from tests.fake_slack import VALID_TOKEN, FakeSlack
from tests.feed_server import FeedServer
from tests.test_pipeline import rss, settings_for, sync

NOW = datetime.now(UTC)


def unlike(i: int, prefix: str) -> str:
    """A headline sharing no words with the others but the watchlist's: one story each."""
    words = hashlib.sha1(f"{prefix}{i}".encode()).hexdigest()
    return f"CSAM {' '.join(words[n : n + 6] for n in range(0, 30, 6))}"


def fast() -> RateLimiter:
    return RateLimiter(rate=10_000.0, burst=10_000)  # the test is about order, not pace


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "t.db")
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
    waiting = [r["next_attempt_at"] for r in store.db["alerts"].rows if r["next_attempt_at"]]
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
