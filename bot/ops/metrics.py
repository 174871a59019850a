"""Prometheus metrics (`GET /metrics`), every name prefixed ``newsalert_``.

The pipeline and the deliverer count what happens through the small functions below (one line at
each place); `render` formats the module's own registry (not prometheus_client's global one, so
nothing unprefixed is exported). bot/ops/http.py routes `GET /metrics` to `render`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from bot.errors import FeedError, FetchError, ParseAborted, ParseError
from bot.store import Store

log = logging.getLogger("newsalert.metrics")

REGISTRY = CollectorRegistry()

POLLS = Counter("newsalert_polls", "Source fetches attempted", ["source"], registry=REGISTRY)
FETCH_FAILURES = Counter(
    "newsalert_fetch_failures",
    "Source fetches that failed, by reason",
    ["source", "reason"],
    registry=REGISTRY,
)
ITEMS = Counter("newsalert_items", "New items stored", ["source"], registry=REGISTRY)
MATCHES = Counter(
    "newsalert_matches", "New items that matched, per watchlist", ["watchlist"], registry=REGISTRY
)
ALERTS_SENT = Counter("newsalert_alerts_sent", "Alerts delivered (Slack or console)", registry=REGISTRY)
DELIVERY_LATENCY = Histogram(
    "newsalert_delivery_latency_seconds",
    "From an alert being queued to its delivery",
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
    registry=REGISTRY,
)
# Which worker this process is (one of several `newsalert run` on a database): every scrape of a
# worker's /metrics carries its id, so a dashboard can tell the workers' counters apart.
WORKER = Gauge("newsalert_worker", "This process's worker id (value 1)", ["worker"], registry=REGISTRY)
OUTBOX_DEPTH = Gauge("newsalert_outbox_depth", "Alerts queued, not yet delivered", registry=REGISTRY)
OUTBOX_OLDEST = Gauge(
    "newsalert_outbox_oldest_age_seconds", "Age of the oldest queued alert (0 when none)", registry=REGISTRY
)

# Failure reasons are free text ("HTTP 503 …", "timed out after 30s"): a fixed set keeps the
# label's cardinality bounded.
REASONS = (
    "gone",
    "blocked",
    "rate_limited",
    "http_5xx",
    "http_4xx",
    "timeout",
    "too_large",
    "not_a_feed",
    "parse_timeout",  # ran past the parse budget: the worker process was stopped and replaced
    "parse_crashed",  # the worker process died while reading the body
    "network",
)


def failure_reason(error: FeedError) -> str:
    if isinstance(error, ParseAborted):
        return "parse_timeout" if error.timed_out else "parse_crashed"
    if isinstance(error, ParseError):
        return "not_a_feed"
    if isinstance(error, FetchError):
        if error.gone:
            return "gone"
        if error.blocked:
            return "blocked"
        if error.status == 429:
            return "rate_limited"
        if error.status is not None and error.status >= 500:
            return "http_5xx"
        if error.status is not None and error.status >= 400:
            return "http_4xx"
    reason = error.reason.lower()
    if "timed out" in reason or "timeout" in reason:
        return "timeout"
    if "too large" in reason:
        return "too_large"
    return "network"


# -- what the pipeline and the deliverer call ---------------------------------------------------


def set_worker(worker: str) -> None:
    WORKER.clear()
    WORKER.labels(worker).set(1)


def polled(source: str) -> None:
    POLLS.labels(source).inc()


def fetch_failed(source: str, error: FeedError) -> None:
    FETCH_FAILURES.labels(source, failure_reason(error)).inc()


def new_items(source: str, count: int) -> None:
    if count:
        ITEMS.labels(source).inc(count)


def matched(watchlists: Iterable[str]) -> None:
    for name in watchlists:
        MATCHES.labels(name).inc()


def alert_sent(queued_at: datetime | None, sent_at: datetime) -> None:
    ALERTS_SENT.inc()
    if queued_at is not None:
        DELIVERY_LATENCY.observe(max(0.0, (sent_at - queued_at).total_seconds()))


# -- exposition ----------------------------------------------------------------------------------


def refresh_outbox(store: Store, now: datetime | None = None) -> None:
    """Set the outbox gauges from the database (they describe state, not events)."""
    summary = store.outbox.outbox_summary()
    OUTBOX_DEPTH.set(summary.queued)
    age = 0.0
    if summary.oldest_created_at is not None:
        age = ((now or datetime.now(UTC)) - summary.oldest_created_at).total_seconds()
    OUTBOX_OLDEST.set(max(0.0, age))


def render(store_path: str | None = None) -> tuple[bytes, str]:
    """(body, content type) for `GET /metrics`. With ``store_path`` the outbox gauges are read from
    the database first (read-only; a failure leaves them as they were)."""
    if store_path is not None:
        try:
            store = Store.open_readonly(store_path)
            try:
                refresh_outbox(store)
            finally:
                store.close()
        except Exception as e:  # metrics must still be served when the database is busy or gone
            log.warning("metrics: outbox gauges not refreshed: %s", e)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
