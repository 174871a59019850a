"""/metrics: the counters the pipeline and the deliverer keep, in Prometheus format; the Socket Mode
server for /healthz and /metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.alerts.outbox import deliver_pending
from bot.alerts.sink import ConsoleSink
from bot.errors import FetchError, ParseError
from bot.ingest.poll import poll
from bot.model import Item, Source
from bot.ops import metrics
from bot.ops.http import start_metrics_server
from bot.store import Store
from tests.conftest import NOW, rss, settings_for, sync
from tests.feed_server import FeedServer


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client's own parser."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        assert family.name.startswith("newsalert_"), family.name
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(name: str, **labels: str) -> float:
    return samples().get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_metric_is_exported_with_the_prefix() -> None:
    names = {name for name, _ in samples()}
    for expected in (
        "newsalert_alerts_sent_total",
        "newsalert_delivery_latency_seconds_bucket",
        "newsalert_delivery_latency_seconds_count",
        "newsalert_outbox_depth",
        "newsalert_outbox_oldest_age_seconds",
    ):
        assert expected in names


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (FetchError("u", "HTTP 410 Gone", status=410, gone=True), "gone"),
        (FetchError("u", "blocked: a loopback address", blocked=True), "blocked"),
        (FetchError("u", "HTTP 429", status=429), "rate_limited"),
        (FetchError("u", "unexpected HTTP 503", status=503), "http_5xx"),
        (FetchError("u", "unexpected HTTP 404", status=404), "http_4xx"),
        (FetchError("u", "timed out after 30s"), "timeout"),
        (FetchError("u", "response too large: over 10 bytes"), "too_large"),
        (ParseError("u", "not a feed"), "not_a_feed"),
        (FetchError("u", "ClientConnectorError: refused"), "network"),
    ],
)
def test_failure_reasons_are_a_fixed_set(error, reason: str) -> None:
    assert metrics.failure_reason(error) == reason
    assert reason in metrics.REASONS


def test_a_poll_counts_polls_failures_items_and_matches(tmp_path: Path, feeds: FeedServer) -> None:
    good = feeds.serve(
        "/good.rss",
        rss(("CSAM report", "https://e.org/1", NOW), ("Weather", "https://e.org/2", NOW)),
    )
    bad = feeds.serve("/bad.rss", "down", status=503)
    sources = (Source("Metrics good", good), Source("Metrics bad", bad))
    settings = settings_for(tmp_path, *sources)
    store = Store.open(settings.db_path)
    sync(store, settings)
    before = samples()
    poll(settings, store)
    after = samples()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("newsalert_polls_total", source="Metrics good") == 1
    assert delta("newsalert_polls_total", source="Metrics bad") == 1
    assert delta("newsalert_fetch_failures_total", source="Metrics bad", reason="http_5xx") == 1
    assert delta("newsalert_fetch_failures_total", source="Metrics good", reason="http_5xx") == 0
    assert delta("newsalert_items_total", source="Metrics good") == 2
    assert delta("newsalert_matches_total", watchlist="csam") == 1

    sent = value("newsalert_alerts_sent_total")
    observed = value("newsalert_delivery_latency_seconds_count")
    with (tmp_path / "out.txt").open("w") as out:
        report = deliver_pending(store, ConsoleSink(stream=out))
    assert report.sent == 1
    assert value("newsalert_alerts_sent_total") == sent + 1
    assert value("newsalert_delivery_latency_seconds_count") == observed + 1
    store.close()


def test_render_reads_the_outbox_gauges_from_the_database(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store.open(db)
    queued_at = datetime.now(UTC) - timedelta(minutes=10)
    for n in range(3):
        story = store.stories.new_story(queued_at)
        item_id = store.items.add_item(Item("S", f"g{n}", "", "t", "", queued_at, queued_at), story_id=story)
        store.outbox.enqueue_alert(item_id, "C1", ["w"], queued_at)
    store.close()
    metrics.render(str(db))
    assert value("newsalert_outbox_depth") == 3
    assert 590 <= value("newsalert_outbox_oldest_age_seconds") <= 700
    metrics.render(str(tmp_path / "missing.db"))  # a database it cannot read leaves the gauges be
    assert value("newsalert_outbox_depth") == 3


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_socket_mode_server_serves_healthz_and_metrics(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    Store.open(db).close()
    alive = {"scheduler": True}
    stop = start_metrics_server(0, str(db), lambda: alive["scheduler"])
    base = f"http://127.0.0.1:{stop.port}"
    try:
        status, content_type, body = get(f"{base}/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        names = {family.name for family in text_string_to_metric_families(body.decode())}
        assert "newsalert_outbox_depth" in names and "newsalert_polls" in names
        status, content_type, body = get(f"{base}/healthz")
        assert (status, content_type, json.loads(body)["status"]) == (200, "application/json", "ok")
        alive["scheduler"] = False
        status, _, body = get(f"{base}/healthz")
        assert (status, json.loads(body)["status"]) == (503, "down")
        assert get(f"{base}/other")[0] == 404
    finally:
        stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/healthz", timeout=2)
