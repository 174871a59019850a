"""The Bolt App factory and the two ways it meets Slack: HTTP and Socket Mode.

HTTP: one ThreadingHTTPServer serves Bolt at ``POST /slack/events`` (slash commands,
interactivity and events on one path), plus ``GET /healthz``, ``GET /metrics`` and, with WebSub on,
the hubs' callbacks under ``/websub/`` (bot/ingest/websub.py). Bolt verifies
every POST with the signing secret before any listener runs: a bad signature, or a timestamp
more than 5 minutes off, is a 401 and nothing else happens.

Socket Mode: the app connects out with the app-level token (xapp-…); no public URL needed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk.errors import SlackApiError

from bot.app.context import AppContext
from bot.errors import SlackAuthError
from bot.ingest.websub import CALLBACK_PATH, WebSub
from bot.slack.client import web_client
from bot.slack.listeners import register_listeners
from bot.store import Store

log = logging.getLogger("newsalert.slack")

EVENTS_PATH = "/slack/events"
MAX_BODY = 1024 * 1024  # Slack's payloads are a few kB; anything this big is not from Slack
# Bolt runs listeners on this pool and a request is answered when its listener calls ack(): the
# pool must never be full of slow work, or a slash command misses Slack's 3 seconds. Listeners
# hand slow work (App Home renders, Web API reads) to bot.slack.listeners.slow instead.
LISTENER_THREADS = 32
READ_TIMEOUT = 10.0  # seconds a client may take to send its headers and body
MAX_CONNECTIONS = 64  # connections served at once; more are answered 503 at once and closed


class _QuietClientWarning(logging.Filter):
    # Bolt warns when given a client while SLACK_BOT_TOKEN is in the environment; the client
    # carries that very token (and the API URL, which is why a client is given at all).
    def filter(self, record: logging.LogRecord) -> bool:
        return "token` will be unused" not in record.getMessage()


def create_app(ctx: AppContext, *, socket_mode: bool = False) -> App:
    settings = ctx.settings
    logging.getLogger("slack_bolt.App").addFilter(_QuietClientWarning())
    # Bolt's own calls (views.publish, chat.update, reads) retry safely; listeners post through
    # posting_client, which never retries (bot/slack/client.py).
    client = web_client(settings.slack_token, settings.slack_api_url)
    app = App(
        client=client,
        signing_secret=settings.slack_signing_secret or "",
        # `newsalert run` already checked the token with auth.test (exit 4 when it is bad).
        token_verification_enabled=False,
        # Socket Mode requests come over the app's own authenticated connection, unsigned.
        request_verification_enabled=not socket_mode,
        # Listeners ack first and work after: the HTTP answer goes out on ack().
        process_before_response=False,
        listener_executor=ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="newsalert-listener"),
    )
    app.middleware(_once_per_event(ctx.settings.db_path))
    register_listeners(app, ctx)
    return app


def _once_per_event(db_path: str) -> Callable[..., BoltResponse]:
    """A middleware: an Events API event is handled once across all workers. Slack sends an event
    again (X-Slack-Retry-Num) when the first answer was slow or lost, maybe to another worker behind
    the load balancer, so what was seen is kept in the database, not in a process's memory."""

    def once_per_event(body: dict, next: Callable[[], BoltResponse]) -> BoltResponse:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if isinstance(event_id, str) and event_id:
            with Store.open(db_path) as store:
                first = store.leases.first_slack_event(event_id, datetime.now(UTC))
            if not first:
                log.info("slack event already handled event_id=%s (a retry)", event_id)
                return BoltResponse(status=200, body="")
        return next()

    return once_per_event


def serve_http(
    ctx: AppContext,
    *,
    host: str,
    port: int,
    scheduler_alive: Callable[[], bool],
    websub: WebSub | None = None,
) -> None:
    """Serve until interrupted (SIGTERM / Ctrl-C reach here as SystemExit / KeyboardInterrupt)."""
    server = make_server(
        create_app(ctx), ctx, host=host, port=port, scheduler_alive=scheduler_alive, websub=websub
    )
    log.info("slack app listening on http://%s:%d%s", host, server.server_address[1], EVENTS_PATH)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def make_server(
    app: App,
    ctx: AppContext,
    *,
    host: str,
    port: int,
    scheduler_alive: Callable[[], bool],
    websub: WebSub | None = None,
) -> ThreadingHTTPServer:
    store_path = ctx.settings.db_path
    # A pushed feed is bounded like a fetched one: in size, and in the time it takes to arrive.
    push_limit, push_seconds = ctx.settings.max_response_bytes, float(ctx.settings.fetch_timeout)

    class Handler(BaseHTTPRequestHandler):
        server_version = "newsalert"
        timeout = READ_TIMEOUT  # the socket's timeout: a slow or silent client cannot hold a thread

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http %s " + format, self.client_address[0], *args)

        def do_POST(self) -> None:
            path, _, query = self.path.partition("?")
            if websub is not None and path.startswith(CALLBACK_PATH):
                self._websub_push(path[len(CALLBACK_PATH) :])
                return
            if path != EVENTS_PATH:
                self._send(404, "text/plain", "not found")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._send(413, "text/plain", "request too large")
                return
            try:
                body = self.rfile.read(length).decode("utf-8")
            except UnicodeDecodeError:
                self._send(400, "text/plain", "not UTF-8")
                return
            headers = {key.lower(): value for key, value in self.headers.items()}
            response = app.dispatch(BoltRequest(body=body, query=query, headers=headers))
            content_type = (response.headers.get("content-type") or ["text/plain;charset=utf-8"])[0]
            self._send(response.status, content_type, response.body or "")

        def do_GET(self) -> None:
            from bot.ops.http import route

            path, _, query = self.path.partition("?")
            if websub is not None and path.startswith(CALLBACK_PATH):
                hub = dict(parse_qsl(query, keep_blank_values=True))
                reply = websub.verify(path[len(CALLBACK_PATH) :], hub)
                self._send(reply.status, "text/plain", reply.body)
                return
            found = route(self.path, store_path, scheduler_alive)
            if found is None:
                self._send(404, "text/plain", "not found")
            else:
                self._send(found[0], found[1], found[2])

        def _websub_push(self, callback: str) -> None:
            assert websub is not None
            try:
                length = int(self.headers.get("Content-Length") or -1)
            except ValueError:
                length = -1
            if length < 0:
                self._send(411, "text/plain", "Content-Length required")
                return
            if length > push_limit:
                self._send(413, "text/plain", "pushed body too large")
                return
            body = self._read(length, time.monotonic() + push_seconds)
            if body is None:
                self._send(408, "text/plain", "pushed body too slow")
                return
            headers = {key.lower(): value for key, value in self.headers.items()}
            reply = websub.receive(callback, headers, body)
            self._send(reply.status, "text/plain", reply.body)

        def _read(self, length: int, deadline: float) -> bytes | None:
            """``length`` bytes of the request body, or None if they do not all arrive by ``deadline``."""
            data = bytearray()
            try:
                while len(data) < length:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self.connection.settimeout(left)
                    chunk = self.rfile.read1(min(65536, length - len(data)))
                    if not chunk:
                        return None
                    data += chunk
            except OSError:  # socket.timeout included
                return None
            return bytes(data)

        def _send(self, status: int, content_type: str, body: str | bytes) -> None:
            data = body.encode("utf-8") if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = _CappedServer((host, port), Handler)
    server.daemon_threads = True
    return server


class _CappedServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS at once: beyond that, 503 and close."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        if not self._slots.acquire(blocking=False):
            log.warning("http: %d connections open, refusing %s", MAX_CONNECTIONS, client_address[0])
            with contextlib.suppress(OSError):  # the client may be gone already
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def run_socket_mode(ctx: AppContext) -> None:
    """Connect out to Slack with the app-level token and serve until interrupted."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    assert ctx.settings.slack_app_token
    handler = SocketModeHandler(create_app(ctx, socket_mode=True), ctx.settings.slack_app_token)
    log.info("slack app connecting in Socket Mode")
    try:
        try:
            handler.connect()
        except SlackApiError as e:
            # apps.connections.open refused the app-level token: say so, as for a bad bot token.
            error = e.response.get("error", "unknown_error")
            raise SlackAuthError(f"Slack refused SLACK_APP_TOKEN for Socket Mode: {error}") from None
        threading.Event().wait()  # the Socket Mode client's threads serve; SIGTERM ends the wait
    finally:
        handler.close()
