"""End to end: `newsalert poll --once` as a subprocess, feeds from a real loopback HTTP server,
Slack from the fake Web API server. Nothing here touches the internet."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    DATA,
    E2E_CHANNELS,
    E2E_STORY,
    ROOT,  # noqa: F401  (tests/test_e2e_stories.py still imports it from here)
    run_newsalert,
    start_newsalert,
    wait_for,
    write_e2e_config,
)
from tests.fake_slack import VALID_TOKEN, FakeSlack
from tests.feed_server import FeedServer


@dataclass(frozen=True)
class FirstPoll:
    """What one `newsalert poll --once` of the e2e feeds did, as the fake Slack recorded it. Several
    tests read it and none can change it, so they share one poll and pass in any order."""

    result: subprocess.CompletedProcess[str]
    posts: tuple[dict, ...]  # chat.postMessage bodies Slack accepted
    authorizations: tuple[str | None, ...]  # the Authorization header of every call


@pytest.fixture(scope="module")
def first_poll(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstPoll]:
    tmp = tmp_path_factory.mktemp("e2e")
    feeds, slack = FeedServer().start(), FakeSlack().start()
    try:
        config = write_e2e_config(tmp / "newsalert.toml", feeds)
        result = run_newsalert("poll", "--once", config=config, db=tmp / "newsalert.db", slack=slack)
        authorizations = tuple(c.headers.get("Authorization") for c in slack.calls)
        yield FirstPoll(result, tuple(copy.deepcopy(slack.posts())), authorizations)
    finally:
        feeds.stop()
        slack.stop()
    assert slack.violations == [], slack.violations
    assert slack.refused == [], slack.refused


def story_posts(first_poll: FirstPoll, channel: str) -> list[dict]:
    return [p for p in first_poll.posts if p["channel"] == channel and E2E_STORY in json.dumps(p)]


def test_poll_once_posts_one_alert_per_channel_for_the_story(first_poll: FirstPoll) -> None:
    result = first_poll.result
    assert result.returncode == 0, result.stderr
    for channel in E2E_CHANNELS:
        posts = story_posts(first_poll, channel)
        assert len(posts) == 1, f"{channel}: {len(posts)} alerts for one story"
        context = json.dumps(posts[0]["blocks"])
        for watchlist in ("csam", "deepfakes", "unicef"):
            assert f"`{watchlist}`" in context
        assert "`sextortion`" not in context
    assert "polled 2 sources (0 failed)" in result.stdout
    assert "alerts sent" in result.stdout


def test_non_matching_items_produce_no_alert(first_poll: FirstPoll) -> None:
    assert not [p for p in first_poll.posts if "Premier League" in json.dumps(p)]
    # the story (2 channels) + the hostile CSAM item (2 channels)
    assert len(first_poll.posts) == 4


def test_second_poll_posts_nothing(tmp_path: Path, feeds: FeedServer, slack: FakeSlack) -> None:
    config = write_e2e_config(tmp_path / "newsalert.toml", feeds)
    db = tmp_path / "newsalert.db"
    assert run_newsalert("poll", "--once", config=config, db=db, slack=slack).returncode == 0
    before = len(slack.posts())
    again = run_newsalert("poll", "--once", config=config, db=db, slack=slack)
    assert again.returncode == 0, again.stderr
    assert len(slack.posts()) == before
    assert "0 new items" in again.stdout


def test_hostile_title_is_escaped_and_pings_no_one(first_poll: FirstPoll) -> None:
    hostile = [p for p in first_poll.posts if "CSAM ring" in p["text"]]
    assert len(hostile) == 2
    for post in hostile:
        wire = json.dumps(post)
        for ping in ("<!channel>", "<!here>", "<@U0ADMIN>", "<https://evil.example|"):
            assert ping not in wire
        assert "&lt;!channel&gt; CSAM ring &amp; &lt;@U0ADMIN&gt;" in post["text"]


def test_unfurls_are_off_and_no_feed_image_is_posted(first_poll: FirstPoll) -> None:
    assert first_poll.posts
    for post in first_poll.posts:
        assert post["unfurl_links"] is False
        assert post["unfurl_media"] is False
        assert "unicef.jpg" not in json.dumps(post)
        # Text and the alert's buttons only: no image, file or video block.
        assert all(block["type"] in ("section", "context", "actions") for block in post["blocks"])


def test_posts_use_the_bot_token(first_poll: FirstPoll) -> None:
    assert first_poll.authorizations
    assert all(a == f"Bearer {VALID_TOKEN}" for a in first_poll.authorizations)


def test_slack_auth_failure_exits_non_zero(tmp_path: Path, feeds: FeedServer) -> None:
    bad = FakeSlack(token="xoxb-some-other-token").start()
    try:
        config = write_e2e_config(tmp_path / "newsalert.toml", feeds)
        result = run_newsalert("poll", "--once", config=config, db=tmp_path / "x.db", slack=bad)
    finally:
        bad.stop()
    assert result.returncode == 4
    assert "invalid_auth" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_token_alerts_are_printed(tmp_path: Path, feeds: FeedServer) -> None:
    config = write_e2e_config(tmp_path / "newsalert.toml", feeds)
    result = run_newsalert("poll", "--once", config=config, db=tmp_path / "x.db", slack=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(E2E_STORY) == 2  # one per channel
    assert "SLACK_BOT_TOKEN is not set" in result.stderr


def test_run_polls_on_schedule_and_stops_on_sigterm(
    tmp_path: Path, feeds: FeedServer, slack: FakeSlack
) -> None:
    config = write_e2e_config(tmp_path / "newsalert.toml", feeds, interval="1s")
    log = (tmp_path / "run.log").open("w+")  # a file, not a pipe: a full pipe would block the bot
    proc = start_newsalert(
        "run", config=config, db=tmp_path / "run.db", slack=slack, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: len(slack.posts()) == 4, what="the first poll's alerts")
        feed = (DATA / "e2e" / "news.rss").read_text()
        item = (
            "<item><title>Sextortion network dismantled</title><link>https://news.example/new</link>"
            "<guid>new-1</guid></item>"
        )
        feeds.serve("/feed.rss", feed.replace("</channel>", item + "</channel>"), etag='"v2"')
        wait_for(
            lambda: any("Sextortion network" in p["text"] for p in slack.posts()),
            what="a later scheduled poll to pick up the new item",
        )
        assert [p["channel"] for p in slack.posts() if "Sextortion" in p["text"]] == [E2E_CHANNELS[1]]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    output = (tmp_path / "run.log").read_text()
    assert proc.returncode == 0, output
    assert "Traceback" not in output


def test_the_token_never_appears_in_logs(tmp_path: Path, feeds: FeedServer, slack: FakeSlack) -> None:
    config = write_e2e_config(tmp_path / "newsalert.toml", feeds)
    slack.fail_next("chat.postMessage", status=500, error="internal_error")  # error paths log too
    result = run_newsalert("-v", "poll", "--once", config=config, db=tmp_path / "x.db", slack=slack)
    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr  # the debug logs (slack_sdk's requests included) were on
    assert VALID_TOKEN not in result.stderr + result.stdout
