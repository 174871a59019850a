"""kill -9 at the worst moments, then a restart: every alert reaches Slack, exactly once.

Real subprocesses (`newsalert poll --once`), real SIGKILL, the fake Slack over loopback.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

from tests.conftest import run_newsalert, start_newsalert, wait_for, write_e2e_config
from tests.fake_slack import FakeSlack
from tests.feed_server import FeedServer

EXPECTED = 4  # the e2e feeds: the UNICEF story and the hostile CSAM item, each to two channels


def poll(config: Path, db: Path, slack: FakeSlack, failpoint: str | None = None) -> subprocess.Popen[str]:
    """`newsalert poll --once`, started; NEWSALERT_FAILPOINT makes it SIGKILL itself at that point."""
    env = {"NEWSALERT_FAILPOINT": failpoint} if failpoint else None
    return start_newsalert(
        "poll", "--once", config=config, db=db, slack=slack, env=env, stdout=subprocess.DEVNULL
    )


def alerts_in_slack(slack: FakeSlack) -> Counter:
    """How many messages Slack holds per alert id (from the metadata each post carries)."""
    return Counter(
        m["metadata"]["event_payload"]["alert_id"] for m in slack.messages.values() if m.get("metadata")
    )


def restart_and_check(config: Path, db: Path, slack: FakeSlack) -> None:
    again = poll(config, db, slack)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    counts = alerts_in_slack(slack)
    assert sorted(counts) == list(range(1, EXPECTED + 1)), counts
    assert set(counts.values()) == {1}, f"double posts: {counts}"


def test_killed_before_the_poll_commits(tmp_path: Path, feeds: FeedServer, slack: FakeSlack) -> None:
    config, db = write_e2e_config(tmp_path / "n.toml", feeds), tmp_path / "n.db"
    first = poll(config, db, slack, "before-commit")
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert not slack.messages
    restart_and_check(config, db, slack)


def stored_items(db: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return set(conn.execute("SELECT source, guid, title FROM items"))


def test_killed_after_the_alert_path_committed(tmp_path: Path, feeds: FeedServer, slack: FakeSlack) -> None:
    """The matched items and their alerts are committed, the other items and the sources' ETags
    are not: the restart fetches again, stores the rest, and alerts nothing twice."""
    config, db = write_e2e_config(tmp_path / "n.toml", feeds), tmp_path / "n.db"
    first = poll(config, db, slack, "after-alert-path")
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == EXPECTED
        unrecorded = "SELECT count(*) FROM sources WHERE etag IS NOT NULL OR body_hash IS NOT NULL"
        assert conn.execute(unrecorded).fetchone()[0] == 0
    partial = stored_items(db)
    restart_and_check(config, db, slack)
    whole_db = tmp_path / "whole.db"
    whole = poll(write_e2e_config(tmp_path / "whole.toml", feeds), whole_db, slack)
    whole.communicate(timeout=60)
    assert partial < stored_items(db) == stored_items(whole_db)


def test_killed_while_slack_is_slow_to_answer(tmp_path: Path, feeds: FeedServer, slack: FakeSlack) -> None:
    config, db = write_e2e_config(tmp_path / "n.toml", feeds), tmp_path / "n.db"
    slack.slow("chat.postMessage", 10)  # the first post lands in Slack; its answer never arrives
    first = poll(config, db, slack)
    wait_for(lambda: len(slack.messages) >= 1, what="the first post to land")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    restart_and_check(config, db, slack)
    assert any(c.method == "conversations.history" for c in slack.calls)  # it looked before re-posting


def test_killed_after_slack_answered_before_the_row_was_marked(
    tmp_path: Path, feeds: FeedServer, slack: FakeSlack
) -> None:
    config, db = write_e2e_config(tmp_path / "n.toml", feeds), tmp_path / "n.db"
    first = poll(config, db, slack, "after-post")
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    # Channels deliver in parallel: another channel's post may have landed before the kill too.
    assert len(slack.messages) >= 1
    restart_and_check(config, db, slack)


def test_two_runs_on_one_database_do_not_double_deliver(
    tmp_path: Path, feeds: FeedServer, slack: FakeSlack
) -> None:
    config, db = write_e2e_config(tmp_path / "n.toml", feeds), tmp_path / "n.db"
    # Both poll the same feeds into the same database and race to deliver; Slack answers slowly
    # so their delivery rounds overlap.
    slack.slow("chat.postMessage", 0.3, times=EXPECTED)
    racers = [poll(config, db, slack) for _ in range(2)]
    for racer in racers:
        _, err = racer.communicate(timeout=90)
        assert racer.returncode == 0, err
    if len(alerts_in_slack(slack)) < EXPECTED:  # a racer that found a channel busy leaves it for later
        restart_and_check(config, db, slack)
    counts = alerts_in_slack(slack)
    assert sorted(counts) == list(range(1, EXPECTED + 1)) and set(counts.values()) == {1}, json.dumps(counts)


def test_dead_letters_are_listed_and_retried_from_the_command_line(
    tmp_path: Path, feeds: FeedServer, slack: FakeSlack
) -> None:
    config, db = write_e2e_config(tmp_path / "n.toml", feeds), tmp_path / "n.db"
    slack.not_member.add("C0000000002")
    first = poll(config, db, slack)
    first.communicate(timeout=60)
    listing = run_newsalert("outbox", config=config, db=db, slack=slack)
    # The first alert to the channel the bot is not in is a dead letter; the channel's next one waits
    # behind it rather than failing the same way.
    assert listing.stdout.startswith("1 waiting, 1 dead letter\n") and "not_in_channel" in listing.stdout
    slack.not_member.clear()  # the bot was invited
    retry = run_newsalert("outbox", "retry", config=config, db=db, slack=slack)
    assert retry.stdout.startswith("1 dead letter queued again")
    restart_and_check(config, db, slack)
