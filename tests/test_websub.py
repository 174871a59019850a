"""WebSub, in process: bot/ingest/websub.py behind the real HTTP server of `run --http`
(bot/slack/app.py), against the loopback hub of tests/websub_hub.py. The whole bot with Slack
is in tests/test_websub_e2e.py."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app.commands import AppContext
from bot.config import Settings
from bot.ingest.poll import poll
from bot.ingest.websub import CALLBACK_PATH, WebSub, signature_valid
from bot.model import Source, Subscription, Watchlist
from bot.slack.app import create_app, make_server
from bot.store import Store
from tests.websub_hub import WebSubHub

FEED = "<?xml version='1.0'?><rss version='2.0'><channel><title>Wire</title>{items}</channel></rss>"


def item(title: str, guid: str) -> str:
    return f"<item><title>{title}</title><link>https://wire.example/{guid}</link><guid>{guid}</guid></item>"


def wait_for(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Bot:
    """The HTTP server `newsalert run --http` serves, with WebSub on, and what it was pushed."""

    def __init__(self, tmp: Path, topic: str, *, allow_private: bool = True) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.source = Source("Wire", topic, interval=60)
        self.settings = Settings(
            path="test.toml",
            sources=(self.source,),
            watchlists=(Watchlist("csam", "CSAM"),),
            subscriptions=(Subscription("C1", ("csam",)),),
            first_poll_window=None,
            allow_private_sources=allow_private,
            fetch_timeout=1,
            max_response_bytes=64 * 1024,
            db_path=str(tmp / "t.db"),
            slack_token="xoxb-unused",
            slack_signing_secret="unused",
            websub_base_url=f"http://127.0.0.1:{port}",
            websub_lease=3600,
        )
        self.pushed: list[tuple[str, bytes, dict[str, str]]] = []
        self.websub = WebSub(self.settings, lambda *push: self.pushed.append(push))
        ctx = AppContext(self.settings)
        self.server = make_server(
            create_app(ctx),
            ctx,
            host="127.0.0.1",
            port=port,
            scheduler_alive=lambda: True,
            websub=self.websub,
        )
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02})
        self.thread.start()
        with self.store() as store:
            store.catalog.sync_config(
                self.settings.sources,
                self.settings.watchlists,
                self.settings.subscriptions,
                datetime.now(UTC),
            )

    def store(self) -> Store:
        return Store.open(self.settings.db_path)

    def poll(self) -> None:
        with self.store() as store:
            poll(self.settings, store)

    def subscription(self):
        with self.store() as store:
            subs = store.websub.subscriptions()
        return subs[0] if subs else None

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"{self.settings.websub_base_url}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def hub() -> Iterator[WebSubHub]:
    server = WebSubHub(max_lease=3600).start()
    yield server
    server.stop()


@pytest.fixture
def bot(tmp_path: Path, hub: WebSubHub) -> Iterator[Bot]:
    b = Bot(tmp_path, hub.serve_topic("/wire.rss", FEED.format(items=item("Old news", "old"))))
    yield b
    b.stop()


def subscribed(bot: Bot, hub: WebSubHub) -> str:
    """Poll (which finds the hub), subscribe, and wait for the hub's verification: the topic."""
    bot.poll()
    assert bot.websub.maintain() == 1
    topic = bot.source.url
    wait_for(lambda: hub.live(topic), what="the hub to verify the subscription")
    return topic


@pytest.mark.parametrize("method", ["sha1", "sha256", "sha384", "sha512"])
def test_signatures_of_every_method_websub_allows(method: str) -> None:
    body = b"<rss>...</rss>"
    good = f"{method}={hmac.new(b's3cret', body, method).hexdigest()}"
    assert signature_valid("s3cret", body, good)
    assert signature_valid("s3cret", body, good.upper().replace(method.upper(), method))  # hex case
    assert not signature_valid("other", body, good)
    assert not signature_valid("s3cret", body + b" ", good)


def test_signatures_that_are_refused() -> None:
    body = b"x"
    md5 = f"md5={hashlib.md5(body).hexdigest()}"
    for header in (None, "", "sha256", "sha256=", "sha256=zz", md5, f"rot13={'0' * 64}"):
        assert not signature_valid("s3cret", body, header)


def test_the_hub_found_by_polling_is_subscribed_to_and_verified(bot: Bot, hub: WebSubHub) -> None:
    topic = subscribed(bot, hub)
    with bot.store() as store:
        row = store.db["sources"].get("Wire")
    # The hub and the topic came from two separate Link header lines.
    assert (row["websub_hub"], row["websub_topic"]) == (hub.url, topic)
    (request,) = hub.requests
    sub = bot.subscription()
    assert request["hub.mode"] == "subscribe" and request["hub.topic"] == topic
    assert request["hub.callback"] == f"{bot.settings.websub_base_url}{CALLBACK_PATH}{sub.callback}"
    assert request["hub.secret"] == sub.secret and len(sub.secret) == 64
    assert request["hub.lease_seconds"] == "3600"
    assert sub.state == "active" and sub.lease_seconds == 3600
    assert bot.websub.maintain() == 0  # nothing to renew yet


def test_a_signed_push_is_handed_on_and_a_forged_one_is_not(bot: Bot, hub: WebSubHub) -> None:
    topic = subscribed(bot, hub)
    body = FEED.format(items=item("Police find CSAM", "new-1"))
    assert hub.publish(topic, body) == [202]
    ((source, pushed, headers),) = bot.pushed
    assert (source, pushed) == ("Wire", body.encode())
    assert headers["content-type"] == "application/rss+xml"
    for forge in ("secret", "unsigned", "method"):
        # Acknowledged, as WebSub requires, and dropped: nothing is handed on to be stored.
        assert hub.publish(topic, FEED.format(items=item(f"Forged {forge}", forge)), forge=forge) == [202]
    assert len(bot.pushed) == 1


def test_the_callback_echoes_only_its_own_pending_or_known_subscriptions(bot: Bot, hub: WebSubHub) -> None:
    topic = subscribed(bot, hub)
    sub = bot.subscription()
    ask = (
        f"{CALLBACK_PATH}{sub.callback}?hub.mode=subscribe&hub.challenge=abc&hub.lease_seconds=60&hub.topic="
    )
    assert bot.get(ask + "https%3A%2F%2Fother.example%2Ffeed") == (404, b"unknown subscription")
    assert bot.get(f"{CALLBACK_PATH}nope?hub.mode=subscribe&hub.challenge=abc&hub.topic={topic}")[0] == 404
    unsubscribe = f"{CALLBACK_PATH}{sub.callback}?hub.mode=unsubscribe&hub.challenge=abc&hub.topic={topic}"
    assert bot.get(unsubscribe)[0] == 404  # nobody asked to unsubscribe
    assert bot.get(f"{CALLBACK_PATH}{sub.callback}?hub.mode=subscribe&hub.topic={topic}")[0] == 400
    assert bot.subscription().state == "active"
    # A push to a callback nobody holds: 410, so the hub drops it.
    request = urllib.request.Request(f"{bot.settings.websub_base_url}{CALLBACK_PATH}nope", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(request, timeout=5)
    assert gone.value.code == 410


def test_a_lease_is_renewed_before_it_runs_out(tmp_path: Path) -> None:
    hub = WebSubHub(max_lease=2).start()
    bot = Bot(tmp_path, hub.serve_topic("/wire.rss", FEED.format(items="")))
    try:
        topic = subscribed(bot, hub)
        first = bot.subscription()
        assert first.lease_seconds == 2
        # Upkeep runs every second in `run`; here, as often as the test likes, until two renewals.
        wait_for(
            lambda: bot.websub.maintain() >= 0 and len(hub.verified(topic)) >= 3 and time.sleep(0.05) is None,
            what="two renewals of the lease",
        )
        renewals = hub.verified(topic)
        assert len(renewals) >= 2  # renewed (half-way through so short a lease), not resubscribed
        assert {v.callback for v in renewals} == {renewals[0].callback}
        assert hub.lapses(topic) == 0  # each verified before the lease it renews ran out
        assert hub.live(topic)  # past the first lease's end, still subscribed
        renewed = bot.subscription()
        assert renewed.state == "active" and renewed.expires_at > first.expires_at
        assert hub.publish(topic, FEED.format(items=item("CSAM", "after-renewal"))) == [202]
        assert len(bot.pushed) == 1
    finally:
        bot.stop()
        hub.stop()


def test_a_denied_subscription_is_retried_later(bot: Bot, hub: WebSubHub) -> None:
    subscribed(bot, hub)
    sub = bot.subscription()
    assert hub.deny(bot.source.url, bot.websub.callback_url(sub.callback), "no thanks") == 200
    denied = bot.subscription()
    assert denied.state == "denied" and "no thanks" in denied.last_error
    assert denied.retry_at is not None and denied.retry_at > datetime.now(UTC) + timedelta(minutes=4)
    with bot.store() as store:
        assert store.websub.live_sources(datetime.now(UTC)) == set()
    assert bot.websub.maintain() == 0


def test_a_source_that_stops_advertising_its_hub_is_unsubscribed(bot: Bot, hub: WebSubHub) -> None:
    topic = subscribed(bot, hub)
    hub.topics.pop("/wire.rss")  # the publisher's feed moves to a server with no hub
    bot.source = Source("Wire", hub.serve_topic("/plain.rss", FEED.format(items="")), interval=60)
    with bot.store() as store:
        store.db.execute("UPDATE sources SET websub_hub = NULL, websub_topic = NULL")
    assert bot.websub.maintain() == 1
    wait_for(lambda: hub.verified(topic, "unsubscribe"), what="the hub to verify the unsubscription")
    wait_for(lambda: bot.subscription() is None, what="the subscription to go")
    assert not hub.live(topic)


def test_a_hub_on_a_private_address_is_refused(tmp_path: Path, hub: WebSubHub) -> None:
    topic = hub.serve_topic("/wire.rss", FEED.format(items=""))
    bot = Bot(tmp_path, topic, allow_private=False)
    try:
        with bot.store() as store:
            store.db.execute("UPDATE sources SET websub_hub = ?, websub_topic = ?", [hub.url, topic])
        assert bot.websub.maintain() == 1
        sub = bot.subscription()
        assert sub.state == "failed" and "blocked" in sub.last_error and "loopback" in sub.last_error
        assert hub.requests == []
    finally:
        bot.stop()


def test_pushed_bodies_are_bounded_in_size_and_time(bot: Bot, hub: WebSubHub) -> None:
    subscribed(bot, hub)
    url = bot.websub.callback_url(bot.subscription().callback)
    big = urllib.request.Request(url, data=b"x" * (bot.settings.max_response_bytes + 1))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(big, timeout=5)
    assert refused.value.code == 413
    host, port = bot.server.server_address[:2]
    path = url.split(str(port), 1)[1]
    with socket.create_connection((host, port), timeout=10) as slow:
        # Says 1,000 bytes, sends 10 and stalls: answered 408 after fetch_timeout (1 s).
        slow.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode() + b"0123456789"
        )
        answer = slow.recv(200)
    assert answer.startswith(b"HTTP/1.0 408")
    assert bot.pushed == []
