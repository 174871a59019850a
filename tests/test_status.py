"""Operations: `newsalert status` and /healthz verdicts, exit codes, and the log formats."""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.model import Item, Source, Subscription, Watchlist
from bot.ops import logs
from bot.ops.health import health, healthz, print_health
from bot.store import Store
from tests.conftest import run_newsalert

NOW = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)


def catalog(store: Store, *sources: str, at: datetime = NOW - timedelta(days=10)) -> None:
    store.catalog.sync_config(
        [Source(name, f"https://{name.lower().replace(' ', '')}.example/rss") for name in sources],
        [Watchlist("csam", "csam")],
        [Subscription("C1", ("csam",))],
        at,
    )


def queue_alert(store: Store, queued_at: datetime, channel: str = "C1") -> None:
    story = store.stories.new_story(queued_at)
    item = Item("UN News", f"g{queued_at.timestamp()}", "", "CSAM", "", queued_at, queued_at)
    item_id = store.items.add_item(item, story_id=story)
    store.outbox.enqueue_alert(item_id, channel, ["csam"], queued_at)


def test_a_healthy_bot_needs_no_one(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    catalog(store, "UN News", "ECPAT")
    store.sources.record_fetch_success(
        "UN News", "https://un/rss", NOW - timedelta(minutes=5), etag=None, last_modified=None
    )
    # Failing, but only for two hours: the bot retries on its own.
    store.sources.record_fetch_success(
        "ECPAT", "https://ecpat/rss", NOW - timedelta(hours=2), etag=None, last_modified=None
    )
    store.sources.record_fetch_failure("ECPAT", "https://ecpat/rss", NOW - timedelta(minutes=3), "HTTP 503")
    queue_alert(store, NOW - timedelta(minutes=30))
    report = health(store, NOW)
    assert (report.needs_human, report.problems) == (False, ())
    assert report.outbox_depth == 1 and report.oldest_queued == NOW - timedelta(minutes=30)
    ecpat = next(s for s in report.sources if s.name == "ECPAT")
    assert (ecpat.failures, ecpat.last_error) == (1, "HTTP 503")
    out = io.StringIO()
    print_health(report, out)
    text = out.getvalue()
    assert "ECPAT" in text and "HTTP 503" in text and "1 queued" in text and "healthy" in text


def test_what_needs_a_human(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    catalog(store, "UN News", "Never worked", "Gone")
    store.sources.record_fetch_success(
        "UN News", "https://un/rss", NOW - timedelta(hours=27), etag=None, last_modified=None
    )
    for hours in (26, 10, 1):
        store.sources.record_fetch_failure(
            "UN News", "https://un/rss", NOW - timedelta(hours=hours), "HTTP 503"
        )
    store.sources.record_fetch_failure(
        "Never worked", "https://x/rss", NOW - timedelta(hours=1), "timed out after 30s"
    )
    store.sources.record_fetch_failure(
        "Gone", "https://g/rss", NOW - timedelta(hours=1), "HTTP 410 Gone", disable=True
    )
    queue_alert(store, NOW - timedelta(hours=3), channel="C7")
    store.catalog.set_channel_broken("C1", "channel_not_found")
    report = health(store, NOW)
    assert report.needs_human
    assert report.problems == (
        "no poll has succeeded for 3 poll intervals (the last one 27 h ago)",  # every source fails
        'source "Gone" disabled: HTTP 410 Gone',
        'source "Never worked" failing for 240 h: timed out after 30s',  # since it was added
        'source "UN News" failing for 27 h: HTTP 503',
        "alert queued for 3 h in channel C7 (1 waiting)",
        "subscription of channel C1 broken: channel_not_found",
    )
    body = report.as_json()
    assert body["needs_human"] is True and body["outbox"]["depth"] == 1
    assert body["broken_subscriptions"] == [{"channel": "C1", "reason": "channel_not_found"}]


def test_healthz_answers_503_when_alerts_cannot_flow(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store.open(db)
    catalog(store, "UN News")
    store.sources.record_fetch_success(
        "UN News", "https://un/rss", datetime.now(UTC), etag=None, last_modified=None
    )
    store.close()
    status, body = healthz(str(db), scheduler_alive=True)
    assert (status, body["status"], body["problems"]) == (200, "ok", [])

    store = Store.open(db)
    store.catalog.set_channel_broken("C1", "is_archived")
    store.close()
    status, body = healthz(str(db), scheduler_alive=True)
    assert (status, body["status"]) == (503, "degraded")  # a human is needed: alerts cannot flow there
    assert body["problems"] == ["subscription of channel C1 broken: is_archived"]

    status, body = healthz(str(tmp_path / "missing.db"), scheduler_alive=True)
    assert (status, body["status"]) == (503, "degraded") and "database unreadable" in body["problems"][0]

    status, body = healthz(str(db), scheduler_alive=False)
    assert (status, body["status"]) == (503, "down")
    json.dumps(body)  # the body is JSON-ready


def test_healthz_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store.open(db)
    catalog(store, "UN News", at=datetime.now(UTC))
    with store.transaction():  # a long poll holds the write lock
        store.sources.record_fetch_failure("UN News", "https://un/rss", NOW, "HTTP 500")
        started = datetime.now(UTC)
        status, body = healthz(str(db), scheduler_alive=True)
        assert datetime.now(UTC) - started < timedelta(seconds=2)
    assert (status, body["status"]) == (200, "ok")
    store.close()


def test_status_exit_codes(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store.open(db)
    catalog(store, "UN News")
    store.sources.record_fetch_success(
        "UN News", "https://un/rss", datetime.now(UTC), etag=None, last_modified=None
    )
    store.close()
    result = run_newsalert("status", db=db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "UN News" in result.stdout and "healthy" in result.stdout

    store = Store.open(db)
    queue_alert(store, datetime.now(UTC) - timedelta(hours=2))
    store.close()
    result = run_newsalert("status", db=db)
    assert result.returncode == 1
    assert "needs a human" in result.stdout and "alert queued for 2 h" in result.stdout
    result = run_newsalert("status", "--json", db=db)
    assert result.returncode == 1 and json.loads(result.stdout)["needs_human"] is True

    bad = tmp_path / "bad.toml"
    bad.write_text("[defaults]\nnot_a_key = 1\n")
    assert run_newsalert("status", db=db, config=bad).returncode == 2  # bad config stays 2


def test_json_logs_and_no_token_in_any_log(tmp_path: Path) -> None:
    Store.open(tmp_path / "t.db").close()
    out_file = tmp_path / "x.csv"
    result = run_newsalert("export", "--output", str(out_file), "--log-format", "json", db=tmp_path / "t.db")
    assert result.returncode == 0, result.stderr
    [line] = [json.loads(line) for line in result.stderr.splitlines()]
    assert (
        line["level"] == "INFO" and line["logger"] == "newsalert" and "exported stories=0" in line["message"]
    )

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        handler.setFormatter(formatter)
        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "auth with %s failed", ("xoxb-123-456-abcdef",), None
        )
        handler.emit(record)
        try:
            raise RuntimeError("header Authorization: Bearer xoxp-1-2-3-secretsecret")
        except RuntimeError:
            record = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
            handler.emit(record)
    text = out.getvalue()
    assert "xoxb-123" not in text and "secretsecret" not in text and text.count(logs.REDACTED) >= 4
