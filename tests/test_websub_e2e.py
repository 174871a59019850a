"""WebSub end to end: `newsalert run --http` in a subprocess, the loopback hub of tests/websub_hub.py
and the fake Slack. The bot finds the hub by polling the feed, subscribes, is verified; a pushed
signed item is alerted in Slack (the polled feed never has it); a forged push is refused and
nothing of it is stored; a lease that runs out is renewed, and pushes still arrive after it."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.store import Store
from tests.conftest import start_newsalert
from tests.fake_slack import FakeSlack
from tests.websub_hub import WebSubHub

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "C0000000001"
LEASE = 4  # what the hub grants: seconds, so the test sees it run out and be renewed (at 2 s)


def feed(*items: tuple[str, str]) -> str:
    entries = "".join(
        f"<item><title>{title}</title><link>https://wire.example/{guid}</link><guid>{guid}</guid>"
        f"<description>{title}.</description></item>"
        for title, guid in items
    )
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>Wire</title>{entries}</channel></rss>"


def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Run:
    def __init__(self, tmp: Path, slack: FakeSlack, hub: WebSubHub) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.db = tmp / "newsalert.db"
        self.topic = hub.serve_topic("/wire.rss", feed(("Old report", "old")))
        config = tmp / "newsalert.toml"
        config.write_text(f"""
[defaults]
allow_private_sources = true   # feeds and hub are on 127.0.0.1
first_poll_window = "0"
interval = "1s"

[[sources]]
name = "Wire"
url = "{self.topic}"

[watchlists.csam]
query = 'CSAM OR "child sexual abuse material*"'

[[subscriptions]]
channel = "{CHANNEL}"
watchlists = ["csam"]

[websub]
base_url = "http://127.0.0.1:{self.port}"
lease = "1h"
""")
        self.log = (tmp / "run.log").open("w")
        listen = ["--port", str(self.port), "--host", "127.0.0.1"]
        self.proc = start_newsalert(
            "run",
            "--http",
            *listen,
            config=config,
            db=self.db,
            slack=slack,
            env={"SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.tmp = tmp

    def output(self) -> str:
        return (self.tmp / "run.log").read_text()

    def healthy(self) -> bool:
        assert self.proc.poll() is None, self.output()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stored_titles(self) -> set[str]:
        store = Store.open_readonly(self.db)
        try:
            return {r[0] for r in store.db.execute("SELECT title FROM items")}
        finally:
            store.close()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code


@pytest.fixture
def hub() -> Iterator[WebSubHub]:
    server = WebSubHub(max_lease=LEASE).start()
    yield server
    server.stop()


def alerted(slack: FakeSlack, title: str) -> bool:
    return any(title in str(post.get("text", "")) + str(post.get("blocks", "")) for post in slack.posts())


def test_pushed_items_are_alerted_forged_ones_refused_and_leases_renewed(
    tmp_path: Path, slack: FakeSlack, hub: WebSubHub
) -> None:
    run = Run(tmp_path, slack, hub)
    try:
        wait_for(run.healthy, 30, "GET /healthz")
        wait_for(lambda: hub.live(run.topic), 30, "the hub to verify the bot's subscription")
        first = hub.verified(run.topic)[0]
        assert first.callback.startswith(f"http://127.0.0.1:{run.port}/websub/") and first.lease == LEASE

        # A signed push: alerted, though the feed the bot polls never lists the item.
        title = "Police dismantle CSAM ring operating on encrypted apps"
        assert hub.publish(run.topic, feed((title, "pushed-1"))) == [202]
        wait_for(lambda: alerted(slack, title), 20, "the pushed item's alert in Slack")
        assert title not in hub.topics["/wire.rss"].body.decode()

        # Forged, unsigned: acknowledged (WebSub wants a 2xx) and dropped. A signed push after
        # them is alerted; pushes are ingested in order, so by then the forged ones are long gone.
        forged = "Forged CSAM headline that must never be stored"
        assert hub.publish(run.topic, feed((forged, "forged")), forge="secret") == [202]
        assert hub.publish(run.topic, feed((forged + " (unsigned)", "unsigned")), forge="unsigned") == [202]
        after = "Second CSAM report pushed after a forgery"
        assert hub.publish(run.topic, feed((after, "pushed-2"))) == [202]
        wait_for(lambda: alerted(slack, after), 20, "the alert of the push after the forgeries")
        stored = run.stored_titles()
        assert title in stored and after in stored
        assert not any(t.startswith(forged) for t in stored)
        assert not alerted(slack, forged)

        # The hub granted 4 s; the bot renews before each lease runs out, so pushes keep coming.
        wait_for(lambda: len(hub.verified(run.topic)) >= 3, 20, "two renewals of the lease")
        renewals = hub.verified(run.topic)
        assert {v.callback for v in renewals} == {first.callback}  # renewed, not a new subscription
        assert hub.lapses(run.topic) == 0  # each renewal verified before the lease it renews ran out
        late = "Third CSAM report, pushed after the first lease ran out"
        assert hub.publish(run.topic, feed((late, "pushed-3"))) == [202]
        wait_for(lambda: alerted(slack, late), 20, "the alert of a push after renewal")

        # Polling goes on as the fallback, at the ceiling while the lease is live.
        store = Store.open_readonly(run.db)
        try:
            row = store.db["sources"].get("Wire")
        finally:
            store.close()
        assert (row["poll_interval"], row["poll_reason"]) == (4, "websub")
    finally:
        code = run.stop()
    assert code == 0, run.output()
    assert "Traceback" not in run.output()
