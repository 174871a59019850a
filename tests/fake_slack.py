"""A fake Slack Web API on loopback that answers like Slack and records every call.

Point slack_sdk at it with `SLACK_API_URL=http://127.0.0.1:PORT/api/`. It speaks the real wire
format: POST /api/<method>, bearer token, JSON or form bodies, `{"ok": …}` answers, HTTP 429 with
Retry-After for rate limits. Tests script failures with `fail_next`, slow answers with `slow`,
per-channel rate limits with `rate_limit`, and channel states with `missing` / `not_member`.

It also enforces what newsalert promises on every call: a message post (or a `response_url`
reply) without `unfurl_links=false, unfurl_media=false`, or carrying an image, is recorded in
`violations` (the `slack` fixture fails the test if any were).

It is strict by default, like Slack: a message or view over Slack's documented Block Kit limits
(tests/slack_limits.py: blocks per message and view, section/header/text lengths, context
elements, unknown block types, slack_sdk's own validators) is refused with `invalid_blocks`, and
a response_url body with such blocks is recorded in `violations`. `strict = False` turns it off.

For the Slack app it also answers `chat.postEphemeral`, `views.publish`, `views.open` (`modals`), `users.info`
(`admins`, `owners`), `conversations.info` / `.join` / `.members` (`private`, `not_member`,
`members`) and `chat.getPermalink`, and serves response URLs: `response_url()` gives one, and
the JSON posted to it is kept in `responses`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs

from tests.slack_limits import message_problems, view_problems

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
        self.missing: set[str] = set()  # channel_not_found
        self.not_member: set[str] = set()  # not_in_channel
        self.reject_blocks = False  # answer invalid_blocks to any post with blocks
        self.strict = True  # refuse what real Slack refuses (tests/slack_limits.py)
        self.refused: list[str] = []  # why strict mode refused a call: method and problems
        self.violations: list[str] = []
        self.in_flight = self.max_in_flight = 0  # requests being answered at once, and the most seen
        self._slow: dict[str, list[float]] = {}
        self._hurry = threading.Event()  # set by answer_at_once: slow answers being held go out now
        self._limited: dict[str, list[int]] = {}  # channel -> Retry-After values still to answer
        self.admins: set[str] = set()  # users.info is_admin
        self.owners: set[str] = set()  # users.info is_owner
        self.private: set[str] = set()  # conversations.info is_private; conversations.join refuses
        self.members: dict[str, set[str]] = {}  # conversations.members
        self.views: dict[str, dict] = {}  # user -> the Home view last published
        self.modals: list[dict] = []  # views opened with views.open, in order
        self.responses: list[dict] = []  # bodies posted to response URLs, with "_key"
        self._response_keys = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(  # short poll interval: stop() returns in ~20 ms, not 0.5 s
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

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

    def slow(self, method: str, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` take effect at once but answer after ``seconds``."""
        with self.lock:
            self._slow.setdefault(method, []).extend([seconds] * times)
            self._hurry.clear()

    def answer_at_once(self) -> None:
        """Drop the slow answers `slow` scheduled, and send the ones being held: every call answers
        at once again."""
        with self.lock:
            self._slow.clear()
            self._hurry.set()

    def rate_limit(self, channel: str, retry_after: int = 1, *, times: int = 1) -> None:
        """The next ``times`` posts to ``channel`` get HTTP 429 with this Retry-After."""
        with self.lock:
            self._limited.setdefault(channel, []).extend([retry_after] * times)

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

    def calls_to(self, method: str) -> list[dict]:
        """Bodies of every call to ``method`` that Slack accepted."""
        with self.lock:
            return [c.params for c in self.calls if c.method == method and c.params.get("_ok")]

    def response_url(self) -> str:
        """A fresh response URL, as Slack puts in a slash command or a button click."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/respond/{next(self._response_keys)}"

    def responses_to(self, url: str) -> list[dict]:
        key = url.rsplit("/", 1)[-1]
        with self.lock:
            return [r for r in self.responses if r["_key"] == key]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                method = self.path.removeprefix("/api/").split("?")[0]
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/respond/"):
                    fake._respond(self.path.rsplit("/", 1)[-1], json.loads(raw or b"{}"))
                    payload = b"ok"  # what Slack's response URLs answer
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if (self.headers.get("Content-Type") or "").startswith("application/json"):
                    params = json.loads(raw or b"{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                with fake.lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                status, body, headers = fake._answer(method, params, dict(self.headers))
                with fake.lock:
                    delays = fake._slow.get(method)
                    delay = delays.pop(0) if delays else 0.0
                if delay:
                    fake._hurry.wait(delay)  # the call already took effect: only the answer is late
                with fake.lock:
                    fake.in_flight -= 1
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                # The client may have given up waiting (a timeout test): Slack would not notice either.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
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
            channel = params.get("channel", "")
            if method in (
                "chat.postMessage",
                "chat.update",
                "conversations.history",
                "conversations.replies",
            ):
                if not channel or channel in self.missing:
                    return 200, {"ok": False, "error": "channel_not_found"}, {}
                if channel in self.not_member:
                    return 200, {"ok": False, "error": "not_in_channel"}, {}
            if method == "chat.postMessage":
                return self._post(params)
            if method == "chat.update":
                original = self.messages.get((channel, params.get("ts")))
                if original is None:
                    return 200, {"ok": False, "error": "message_not_found"}, {}
                if refusal := self._refuse(method, message_problems(params)):
                    return refusal
                self._check_safe(method, params)
                original.update(text=params.get("text", ""), blocks=params.get("blocks", []))
                params["_ok"] = True
                return 200, {"ok": True, "channel": channel, "ts": params["ts"]}, {}
            if method in ("conversations.history", "conversations.replies"):
                return 200, self._history(method, params), {}
            if method in self._app_methods:
                return self._app_methods[method](self, params)
            return 200, {"ok": False, "error": "unknown_method"}, {}

    # -- what the Slack app calls ----------------------------------------------------------------

    def _respond(self, key: str, body: dict) -> None:
        with self.lock:
            if body.get("unfurl_links") is not False or body.get("unfurl_media") is not False:
                self.violations.append(f"response_url reply without unfurls off: {body.get('text')!r}")
            if "image_url" in json.dumps(body) or '"image"' in json.dumps(body.get("blocks", [])):
                self.violations.append(f"response_url reply carries an image: {body.get('text')!r}")
            if self.strict and (problems := message_problems(body)):
                self.violations.append(f"response_url reply Slack would refuse: {problems}")
            self.responses.append({**body, "_key": key})

    def _refuse(self, method: str, problems: list[str]) -> tuple[int, dict, dict] | None:
        """Slack's answer to a payload over its limits, in strict mode; None when it is fine."""
        if not self.strict or not problems:
            return None
        self.refused.append(f"{method}: {problems}")
        return 200, {"ok": False, "error": "invalid_blocks", "errors": problems}, {}

    def _ephemeral(self, params: dict) -> tuple[int, dict, dict]:
        channel = params.get("channel", "")
        if not channel or channel in self.missing:
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if channel in self.not_member:
            return 200, {"ok": False, "error": "not_in_channel"}, {}
        if not params.get("user"):
            return 200, {"ok": False, "error": "user_not_in_channel"}, {}
        if refusal := self._refuse("chat.postEphemeral", message_problems(params)):
            return refusal
        params["_ok"] = True
        return 200, {"ok": True, "message_ts": self._next_ts()}, {}

    def _views_publish(self, params: dict) -> tuple[int, dict, dict]:
        view = params.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        if not params.get("user_id") or not isinstance(view, dict) or view.get("type") != "home":
            return 200, {"ok": False, "error": "invalid_arguments"}, {}
        if len(view.get("blocks", [])) > 100:
            return 200, {"ok": False, "error": "invalid_blocks"}, {}
        if refusal := self._refuse("views.publish", view_problems(view)):
            return refusal
        params["_ok"] = True
        self.views[params["user_id"]] = view
        return 200, {"ok": True, "view": {"id": "V0HOME", **view}}, {}

    def _views_open(self, params: dict) -> tuple[int, dict, dict]:
        view = params.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        if not params.get("trigger_id"):
            return 200, {"ok": False, "error": "invalid_trigger_id"}, {}
        if not isinstance(view, dict) or view.get("type") != "modal":
            return 200, {"ok": False, "error": "invalid_arguments"}, {}
        if refusal := self._refuse("views.open", view_problems(view)):
            return refusal
        params["_ok"] = True
        self.modals.append(view)
        return 200, {"ok": True, "view": {"id": f"V0MODAL{len(self.modals)}", **view}}, {}

    def _users_info(self, params: dict) -> tuple[int, dict, dict]:
        user = params.get("user", "")
        if not user.startswith(("U", "W")):
            return 200, {"ok": False, "error": "user_not_found"}, {}
        params["_ok"] = True
        info = {
            "id": user,
            "is_admin": user in self.admins or user in self.owners,
            "is_owner": user in self.owners,
        }
        return 200, {"ok": True, "user": info}, {}

    def _conversations_info(self, params: dict) -> tuple[int, dict, dict]:
        channel = params.get("channel", "")
        private = channel in self.private
        # Like Slack: a private channel the bot is not in does not exist for it.
        if not channel or channel in self.missing or (private and channel in self.not_member):
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        params["_ok"] = True
        info = {
            "id": channel,
            "is_channel": not private,
            "is_private": private,
            "is_im": channel.startswith("D"),
            "is_member": channel not in self.not_member,
        }
        return 200, {"ok": True, "channel": info}, {}

    def _conversations_join(self, params: dict) -> tuple[int, dict, dict]:
        channel = params.get("channel", "")
        if not channel or channel in self.missing:
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if channel in self.private:
            return 200, {"ok": False, "error": "method_not_supported_for_channel_type"}, {}
        self.not_member.discard(channel)
        params["_ok"] = True
        return 200, {"ok": True, "channel": {"id": channel, "is_member": True}}, {}

    def _conversations_members(self, params: dict) -> tuple[int, dict, dict]:
        channel = params.get("channel", "")
        if not channel or channel in self.missing:
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        params["_ok"] = True
        members = sorted(self.members.get(channel, set()))
        return 200, {"ok": True, "members": members, "response_metadata": {"next_cursor": ""}}, {}

    def _permalink(self, params: dict) -> tuple[int, dict, dict]:
        channel, ts = params.get("channel", ""), params.get("message_ts", "")
        if (channel, ts) not in self.messages:
            return 200, {"ok": False, "error": "message_not_found"}, {}
        params["_ok"] = True
        link = f"https://fake.slack.test/archives/{channel}/p{ts.replace('.', '')}"
        return 200, {"ok": True, "channel": channel, "permalink": link}, {}

    _app_methods: ClassVar[dict[str, Callable[[FakeSlack, dict], tuple[int, dict, dict]]]] = {
        "chat.postEphemeral": _ephemeral,
        "views.publish": _views_publish,
        "views.open": _views_open,
        "users.info": _users_info,
        "conversations.info": _conversations_info,
        "conversations.join": _conversations_join,
        "conversations.members": _conversations_members,
        "chat.getPermalink": _permalink,
    }

    def _post(self, params: dict) -> tuple[int, dict, dict]:
        channel = params["channel"]
        limited = self._limited.get(channel)
        if limited:
            retry_after = limited.pop(0)
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
        if not params.get("text") and not params.get("blocks"):
            return 200, {"ok": False, "error": "no_text"}, {}
        if self.reject_blocks and params.get("blocks"):
            return 200, {"ok": False, "error": "invalid_blocks"}, {}
        if refusal := self._refuse("chat.postMessage", message_problems(params)):
            return refusal
        if params.get("thread_ts") and (channel, params["thread_ts"]) not in self.messages:
            return 200, {"ok": False, "error": "thread_not_found"}, {}
        self._check_safe("chat.postMessage", params)
        ts = self._next_ts()
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
        if params.get("metadata"):
            metadata = params["metadata"]
            message["metadata"] = json.loads(metadata) if isinstance(metadata, str) else metadata
        self.messages[(channel, ts)] = message
        return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}, {}

    def _next_ts(self) -> str:
        # Like Slack: the epoch time of the post, unique and increasing within a channel.
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _history(self, method: str, params: dict) -> dict:
        """Newest first, like Slack; metadata only with include_all_metadata, like Slack."""
        channel = params["channel"]
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("true", "1")
        if method == "conversations.replies":
            parent = params.get("ts")
            found = [
                m
                for (ch, ts), m in self.messages.items()
                if ch == channel and (ts == parent or m.get("thread_ts") == parent)
            ]
        else:
            found = [m for (ch, _), m in self.messages.items() if ch == channel and "thread_ts" not in m]
        oldest = float(params.get("oldest") or 0)
        found = [m for m in found if float(m["ts"]) >= oldest]
        found.sort(key=lambda m: float(m["ts"]), reverse=method == "conversations.history")
        limit = int(params.get("limit") or 100)
        shown = [{k: v for k, v in m.items() if k != "metadata" or with_metadata} for m in found[:limit]]
        return {"ok": True, "messages": shown, "has_more": len(found) > limit}

    def _check_safe(self, method: str, params: dict) -> None:
        if method == "chat.postMessage" and (
            params.get("unfurl_links") is not False or params.get("unfurl_media") is not False
        ):
            self.violations.append(
                f"{method} without unfurl_links/unfurl_media false: {params.get('text')!r}"
            )
        if '"image"' in json.dumps(params.get("blocks", [])) or "image_url" in json.dumps(params):
            self.violations.append(f"{method} carries an image: {params.get('text')!r}")


def _blocks(params: dict) -> list[dict]:
    blocks = params.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks
