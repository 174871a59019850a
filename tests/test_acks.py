"""Acks and the HTTP server under load: slow Slack answers and slow clients cost only themselves.

The app runs in this process (the real Bolt app and HTTP server of `run --http`), its Web API is
tests/fake_slack.py, and requests are signed as Slack signs them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.app import triage
from bot.app.context import AppContext
from bot.config import load_settings
from bot.model import Subscription, Watchlist
from bot.slack import app as slack_app
from bot.slack.listeners import events
from bot.store import Store
from tests.conftest import write_config
from tests.fake_slack import VALID_TOKEN, FakeSlack

SECRET = "0123456789abcdef0123456789abcdef"
CHANNELS = [f"C00000000{n:02d}" for n in range(8)]


@pytest.fixture
def served(
    tmp_path: Path, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[int, FakeSlack]]:
    monkeypatch.setattr(slack_app, "READ_TIMEOUT", 4.0)
    monkeypatch.setattr(slack_app, "MAX_CONNECTIONS", 8)
    pools: list[ThreadPoolExecutor] = []  # the app's listener and Home pools, to drain at the end

    def pool(*args: object, **kwargs: object) -> ThreadPoolExecutor:
        pools.append(ThreadPoolExecutor(*args, **kwargs))  # type: ignore[arg-type]
        return pools[-1]

    monkeypatch.setattr(slack_app, "ThreadPoolExecutor", pool)
    monkeypatch.setattr(events, "ThreadPoolExecutor", pool)
    config = write_config(tmp_path / "newsalert.toml", watchlists={"csam": "csam"})
    env = {"SLACK_BOT_TOKEN": VALID_TOKEN, "SLACK_API_URL": slack.url, "SLACK_SIGNING_SECRET": SECRET}
    settings = load_settings(config, db_path=str(tmp_path / "t.db"), environ=env)
    store = Store.open(settings.db_path)
    subs = [Subscription(channel, ("csam",)) for channel in CHANNELS]
    store.catalog.sync_config([], [Watchlist("csam", "csam")], subs, settings_now())
    store.close()
    ctx = AppContext(settings)
    server = slack_app.make_server(
        slack_app.create_app(ctx), ctx, host="127.0.0.1", port=0, scheduler_alive=lambda: True
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], slack
    finally:
        server.shutdown()
        server.server_close()
        # Work the app still has queued (Home renders against a slow Slack) is finished here, at
        # once, not left to run and log into the tests that come next.
        slack.answer_at_once()
        for executor in pools:
            executor.shutdown(wait=True, cancel_futures=True)


def settings_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def post(port: int, body: str, content_type: str) -> int:
    ts = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/slack/events", data=body.encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def home_opened(port: int, user: str) -> int:
    body = json.dumps(
        {
            "token": "x",
            "team_id": "T0FAKE",
            "api_app_id": "A0NEWSALERT",
            "type": "event_callback",
            "event_id": f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
            "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"},
        }
    )
    return post(port, body, "application/json")


def slash_command(port: int, slack: FakeSlack, text: str) -> tuple[int, str]:
    url = slack.response_url()
    form = {
        "command": "/newsalert",
        "text": text,
        "user_id": "U0USER",
        "channel_id": CHANNELS[0],
        "team_id": "T0FAKE",
        "response_url": url,
        "trigger_id": "1.2.3",
    }
    return post(port, urllib.parse.urlencode(form), "application/x-www-form-urlencoded"), url


def test_slow_home_renders_never_hold_up_a_slash_commands_ack(served: tuple[int, FakeSlack]) -> None:
    port, slack = served
    # Every channel lookup of every Home render answers after 2 s: 20 renders x 8 channels would
    # hold Bolt's default 5-thread pool for minutes.
    slack.slow("conversations.info", 2.0, times=200)
    for n in range(20):
        assert home_opened(port, f"U{n:04d}") == 200
    status, url = slash_command(port, slack, "help")
    # Bolt answers 404 ("didn't call ack()") when the listener could not run within 3 s.
    assert status == 200
    deadline = time.monotonic() + 10
    while not slack.responses_to(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "posts news alerts" in slack.responses_to(url)[0]["text"]


def test_silent_clients_are_cut_off_and_capped(served: tuple[int, FakeSlack]) -> None:
    port, _ = served
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]  # the cap, all idle
    try:
        answers = []
        for _ in range(30):  # until the server has accepted the eight (it accepts one at a time)
            with socket.create_connection(("127.0.0.1", port)) as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                answers.append(extra.recv(100))
            if answers[-1].startswith(b"HTTP/1.1 503"):
                break
            time.sleep(0.05)
        assert answers[-1].startswith(b"HTTP/1.1 503"), answers
        for conn in silent:  # each is closed by the server once its read timeout has passed
            conn.settimeout(30)
            assert conn.recv(100) == b""
    finally:
        for conn in silent:
            conn.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.status in (200, 503)  # answered again: the slots came back


def test_a_button_value_of_thousands_of_digits_is_only_a_miss(tmp_path: Path) -> None:
    config = write_config(tmp_path / "newsalert.toml", watchlists={"csam": "csam"})
    ctx = AppContext(load_settings(config, db_path=str(tmp_path / "t.db"), environ={}))
    Store.open(ctx.settings.db_path).close()
    result = triage.click(
        "alert_claim",
        user="U1",
        channel="C1",
        message_ts="1.2",
        value="9" * 5000,
        ctx=ctx,
        workspace=None,  # type: ignore[arg-type]
    )
    assert result.notice == "newsalert has no record of this alert any more."
