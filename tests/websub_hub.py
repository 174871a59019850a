"""A WebSub hub (and its publisher) on loopback, speaking the W3C WebSub wire format.

Subscribers POST ``hub.mode``/``hub.topic``/``hub.callback``/``hub.secret``/``hub.lease_seconds``
form-encoded to the hub URL and get 202 Accepted; the hub then verifies the intent on its own
thread with a GET to the callback (``hub.mode``, ``hub.topic``, ``hub.challenge``,
``hub.lease_seconds``) and holds the subscription only if the callback echoed the challenge.
``publish`` POSTs content to every live subscription of a topic, with ``Link: rel="hub"`` and
``rel="self"`` headers and ``X-Hub-Signature: sha256=<HMAC of the body with hub.secret>``; a test
can forge the signature or leave it out. The hub grants at most ``max_lease`` seconds, so a test
can watch a lease run out and be renewed.

It also serves topics as a publisher does (``serve_topic``): the feed, with one ``Link`` header
for the hub and another for the topic's own URL, as separate header lines.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Subscription:
    topic: str
    callback: str
    secret: str | None
    lease: int
    expires: float  # time.monotonic() when the lease runs out


@dataclass
class Verification:
    mode: str
    topic: str
    callback: str
    status: int
    echoed: bool
    lease: int | None = None
    at: float = field(default_factory=time.monotonic)  # when the hub got the answer


@dataclass
class Delivery:
    topic: str
    callback: str
    status: int
    signature: str | None


@dataclass
class _Topic:
    body: bytes
    content_type: str = "application/rss+xml"
    hits: int = 0


class WebSubHub:
    def __init__(self, *, max_lease: int = 86400) -> None:
        self.max_lease = max_lease
        self.subscriptions: dict[tuple[str, str], Subscription] = {}  # (topic, callback)
        self.requests: list[dict[str, str]] = []  # every subscription request's form
        self.verifications: list[Verification] = []
        self.deliveries: list[Delivery] = []
        self.topics: dict[str, _Topic] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hub"

    def topic_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def start(self) -> WebSubHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def serve_topic(self, path: str, body: str | bytes, content_type: str = "application/rss+xml") -> str:
        self.topics[path] = _Topic(body.encode() if isinstance(body, str) else body, content_type)
        return self.topic_url(path)

    def live(self, topic: str) -> list[Subscription]:
        now = time.monotonic()
        with self.lock:
            return [s for s in self.subscriptions.values() if s.topic == topic and s.expires > now]

    def lapses(self, topic: str) -> int:
        """How often a subscription to ``topic`` ran out before its renewal was verified."""
        verified = self.verified(topic)
        return sum(1 for a, b in itertools.pairwise(verified) if b.at > a.at + (a.lease or 0))

    def verified(self, topic: str, mode: str = "subscribe") -> list[Verification]:
        with self.lock:
            return [v for v in self.verifications if v.topic == topic and v.mode == mode and v.echoed]

    def publish(
        self, topic: str, body: str | bytes, *, content_type: str = "application/rss+xml", forge: str = ""
    ) -> list[int]:
        """POST ``body`` to every live subscriber of ``topic``; their HTTP statuses.

        ``forge``: "secret" signs with a wrong secret, "unsigned" sends no signature, "method"
        uses a method WebSub does not allow."""
        data = body.encode() if isinstance(body, str) else body
        statuses = []
        for sub in self.live(topic):
            headers = {
                "Content-Type": content_type,
                "Link": f'<{self.url}>; rel="hub", <{topic}>; rel="self"',
            }
            secret = sub.secret
            signature = None
            if secret is not None and forge != "unsigned":
                key = ("not the " + secret) if forge == "secret" else secret
                method = "md5" if forge == "method" else "sha256"
                digest = hmac.new(key.encode(), data, method).hexdigest()
                signature = headers["X-Hub-Signature"] = f"{method}={digest}"
            status = _request(sub.callback, data, headers)[0]
            with self.lock:
                self.deliveries.append(Delivery(topic, sub.callback, status, signature))
            statuses.append(status)
        return statuses

    # --- the hub's side of subscriptions ---------------------------------------------------

    def _subscribe(self, form: dict[str, str]) -> tuple[int, str]:
        with self.lock:
            self.requests.append(form)
        mode, topic, callback = form.get("hub.mode"), form.get("hub.topic"), form.get("hub.callback")
        if mode not in ("subscribe", "unsubscribe") or not topic or not callback:
            return 400, "hub.mode, hub.topic and hub.callback are required"
        if not callback.startswith(("http://", "https://")):
            return 400, "hub.callback must be an http(s) URL"
        lease = min(int(form.get("hub.lease_seconds") or self.max_lease), self.max_lease)
        secret = form.get("hub.secret")
        # Verification of intent happens after the 202, as hubs do it.
        threading.Thread(
            target=self._verify, args=(mode, topic, callback, secret, lease), daemon=True
        ).start()
        return 202, ""

    def _verify(self, mode: str, topic: str, callback: str, secret: str | None, lease: int) -> None:
        challenge = secrets.token_urlsafe(16)
        query = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
        if mode == "subscribe":
            query["hub.lease_seconds"] = str(lease)
        separator = "&" if "?" in callback else "?"
        status, body = _request(callback + separator + urllib.parse.urlencode(query), None, {})
        echoed = 200 <= status < 300 and body.decode("utf-8", "replace") == challenge
        with self.lock:
            self.verifications.append(
                Verification(mode, topic, callback, status, echoed, lease if mode == "subscribe" else None)
            )
            if not echoed:
                return
            if mode == "subscribe":
                self.subscriptions[(topic, callback)] = Subscription(
                    topic, callback, secret, lease, time.monotonic() + lease
                )
            else:
                self.subscriptions.pop((topic, callback), None)

    def deny(self, topic: str, callback: str, reason: str) -> int:
        """Tell a subscriber its subscription was refused (hub.mode=denied)."""
        query = urllib.parse.urlencode({"hub.mode": "denied", "hub.topic": topic, "hub.reason": reason})
        return _request(f"{callback}?{query}", None, {})[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if self.path != "/hub":
                    self._send(404, b"not a hub", {})
                    return
                status, text = hub._subscribe(form)
                self._send(status, text.encode(), {})

            def do_GET(self) -> None:
                topic = hub.topics.get(self.path)
                if topic is None:
                    self._send(404, b"no such topic", {})
                    return
                topic.hits += 1
                # Two Link header lines, as publishers send them: the bot must read both.
                links = [
                    ("Link", f'<{hub.url}>; rel="hub"'),
                    ("Link", f'<{hub.topic_url(self.path)}>; rel="self"'),
                ]
                self._send(200, topic.body, {"Content-Type": topic.content_type}, links)

            def _send(
                self, status: int, body: bytes, headers: dict[str, str], extra: list[tuple[str, str]] = ()
            ) -> None:
                self.send_response(status)
                for key, value in [*headers.items(), *extra]:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _request(url: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=data, headers=headers, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""
