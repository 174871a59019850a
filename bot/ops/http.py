"""The operations endpoints, `GET /healthz` and `GET /metrics`: one router, served by the Slack app's
HTTP server in HTTP mode, and by a small server of their own otherwise (Socket Mode, console)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bot.ops.health import healthz
from bot.ops.metrics import render

log = logging.getLogger("newsalert.metrics")

PATHS = ("/healthz", "/metrics")


def route(path: str, store_path: str, scheduler_alive: Callable[[], bool]) -> tuple[int, str, bytes] | None:
    """(status, content type, body) for an operations path, or None when ``path`` is not one."""
    path = path.partition("?")[0]
    if path == "/healthz":
        status, verdict = healthz(store_path, scheduler_alive())
        return status, "application/json", json.dumps(verdict).encode()
    if path == "/metrics":
        body, content_type = render(store_path)
        return 200, content_type, body
    return None


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
            found = route(self.path, store_path, scheduler_alive)
            if found is None:
                self._reply(404, b"not found: try /healthz or /metrics\n", "text/plain; charset=utf-8")
            else:
                self._reply(found[0], found[2], found[1])

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
