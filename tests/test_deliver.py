"""Delivery against the fake Slack Web API over loopback: outbox, retries, claims, dead letters."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.alerts.outbox import Deliverer, deliver_pending
from bot.alerts.sink import ConsoleSink, RateLimiter
from bot.errors import SlackAuthError
from bot.model import Item, Span, Subscription
from bot.slack.sink import SlackSink
from bot.store import Store
from tests.conftest import alert
from tests.fake_slack import VALID_TOKEN, FakeSlack
from tests.store_checks import broken_subscriptions, row, sync_subscriptions, table_rows

NOW = datetime(2026, 2, 5, 18, 0, tzinfo=UTC)


@pytest.fixture
def store(db_target: str):
    s = Store.open(db_target)
    yield s
    s.close()


def queue(store: Store, n: int, channel: str = "C1", prefix: str = "g") -> list[int]:
    ids = []
    for i in range(n):
        item = Item(
            source="S",
            guid=f"{prefix}{i}",
            url=f"https://n.example/{prefix}{i}",
            title=f"CSAM story {i}",
            text=f"Police found CSAM in case {i}. Nothing else.",
            published=NOW,
            fetched=NOW,
        )
        item_id = store.items.add_item(item, story_id=store.stories.new_story(NOW))
        store.items.add_matches(item_id, {"csam": [Span("text", 13, 17, "csam")]})
        store.outbox.enqueue_alert(item_id, channel, ["csam"], NOW)
        ids.append(item_id)
    return ids


def sink(slack: FakeSlack, timeout: int = 5) -> SlackSink:
    return SlackSink(VALID_TOKEN, slack.url, timeout=timeout)


def status(store: Store) -> list[str]:
    return [r["status"] for r in table_rows(store, "alerts")]


def later(minutes: float):
    return lambda: datetime.now(UTC) + timedelta(minutes=minutes)


def test_alerts_are_posted_once_with_ts_and_metadata(store, slack) -> None:
    queue(store, 2)
    report = deliver_pending(store, sink(slack))
    assert report.sent == 2
    posts = slack.posts()
    assert len(posts) == 2
    assert "*CSAM*" in json.dumps(posts[0]["blocks"])
    assert posts[0]["metadata"]["event_type"] == "newsalert_alert"
    assert posts[0]["metadata"]["event_payload"]["alert_id"] == 1
    assert deliver_pending(store, sink(slack)).sent == 0
    assert len(slack.posts()) == 2
    rows = list(table_rows(store, "alerts"))
    assert [r["ts"] for r in rows] == [m["ts"] for m in slack.top_level("C1")]
    assert all(r["status"] == "sent" for r in rows)


def test_enqueueing_twice_is_ignored(store) -> None:
    queue(store, 1)
    assert store.outbox.enqueue_alert(1, "C1", ["csam"], NOW) is False
    assert store.count("alerts") == 1


def test_a_short_rate_limit_waits_for_that_channel_only(store, slack) -> None:
    queue(store, 2, "C1")
    queue(store, 1, "C2", prefix="other")
    slack.rate_limit("C1", retry_after=1)
    report = deliver_pending(store, sink(slack))
    assert report.sent == 3
    order = [(p["channel"], p["text"].split(" —")[0]) for p in slack.posts()]
    # C2 went while C1 waited; C1 kept its own order.
    assert order == [("C2", "CSAM story 0"), ("C1", "CSAM story 0"), ("C1", "CSAM story 1")]


def test_a_long_rate_limit_leaves_the_channel_queued(store, slack) -> None:
    queue(store, 2, "C1")
    queue(store, 1, "C2", prefix="other")
    slack.rate_limit("C1", retry_after=120)
    report = deliver_pending(store, sink(slack))
    assert (report.sent, report.queued) == (1, 2)
    assert [p["channel"] for p in slack.posts()] == ["C2"]
    first = row(store, "alerts", 1)
    assert first["status"] == "queued" and first["in_flight"] == 0
    assert datetime.fromisoformat(first["next_attempt_at"]) > datetime.now(UTC) + timedelta(seconds=100)
    assert deliver_pending(store, sink(slack)).sent == 0  # not before Retry-After
    assert deliver_pending(store, sink(slack), now=later(3)).sent == 2


def test_server_errors_back_off_and_keep_the_alert(store, slack) -> None:
    queue(store, 1)
    slack.fail_next("chat.postMessage", status=503, error="service_unavailable")
    assert deliver_pending(store, sink(slack)).queued == 1
    alert_row = row(store, "alerts", 1)
    assert alert_row["in_flight"] == 0 and alert_row["last_error"].startswith("Slack HTTP 503")
    assert deliver_pending(store, sink(slack)).sent == 0  # backing off
    assert deliver_pending(store, sink(slack), now=later(1)).sent == 1


def test_an_outage_keeps_alerts_and_the_next_attempt_checks_before_posting(store, slack) -> None:
    queue(store, 1)
    dead = SlackSink(VALID_TOKEN, "http://127.0.0.1:9/api/", timeout=2)  # nothing listens on port 9
    assert deliver_pending(store, dead).queued == 1
    assert row(store, "alerts", 1)["in_flight"] == 1  # no answer: it might have been posted
    assert deliver_pending(store, sink(slack), now=later(1)).sent == 1
    methods = [c.method for c in slack.calls]
    assert methods.index("conversations.history") < methods.index("chat.postMessage")
    assert len(slack.posts()) == 1


def test_a_post_whose_answer_was_lost_is_adopted_not_posted_again(store, slack) -> None:
    queue(store, 1)
    slack.slow("chat.postMessage", 3)  # Slack posts it, but the answer comes after our timeout
    report = deliver_pending(store, sink(slack, timeout=1))
    assert report.sent == 0 and row(store, "alerts", 1)["in_flight"] == 1
    report = deliver_pending(store, sink(slack), now=later(1))
    assert (report.sent, report.adopted) == (1, 1)
    assert len(slack.posts()) == 1  # exactly one message in Slack
    (message,) = slack.top_level("C1")
    assert row(store, "alerts", 1)["ts"] == message["ts"]


def test_channel_errors_dead_letter_and_mark_the_subscription_broken(store, slack) -> None:
    sync_subscriptions(store, [Subscription("C1", ("csam",))], NOW)
    queue(store, 2)
    slack.not_member.add("C1")
    report = deliver_pending(store, sink(slack))
    assert report.failed == 1 and report.queued == 1  # the rest of the channel waits; no endless retries
    assert broken_subscriptions(store) == [("C1", "not_in_channel")]
    assert deliver_pending(store, sink(slack), now=later(60)).failed == 1
    assert status(store) == ["dead", "dead"]
    slack.not_member.clear()  # someone invited the bot
    assert store.outbox.retry_dead_alerts() == 2
    assert broken_subscriptions(store) == []
    assert deliver_pending(store, sink(slack)).sent == 2


def test_rejected_blocks_are_sent_once_as_plain_text(store, slack) -> None:
    queue(store, 1)
    slack.reject_blocks = True
    assert deliver_pending(store, sink(slack)).sent == 1
    (post,) = slack.posts()
    assert "blocks" not in post or not post["blocks"]
    assert "CSAM story 0" in post["text"] and "*CSAM*" in post["text"]
    assert row(store, "alerts", 1)["plain_text"] == 1


def test_plain_text_rejected_too_is_a_dead_letter(store, slack) -> None:
    queue(store, 1)
    slack.reject_blocks = True
    slack.fail_next("chat.postMessage", error="invalid_blocks")
    slack.fail_next("chat.postMessage", error="msg_too_long")
    for minutes in (0, 10, 30):
        deliver_pending(store, sink(slack), now=later(minutes))
    assert status(store) == ["dead"]
    assert not slack.posts()


def test_auth_failure_stops_delivery_and_keeps_alerts(store, slack) -> None:
    queue(store, 2)
    bad = SlackSink("xoxb-wrong", slack.url, timeout=5)
    with pytest.raises(SlackAuthError, match="invalid_auth"):
        deliver_pending(store, bad)
    assert store.count("alerts", "status = 'queued'") == 2
    with pytest.raises(SlackAuthError):
        bad.check_auth()


def test_a_channel_claimed_by_a_live_worker_is_left_alone(store, slack) -> None:
    queue(store, 1)
    assert store.outbox.claim_channel("C1", "other-host:1:abc", datetime.now(UTC), stale_before=NOW)
    report = deliver_pending(store, sink(slack))
    assert report.sent == 0 and "C1" in report.waiting_channels
    assert not slack.posts()


def test_a_claim_left_by_a_dead_process_is_taken_over(store, slack) -> None:
    import socket
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    holder = f"{socket.gethostname()}:{gone.stdout.strip()}:abc"
    queue(store, 1)
    assert store.outbox.claim_channel("C1", holder, datetime.now(UTC), stale_before=NOW)
    assert deliver_pending(store, sink(slack)).sent == 1


def test_console_sink_prints_the_alert(store) -> None:
    queue(store, 1)
    out = io.StringIO()
    assert deliver_pending(store, ConsoleSink(out)).sent == 1
    assert "CSAM story 0" in out.getvalue()


def test_rate_limiter_allows_a_burst_then_one_per_second() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    limiter = RateLimiter(rate=1.0, burst=3, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        limiter.wait("C1")
    limiter.wait("C2")
    assert slept == [pytest.approx(1.0), pytest.approx(1.0)]


def test_deliverer_renders_replies_in_the_story_thread(store, slack) -> None:
    story = store.stories.new_story(NOW)
    for n, outlet in enumerate(["Reuters", "AP"]):
        item = Item(
            source=outlet,
            guid=f"s{n}",
            url=f"https://{outlet}.example/x",
            title=f"UNICEF story {n}",
            text="UNICEF said.",
            published=NOW,
            fetched=NOW,
        )
        store.outbox.enqueue_alert(store.items.add_item(item, story_id=story), "C1", ["unicef"], NOW)
    assert Deliverer(store, sink(slack)).run().sent == 2
    (parent,) = slack.top_level("C1")
    (reply,) = slack.replies("C1", parent["ts"])
    assert reply["text"].startswith("Also reported by AP")
    assert "*2 sources*" in json.dumps(parent["blocks"])


def test_channels_are_delivered_in_parallel_each_in_its_own_order(store, slack) -> None:
    for channel in ("C1", "C2", "C3"):
        queue(store, 3, channel, prefix=channel)
    slack.slow("chat.postMessage", 0.2, times=9)
    report = deliver_pending(store, sink(slack))
    assert report.sent == 9 and report.queued == 0
    assert slack.max_in_flight >= 2  # more than one channel's post was being answered at once
    for channel in ("C1", "C2", "C3"):
        titles = [m["text"].split(" —")[0] for m in slack.top_level(channel)]
        assert titles == ["CSAM story 0", "CSAM story 1", "CSAM story 2"]
    assert len(slack.posts()) == 9


def test_chat_update_is_paced_per_channel_and_retried_on_a_server_error(slack: FakeSlack) -> None:
    slept: list[float] = []
    clock = [100.0]
    s = sink(slack)
    s.update_pace = RateLimiter(rate=1 / 1.2, clock=lambda: clock[0], sleep=slept.append)
    parents = {channel: alert(channel=channel) for channel in ("C1", "C2")}
    posted = {channel: s.post(parent) for channel, parent in parents.items()}
    for _ in range(3):
        s.update(parents["C1"], posted["C1"])
    s.update(parents["C2"], posted["C2"])
    assert len(slept) == 2 and all(d > 1.0 for d in slept)  # C1's 2nd and 3rd waited; C2 did not
    # chat.update is idempotent: a 500 is retried by the client, and the update goes through.
    before = len(slack.updates())
    slack.fail_next("chat.update", status=500)
    s.update(parents["C2"], posted["C2"])
    assert len(slack.updates()) == before + 1


@pytest.mark.parametrize(
    ("copy", "folded"),
    [
        ("Meta sues maker of CrushAI nudify app", True),  # a news-search copy of the lead headline
        ("UPDATE 1-Meta sues the maker of CrushAI 'nudify' app", True),
        ("Facebook parent files lawsuit against developer of AI undressing apps", False),
        ("Meta takes Hong Kong firm to court over 'nudify' app adverts", False),
    ],
)
def test_a_copy_whose_headline_says_nothing_new_is_folded_into_the_parent(
    store, slack, copy: str, folded: bool
) -> None:
    story = store.stories.new_story(NOW)
    for n, (source, title) in enumerate([("Reuters", "Meta sues maker of CrushAI nudify app"), ("AP", copy)]):
        item = Item(source, f"g{n}", f"https://{source.lower()}.example/{n}", title, "", NOW, NOW)
        item_id = store.items.add_item(item, story_id=story)
        store.items.add_matches(
            item_id, {"deepfakes": [Span("title", title.find("nudify"), title.find("nudify") + 6, "nudif*")]}
        )
        store.outbox.enqueue_alert(item_id, "C1", ["deepfakes"], NOW)
    report = deliver_pending(store, sink(slack))
    assert (report.sent, report.folded) == (2, int(folded))
    assert len(slack.top_level("C1")) == 1
    assert len(slack.posts()) == (1 if folded else 2)  # the reply, unless folded
    (update,) = slack.updates()
    assert "2 sources" in json.dumps(update) and "AP" in json.dumps(update)
    assert status(store) == ["sent", "sent"]  # folded is delivered: counted on the parent
    assert deliver_pending(store, sink(slack)).sent == 0
