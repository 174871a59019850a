"""A real HTTP server on loopback serving feeds whose responses each test sets."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Response:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/rss+xml"})
    etag: str | None = None
    delay: float = 0.0
    last_modified: str | None = None  # sent as Last-Modified; an equal If-Modified-Since gets a 304


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Response] = {}
        self.requests: list[tuple[str, dict]] = []
        self.times: dict[str, list[float]] = {}  # path -> time.monotonic() of each request for it
        self._released = threading.Event()  # cleared by hold(): requests wait for release()
        self._released.set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        # A short poll interval: stop() returns in ~20 ms instead of serve_forever's 0.5 s.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def serve(self, path: str, body: bytes | str, **kwargs) -> str:
        self.routes[path] = Response(body.encode() if isinstance(body, str) else body, **kwargs)
        return self.url(path)

    def hits(self, path: str) -> int:
        """How many requests asked for ``path`` (query string included)."""
        return sum(1 for requested, _ in self.requests if requested == path)

    def hold(self) -> None:
        """From now on every request waits, unanswered, until release() (or a minute)."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def start(self) -> FeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers)))
                owner.times.setdefault(self.path, []).append(time.monotonic())
                owner._released.wait(60)
                route = owner.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.delay:
                    threading.Event().wait(route.delay)
                if route.etag and self.headers.get("If-None-Match") == route.etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                if route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(route.status)
                for k, v in route.headers.items():
                    self.send_header(k, v)
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

        return Handler
