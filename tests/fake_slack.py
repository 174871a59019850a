"""A fake Slack Web API on loopback that answers like Slack and records every call.

Point slack_sdk at it with `SLACK_API_URL=http://127.0.0.1:PORT/api/`. It speaks the real wire
format: POST /api/<method>, bearer token, JSON or form bodies, `{"ok": …}` answers, HTTP 429 with
Retry-After for rate limits. Tests script failures with `fail_next`.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

VALID_TOKEN = "xoxb-fake-token"


@dataclass
class Call:
    method: str
    params: dict
    headers: dict


@dataclass
class _Failure:
    status: int
    body: dict
    headers: dict = field(default_factory=dict)


class FakeSlack:
    def __init__(self, token: str = VALID_TOKEN):
        self.token = token
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self._failures: dict[str, list[_Failure]] = {}
        self._ts = itertools.count(1)
        # (channel, ts) -> the message as Slack now holds it (chat.update changes it)
        self.messages: dict[tuple[str, str], dict] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def start(self) -> FakeSlack:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(
        self, method: str, *, status: int = 200, error: str = "internal_error", headers: dict | None = None
    ) -> None:
        """The next call to ``method`` gets this answer instead of success."""
        with self.lock:
            self._failures.setdefault(method, []).append(
                _Failure(status, {"ok": False, "error": error}, headers or {})
            )

    def updates(self) -> list[dict]:
        """Bodies of chat.update calls that Slack accepted."""
        with self.lock:
            return [c.params for c in self.calls if c.method == "chat.update" and c.params.get("_ok")]

    def top_level(self, channel: str) -> list[dict]:
        """Messages in a channel that are not thread replies, as Slack now holds them."""
        with self.lock:
            return [m for (ch, _), m in self.messages.items() if ch == channel and "thread_ts" not in m]

    def replies(self, channel: str, thread_ts: str) -> list[dict]:
        with self.lock:
            return [
                m for (ch, _), m in self.messages.items() if ch == channel and m.get("thread_ts") == thread_ts
            ]

    def posts(self) -> list[dict]:
        """Bodies of chat.postMessage calls that Slack accepted."""
        with self.lock:
            return [c.params for c in self.calls if c.method == "chat.postMessage" and c.params.get("_ok")]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                method = self.path.removeprefix("/api/").split("?")[0]
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if (self.headers.get("Content-Type") or "").startswith("application/json"):
                    params = json.loads(raw or b"{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                status, body, headers = fake._answer(method, params, dict(self.headers))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def _answer(self, method: str, params: dict, headers: dict) -> tuple[int, dict, dict]:
        with self.lock:
            call = Call(method, params, headers)
            self.calls.append(call)
            queue = self._failures.get(method)
            if queue:
                failure = queue.pop(0)
                return failure.status, failure.body, failure.headers
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            if method == "auth.test":
                return (
                    200,
                    {
                        "ok": True,
                        "url": "https://fake.slack.test/",
                        "team": "Fake T&S",
                        "user": "newsalert",
                        "team_id": "T0FAKE",
                        "user_id": "U0BOT",
                        "bot_id": "B0BOT",
                    },
                    {},
                )
            if method == "chat.postMessage":
                if not params.get("channel"):
                    return 200, {"ok": False, "error": "channel_not_found"}, {}
                if not params.get("text") and not params.get("blocks"):
                    return 200, {"ok": False, "error": "no_text"}, {}
                if params.get("thread_ts") and (params["channel"], params["thread_ts"]) not in self.messages:
                    return 200, {"ok": False, "error": "thread_not_found"}, {}
                ts = f"1770000000.{next(self._ts):06d}"
                params["_ok"] = True
                message = {
                    "type": "message",
                    "text": params.get("text", ""),
                    "ts": ts,
                    "blocks": params.get("blocks", []),
                    "bot_id": "B0BOT",
                }
                if params.get("thread_ts"):
                    message["thread_ts"] = params["thread_ts"]
                self.messages[(params["channel"], ts)] = message
                return 200, {"ok": True, "channel": params["channel"], "ts": ts, "message": message}, {}
            if method == "chat.update":
                original = self.messages.get((params.get("channel"), params.get("ts")))
                if original is None:
                    return 200, {"ok": False, "error": "message_not_found"}, {}
                original.update(text=params.get("text", ""), blocks=params.get("blocks", []))
                params["_ok"] = True
                return 200, {"ok": True, "channel": params["channel"], "ts": params["ts"]}, {}
            return 200, {"ok": False, "error": "unknown_method"}, {}
