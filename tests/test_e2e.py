"""End to end: `newsalert poll --once` as a subprocess, feeds from a real loopback HTTP server,
Slack from the fake Web API server. Nothing here touches the internet."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, bot_env, run_bot
from tests.fake_slack import VALID_TOKEN, FakeSlack
from tests.feed_server import FeedServer

ROOT = Path(__file__).resolve().parent.parent
STORY_TITLE = "UNICEF calls on governments to criminalize AI-generated child abuse material"
CHANNELS = ("C0000000001", "C0000000002")


def write_config(path: Path, feeds: FeedServer) -> Path:
    wp = feeds.serve(
        "/wp-json/wp/v2/posts",
        (DATA / "e2e" / "wp-posts.json").read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    rss = feeds.serve("/feed.rss", (DATA / "e2e" / "news.rss").read_bytes(), etag='"v1"')
    path.write_text(f"""
[defaults]
allow_private_sources = true
first_poll_window = "0"   # the fixture is dated February 2026

[[sources]]
name = "APP"
url = "{wp}"
type = "wordpress"

[[sources]]
name = "Syndicated"
url = "{rss}"

[watchlists.csam]
query = 'CSAM OR "child sexual abuse material*" OR "child abuse material*"'

[watchlists.deepfakes]
query = 'deep-fake* OR nudif* OR "undress app*"'

[watchlists.unicef]
query = 'UNICEF'

[watchlists.sextortion]
query = 'sextort* OR "sexual extortion"'

[[subscriptions]]
channel = "{CHANNELS[0]}"
watchlists = ["csam", "deepfakes", "unicef"]

[[subscriptions]]
channel = "{CHANNELS[1]}"
watchlists = ["csam", "deepfakes", "unicef", "sextortion"]
""")
    return path


def run_newsalert(*args: str, config: Path, db: Path, slack: FakeSlack | None) -> subprocess.CompletedProcess:
    env = bot_env()
    env["NEWSALERT_DB"] = str(db)
    if slack is not None:
        env["SLACK_BOT_TOKEN"] = VALID_TOKEN
        env["SLACK_API_URL"] = slack.url
    return run_bot("--config", str(config), *args, env=env)


def story_posts(slack: FakeSlack, channel: str) -> list[dict]:
    return [p for p in slack.posts() if p["channel"] == channel and STORY_TITLE in json.dumps(p)]


@pytest.fixture
def polled(tmp_path: Path, feeds: FeedServer, slack: FakeSlack):
    config = write_config(tmp_path / "newsalert.toml", feeds)
    db = tmp_path / "newsalert.db"
    first = run_newsalert("poll", "--once", config=config, db=db, slack=slack)
    return config, db, first


def test_poll_once_posts_one_alert_per_channel_for_the_story(polled, slack: FakeSlack) -> None:
    _, _, result = polled
    assert result.returncode == 0, result.stderr
    for channel in CHANNELS:
        posts = story_posts(slack, channel)
        assert len(posts) == 1, f"{channel}: {len(posts)} alerts for one story"
        context = json.dumps(posts[0]["blocks"])
        for watchlist in ("csam", "deepfakes", "unicef"):
            assert f"`{watchlist}`" in context
        assert "`sextortion`" not in context
    assert "polled 2 sources (0 failed)" in result.stdout
    assert "alerts sent" in result.stdout


def test_non_matching_items_produce_no_alert(polled, slack: FakeSlack) -> None:
    assert not [p for p in slack.posts() if "Premier League" in json.dumps(p)]
    # the story (2 channels) + the hostile CSAM item (2 channels)
    assert len(slack.posts()) == 4


def test_second_poll_posts_nothing(polled, slack: FakeSlack) -> None:
    config, db, _ = polled
    before = len(slack.posts())
    again = run_newsalert("poll", "--once", config=config, db=db, slack=slack)
    assert again.returncode == 0, again.stderr
    assert len(slack.posts()) == before
    assert "0 new items" in again.stdout


def test_hostile_title_is_escaped_and_pings_no_one(polled, slack: FakeSlack) -> None:
    hostile = [p for p in slack.posts() if "CSAM ring" in p["text"]]
    assert len(hostile) == 2
    for post in hostile:
        wire = json.dumps(post)
        for ping in ("<!channel>", "<!here>", "<@U0ADMIN>", "<https://evil.example|"):
            assert ping not in wire
        assert "&lt;!channel&gt; CSAM ring &amp; &lt;@U0ADMIN&gt;" in post["text"]


def test_unfurls_are_off_and_no_feed_image_is_posted(polled, slack: FakeSlack) -> None:
    assert slack.posts()
    for post in slack.posts():
        assert post["unfurl_links"] is False
        assert post["unfurl_media"] is False
        assert "unicef.jpg" not in json.dumps(post)
        # Text and the alert's buttons only: no image, file or video block.
        assert all(block["type"] in ("section", "context", "actions") for block in post["blocks"])


def test_posts_use_the_bot_token(polled, slack: FakeSlack) -> None:
    assert all(c.headers.get("Authorization") == f"Bearer {VALID_TOKEN}" for c in slack.calls)


def test_slack_auth_failure_exits_non_zero(tmp_path: Path, feeds: FeedServer) -> None:
    bad = FakeSlack(token="xoxb-some-other-token").start()
    try:
        config = write_config(tmp_path / "newsalert.toml", feeds)
        result = run_newsalert("poll", "--once", config=config, db=tmp_path / "x.db", slack=bad)
    finally:
        bad.stop()
    assert result.returncode == 4
    assert "invalid_auth" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_token_alerts_are_printed(tmp_path: Path, feeds: FeedServer) -> None:
    config = write_config(tmp_path / "newsalert.toml", feeds)
    result = run_newsalert("poll", "--once", config=config, db=tmp_path / "x.db", slack=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(STORY_TITLE) == 2  # one per channel
    assert "SLACK_BOT_TOKEN is not set" in result.stderr


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_run_polls_on_schedule_and_stops_on_sigterm(
    tmp_path: Path, feeds: FeedServer, slack: FakeSlack
) -> None:
    config = write_config(tmp_path / "newsalert.toml", feeds)
    config.write_text(config.read_text().replace("[defaults]", '[defaults]\ninterval = "1s"'))
    env = bot_env()
    env |= {
        "NEWSALERT_DB": str(tmp_path / "run.db"),
        "SLACK_BOT_TOKEN": VALID_TOKEN,
        "SLACK_API_URL": slack.url,
    }
    log = (tmp_path / "run.log").open("w+")  # a file, not a pipe: a full pipe would block the bot
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for(lambda: len(slack.posts()) == 4), "first poll did not deliver"
        feed = (DATA / "e2e" / "news.rss").read_text()
        item = (
            "<item><title>Sextortion network dismantled</title><link>https://news.example/new</link>"
            "<guid>new-1</guid></item>"
        )
        feeds.serve("/feed.rss", feed.replace("</channel>", item + "</channel>"), etag='"v2"')
        assert wait_for(lambda: any("Sextortion network" in p["text"] for p in slack.posts())), (
            "a later scheduled poll did not pick up the new item"
        )
        assert [p["channel"] for p in slack.posts() if "Sextortion" in p["text"]] == [CHANNELS[1]]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    output = (tmp_path / "run.log").read_text()
    assert proc.returncode == 0, output
    assert "Traceback" not in output


def test_the_token_never_appears_in_logs(tmp_path: Path, feeds: FeedServer, slack: FakeSlack) -> None:
    config = write_config(tmp_path / "newsalert.toml", feeds)
    slack.fail_next("chat.postMessage", status=500, error="internal_error")  # error paths log too
    result = run_newsalert("-v", "poll", "--once", config=config, db=tmp_path / "x.db", slack=slack)
    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr  # the debug logs (slack_sdk's requests included) were on
    assert VALID_TOKEN not in result.stderr + result.stdout
