"""Delivery against the fake Slack Web API over loopback."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from bot.deliver import ConsoleSink, SlackSink, deliver_pending
from bot.errors import SlackAuthError
from bot.model import Item, Span
from bot.store import Store
from tests.fake_slack import VALID_TOKEN, FakeSlack

NOW = datetime(2026, 2, 5, 18, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "t.db")
    yield s
    s.close()


def queue(store: Store, n: int, channel: str = "C1") -> None:
    for i in range(n):
        item = Item(
            source="S",
            guid=f"g{i}",
            url=f"https://n.example/{i}",
            title=f"CSAM story {i}",
            text=f"Police found CSAM in case {i}. Nothing else.",
            published=NOW,
            fetched=NOW,
        )
        item_id = store.add_item(item, story_id=store.new_story(NOW))
        store.add_matches(item_id, {"csam": [Span("text", 13, 17, "csam")]})
        store.enqueue_alert(item_id, channel, ["csam"], NOW)


def sink(slack: FakeSlack) -> SlackSink:
    return SlackSink(VALID_TOKEN, slack.url, timeout=5)


def test_alerts_are_posted_once_with_ts_recorded(store, slack) -> None:
    queue(store, 2)
    report = deliver_pending(store, sink(slack))
    assert report.sent == 2
    assert len(slack.posts()) == 2
    assert "*CSAM*" in str(slack.posts()[0]["blocks"])
    assert deliver_pending(store, sink(slack)).sent == 0
    assert len(slack.posts()) == 2
    rows = list(store.db["alerts"].rows)
    assert all(r["status"] == "sent" and r["ts"].startswith("1770000000.") for r in rows)


def test_enqueueing_twice_is_ignored(store) -> None:
    queue(store, 1)
    assert store.enqueue_alert(1, "C1", ["csam"], NOW) is False
    assert store.count("alerts") == 1


def test_rate_limit_keeps_the_alert_queued_for_the_next_round(store, slack) -> None:
    queue(store, 2, "C1")
    queue_other = Item(
        source="S",
        guid="other",
        url="https://n.example/o",
        title="CSAM other",
        text="",
        published=NOW,
        fetched=NOW,
    )
    store.enqueue_alert(store.add_item(queue_other, story_id=store.new_story(NOW)), "C2", ["csam"], NOW)
    slack.fail_next("chat.postMessage", status=429, error="ratelimited", headers={"Retry-After": "1"})
    report = deliver_pending(store, sink(slack))
    # C1 waits (both its alerts, in order); C2 is not held back by C1's limit
    assert (report.sent, report.queued) == (1, 2)
    assert [p["channel"] for p in slack.posts()] == ["C2"]
    report = deliver_pending(store, sink(slack))
    assert report.sent == 2
    assert [p["text"].split("] ")[1].split(" —")[0] for p in slack.posts()[1:]] == [
        "CSAM story 0",
        "CSAM story 1",
    ]


def test_server_errors_and_outages_leave_alerts_queued(store, slack) -> None:
    queue(store, 1)
    slack.fail_next("chat.postMessage", status=503, error="service_unavailable")
    assert deliver_pending(store, sink(slack)).queued == 1
    dead = SlackSink(VALID_TOKEN, "http://127.0.0.1:9/api/", timeout=2)  # nothing listens on port 9
    assert deliver_pending(store, dead).queued == 1
    assert deliver_pending(store, sink(slack)).sent == 1


def test_channel_errors_give_up_without_endless_retries(store, slack) -> None:
    queue(store, 1)
    slack.fail_next("chat.postMessage", error="channel_not_found")
    report = deliver_pending(store, sink(slack))
    assert report.failed == 1
    assert deliver_pending(store, sink(slack)).sent == 0
    assert store.db["alerts"].get(1)["last_error"] == "channel_not_found"


def test_other_rejections_are_retried_a_few_times(store, slack) -> None:
    queue(store, 1)
    for _ in range(3):
        slack.fail_next("chat.postMessage", error="invalid_blocks")
    assert deliver_pending(store, sink(slack)).queued == 1
    assert deliver_pending(store, sink(slack)).queued == 1
    assert deliver_pending(store, sink(slack)).failed == 1


def test_auth_failure_stops_delivery_and_keeps_alerts(store, slack) -> None:
    queue(store, 2)
    bad = SlackSink("xoxb-wrong", slack.url, timeout=5)
    with pytest.raises(SlackAuthError, match="invalid_auth"):
        deliver_pending(store, bad)
    assert store.count("alerts", "status = 'queued'") == 2
    with pytest.raises(SlackAuthError):
        bad.check_auth()


def test_console_sink_prints_the_alert(store) -> None:
    queue(store, 1)
    out = io.StringIO()
    assert deliver_pending(store, ConsoleSink(out)).sent == 1
    assert "CSAM story 0" in out.getvalue()
