"""Prometheus metrics (`GET /metrics`), every name prefixed ``newsalert_``.

The pipeline and the deliverer count what happens through the small functions below (one line at
each place); `render` formats the module's own registry (not prometheus_client's global one, so
nothing unprefixed is exported). In HTTP mode the Slack app's server serves `render` and
`bot.status.healthz`; in Socket Mode `start_metrics_server` serves both on ``--metrics-port``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from bot.errors import FeedError, FetchError, ParseError
from bot.ops.health import healthz
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
    "network",
)


def failure_reason(error: FeedError) -> str:
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


class MetricsServer:
    """The server `start_metrics_server` started; call it to stop. ``port`` is the bound port."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread):
        self._server, self._thread = server, thread
        self.port: int = server.server_address[1]

    def __call__(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(port: int, store_path: str, scheduler_alive: Callable[[], bool]) -> MetricsServer:
    """Serve `/healthz` and `/metrics` on 0.0.0.0:``port`` from a daemon thread (Socket Mode has no
    HTTP server of its own). Returns a callable that stops it; port 0 picks a free port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = render(store_path)
                self._reply(200, body, content_type)
            elif path == "/healthz":
                status, verdict = healthz(store_path, scheduler_alive())
                self._reply(status, json.dumps(verdict).encode(), "application/json")
            else:
                self._reply(404, b"not found: try /healthz or /metrics\n", "text/plain; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics server: " + format, *args)  # probes every few seconds: not at INFO

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="newsalert-metrics", daemon=True)
    thread.start()
    log.info("metrics server listening port=%d paths=/healthz,/metrics", server.server_address[1])
    return MetricsServer(server, thread)
