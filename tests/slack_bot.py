"""A newsalert Slack app in a subprocess, driven the way Slack drives it, for tests/test_slack_app.py.

`Bot` runs `newsalert run --http` with its own fake Slack (tests/fake_slack.py) and feed server
(tests/feed_server.py), in the workspace and with the config below, and sends it what Slack sends:
slash commands form-encoded, button clicks as JSON interactivity payloads, App Home opens as Events
API callbacks, all signed with the signing secret the way slack_sdk's SignatureVerifier checks them.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO

from slack_sdk.signature import SignatureVerifier

from bot.store import Store
from tests.conftest import start_newsalert, wait_for, write_config
from tests.fake_slack import FakeSlack
from tests.feed_server import FeedServer

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ADMIN, USER, OWNER = "U0ADMIN", "U0USER", "U0OWNER"
ALERTS, SECOND, ESCALATION = "C0000000001", "C0000000002", "C0ESCALATE"
STORY = "UNICEF urges governments to criminalise AI-generated child sexual abuse material"
LEAD = (
    "The United Nations children's agency on Thursday called on governments to criminalise AI-generated "
    "child sexual abuse material, saying at least 1.2 million children had images manipulated into sexual "
    "deepfakes in the past year."
)


def rss(*items: tuple[str, str, str]) -> str:
    entries = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid>"
        f"<pubDate>Thu, 05 Feb 2026 17:00:00 +0000</pubDate><description>{text}</description></item>"
        for title, link, text in items
    )
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>{entries}</channel></rss>"


WIRE = (STORY, "https://reuters.example/world/unicef-ai-abuse", LEAD)
COPY = (  # the same story from another outlet, headlined its own way: a reply in the story's thread
    "UN children's agency wants AI-made abuse images of children outlawed worldwide",
    "https://apnews.example/article/unicef-ai-child-abuse-deepfakes",
    LEAD.replace("on Thursday ", "").replace("criminalise", "criminalize"),
)


# Active subscriptions, watchlists and sources, and every mute: see Bot.catalog.
CATALOG = (
    "SELECT channel, watchlists, mode FROM subscriptions WHERE removed_at IS NULL ORDER BY 1, 2",
    "SELECT name, query FROM watchlists WHERE removed_at IS NULL ORDER BY 1",
    "SELECT name, url FROM sources WHERE origin IS NOT NULL AND removed_at IS NULL ORDER BY 1",
    "SELECT channel, kind, target FROM mutes ORDER BY 1, 2, 3",
)


def set_up_workspace(slack: FakeSlack) -> None:
    """The workspace each test starts in; a test may change it (someone invites the bot), the next
    one gets this again."""
    with slack.lock:
        slack.private = {"C0PRIVATE", "C0SECRET"}  # the bot is in C0SECRET, not in C0PRIVATE
        slack.not_member = {"C0PRIVATE", "C0PUBLIC"}
        slack.missing = set()
        slack.admins = set()
        slack.owners = {OWNER}
        slack.members = {"C0SECRET": {OWNER}}
        slack.views = {}
        slack.modals = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bot:
    """`newsalert run --http` as Slack sees it: an HTTPS endpoint that wants signed requests, with
    its own fake Slack and feed server."""

    def __init__(self, tmp: Path, db: str | None = None) -> None:
        self.tmp = tmp
        self.slack, self.feeds = FakeSlack().start(), FeedServer().start()
        set_up_workspace(self.slack)
        self.db = db or tmp / "newsalert.db"
        self.config = write_config(
            tmp / "newsalert.toml",
            # The feeds are on 127.0.0.1; the fixture is dated February 2026.
            defaults={"allow_private_sources": True, "first_poll_window": "0", "interval": "1s"},
            sources=[{"name": "Wire", "url": self.feeds.serve("/wire.rss", rss(WIRE))}],
            watchlists={
                "csam": 'CSAM OR "child sexual abuse material*" OR "child abuse imagery"',
                "unicef": "UNICEF",
                "sextortion": "sextort*",
                "ransomware": "ransomware",  # no test stores an item it matches
            },
            subscriptions=[
                {"channel": ALERTS, "watchlists": ["csam", "unicef"]},
                {"channel": SECOND, "watchlists": ["unicef"]},
            ],
            slack={"admins": [ADMIN], "escalation_channel": ESCALATION},
        )
        self.verifier = SignatureVerifier(SECRET)
        self.proc: subprocess.Popen[str] | None = None
        self.log: IO[str] | None = None
        self.calls_seen = self.violations_seen = self.refused_seen = self.log_seen = 0
        self.baseline: list[list[tuple]] = []

    def launch(self) -> Bot:
        """Start the bot and wait for its first poll: the story's alert in both channels."""
        self.start()
        self.alert_message(ALERTS)
        self.alert_message(SECOND)
        self.baseline = self.catalog()
        return self

    def start(self) -> None:
        """Start `newsalert run --http` and wait until it answers /healthz."""
        self.port = free_port()
        self.log = (self.tmp / "run.log").open("a")
        self.proc = start_newsalert(
            *("run", "--http", "--port", str(self.port), "--host", "127.0.0.1"),
            config=self.config,
            db=self.db,
            slack=self.slack,
            env={"SLACK_SIGNING_SECRET": SECRET},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._healthy, 20, "GET /healthz")

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.output()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
            assert self.proc.returncode == 0, self.output()
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def close(self) -> None:
        """Stop the bot and its servers; what Slack saw must have been safe, and nothing crashed."""
        try:
            self.stop()
        finally:
            self.slack.stop()
            self.feeds.stop()
        assert self.slack.violations == [], self.slack.violations
        assert self.slack.refused == [], self.slack.refused  # strict: real Slack would have refused these
        assert "Traceback" not in self.output(), self.output()

    def output(self) -> str:
        return (self.tmp / "run.log").read_text()

    # -- one test at a time on a shared bot ------------------------------------------------------

    def begin_test(self) -> None:
        """Give the next test the workspace and the feeds the module started with, and remember
        where Slack's call log, its violations and refusals, and the bot's log stand."""
        set_up_workspace(self.slack)
        self.feeds.routes = {"/wire.rss": self.feeds.routes["/wire.rss"]}
        with self.slack.lock:
            self.calls_seen, self.violations_seen = len(self.slack.calls), len(self.slack.violations)
            self.refused_seen = len(self.slack.refused)
        self.log_seen = len(self.output())

    def end_test(self) -> None:
        """Fail the test that left the catalog changed (a later test would depend on it having
        run), made an unsafe call to Slack or one Slack would refuse, or crashed the bot."""
        assert self.catalog() == self.baseline, "the test left the catalog changed"
        assert self.slack.violations[self.violations_seen :] == []
        assert self.slack.refused[self.refused_seen :] == []  # strict: real Slack would have refused these
        assert "Traceback" not in self.output()[self.log_seen :], self.output()[self.log_seen :]

    def calls_to(self, method: str) -> list[dict]:
        """Bodies of the calls to ``method`` that Slack accepted since this test began."""
        with self.slack.lock:
            calls = self.slack.calls[self.calls_seen :]
        return [c.params for c in calls if c.method == method and c.params.get("_ok")]

    def catalog(self) -> list[list[tuple]]:
        """What the bot is configured to do, whoever changed it: the state tests must leave as found."""
        return [self.query(sql) for sql in CATALOG]

    # -- requests as Slack sends them --------------------------------------------------------

    def post(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | None = None,
        signed: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers = {"Content-Type": content_type, **(headers or {})}
        if signed:
            headers["X-Slack-Request-Timestamp"] = ts
            headers["X-Slack-Signature"] = self.verifier.generate_signature(timestamp=ts, body=body)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/slack/events", data=body.encode(), headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def command_body(self, text: str, user: str, channel: str, response_url: str) -> str:
        return urllib.parse.urlencode(
            {
                "token": "legacy-unused",
                "team_id": "T0FAKE",
                "team_domain": "fake",
                "channel_id": channel,
                "channel_name": "alerts",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/newsalert",
                "text": text,
                "api_app_id": "A0NEWSALERT",
                "response_url": response_url,
                "trigger_id": "1.2.3",
            }
        )

    def command(self, text: str, *, user: str = USER, channel: str = ALERTS) -> dict:
        """Run a slash command; the reply that came back through its response_url."""
        url = self.slack.response_url()
        status, _ = self.post(
            self.command_body(text, user, channel, url), "application/x-www-form-urlencoded"
        )
        assert status == 200
        wait_for(lambda: self.slack.responses_to(url), what=f"a reply to {text!r}")
        (reply,) = self.slack.responses_to(url)
        return reply

    def choose(self, choice: str, *, ts: str, story: int, channel: str = ALERTS, user: str = USER) -> None:
        """Pick ``choice`` from an alert's overflow menu."""
        option = {"text": {"type": "plain_text", "text": choice}, "value": f"{choice}|{story}"}
        self.click("alert_more", ts=ts, story=story, channel=channel, user=user, option=option)

    def submit(self, view: dict, values: dict, *, user: str = USER) -> tuple[int, str]:
        """Submit the modal ``view`` (as views.open got it) with ``values`` (block -> state)."""
        state = {block: {block: value} for block, value in values.items()}
        payload = {
            "type": "view_submission",
            "team": {"id": "T0FAKE", "domain": "fake"},
            "user": {"id": user, "username": user.lower(), "team_id": "T0FAKE"},
            "api_app_id": "A0NEWSALERT",
            "token": "legacy-unused",
            "trigger_id": "1.2.6",
            "view": {**view, "id": "V0MODAL", "team_id": "T0FAKE", "state": {"values": state}},
        }
        return self.post(
            urllib.parse.urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
        )

    def click(
        self,
        action_id: str,
        *,
        ts: str,
        story: int,
        channel: str = ALERTS,
        user: str = USER,
        option: dict | None = None,
    ) -> None:
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": "T0FAKE"},
            "api_app_id": "A0NEWSALERT",
            "token": "legacy-unused",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": "1.2.3",
            "team": {"id": "T0FAKE", "domain": "fake"},
            "channel": {"id": channel, "name": "alerts"},
            "message": {"type": "message", "ts": ts, "text": "alert"},
            "response_url": self.slack.response_url(),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "triage",
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                    **({"type": "overflow", "selected_option": option} if option else {"value": str(story)}),
                }
            ],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        assert self.post(body, "application/x-www-form-urlencoded")[0] == 200

    def press(self, button: dict, *, user: str = USER, channel: str = ALERTS) -> dict:
        """Click ``button`` on an ephemeral reply; the body that came back through its response_url."""
        url = self.slack.response_url()
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": "T0FAKE"},
            "api_app_id": "A0NEWSALERT",
            "token": "legacy-unused",
            "container": {
                "type": "message",
                "message_ts": "1.000001",
                "channel_id": channel,
                "is_ephemeral": True,
            },
            "trigger_id": "1.2.4",
            "team": {"id": "T0FAKE", "domain": "fake"},
            "channel": {"id": channel, "name": "alerts"},
            "response_url": url,
            "actions": [
                {
                    "action_id": button["action_id"],
                    "block_id": "paging",
                    "value": button["value"],
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        assert self.post(body, "application/x-www-form-urlencoded")[0] == 200
        wait_for(lambda: self.slack.responses_to(url), what=f"the answer to {button['action_id']}")
        (reply,) = self.slack.responses_to(url)
        return reply

    def event(self, event: dict, *, event_id: str | None = None, retry: int | None = None) -> int:
        """Send an Events API event; ``retry``: as Slack sends it again (X-Slack-Retry-Num)."""
        body = json.dumps(
            {
                "token": "legacy-unused",
                "team_id": "T0FAKE",
                "api_app_id": "A0NEWSALERT",
                "event": event,
                "type": "event_callback",
                "event_id": event_id or f"Ev{time.monotonic_ns()}",
                "event_time": int(time.time()),
            }
        )
        retried = (
            {} if retry is None else {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        )
        return self.post(body, "application/json", headers=retried)[0]

    # -- what the bot did ------------------------------------------------------------------------

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        store = Store.open(self.db)
        try:
            return [tuple(row) for row in store.db.execute(sql, params).fetchall()]
        finally:
            store.close()

    def alert_message(self, channel: str, title: str = STORY) -> tuple[str, int]:
        """(ts, story id) of the top-level alert about ``title`` in ``channel``."""
        wait_for(lambda: self._story_post(channel, title), 20, f"the alert in {channel}")
        return self._story_post(channel, title)  # type: ignore[return-value]

    def _story_post(self, channel: str, title: str) -> tuple[str, int] | None:
        rows = self.query(
            """SELECT p.ts, p.story_id FROM story_posts p JOIN items i ON i.id = p.item_id
               WHERE p.channel = ? AND i.title = ?""",
            (channel, title),
        )
        return rows[0] if rows else None
