"""WebSub subscriber (W3C Recommendation, 2018): subscribe to the hub a feed advertises, answer the
hub's verification of intent, accept content it pushes when signed with the subscription's
secret, and renew leases before they run out.

The protocol and the store calls are here; the HTTP server of `newsalert run --http`
(bot/slack/app.py) routes ``CALLBACK_PATH`` requests to ``WebSub.verify`` and ``WebSub.receive``,
and the scheduler runs ``WebSub.maintain`` and ingests what was pushed (bot/service.py) through
the poll's own path (bot/ingest/poll.py ``ingest_pushed``). Polling goes on as the fallback, at
the source's ceiling while a lease is live. Hubs are found by polling: bot/ingest/hints.py reads
them, and the poll records them with the source.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from yarl import URL

from bot.config import Settings
from bot.ingest.fetch import GuardedResolver, address_problem, backoff_delay
from bot.model import HubSubscription
from bot.store import Store

log = logging.getLogger("newsalert.websub")

CALLBACK_PATH = "/websub/"
RENEW_AT = 0.8  # of a lease: renewed once this much of it has passed ...
RENEW_MARGIN = timedelta(minutes=1)  # ... or half of it, when 20% is less than a minute
VERIFY_TIMEOUT = timedelta(minutes=5)  # a request the hub has not verified by then is sent again
RETRY_BASE, RETRY_CAP = 300.0, 86400.0  # a failed or denied request waits 5 min, doubling to a day
MAX_LEASE = 366 * 86400  # a lease the hub says is longer is taken as this
# X-Hub-Signature methods WebSub allows; sha1 only because hubs still use it.
SIGNATURES: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
PENDING = ("requested", "renewing")
LIVE = ("active", "renewing")

Pushed = Callable[[str, bytes, dict[str, str]], None]  # (source, body, headers): ingest it


@dataclass(frozen=True)
class Reply:
    """What the callback answers a hub."""

    status: int
    body: bytes = b""


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``X-Hub-Signature`` is ``method=hex`` of an allowed method and is the HMAC of
    ``body`` with ``secret``. Compared in constant time."""
    method, _, digest = (header or "").strip().partition("=")
    algorithm = SIGNATURES.get(method.strip().lower())
    if algorithm is None or not digest:
        return False
    expected = hmac.new(secret.encode(), body, algorithm).hexdigest()
    return hmac.compare_digest(expected, digest.strip().lower())


def renewal_due(sub: HubSubscription, now: datetime) -> bool:
    """Time to renew: 80% of the lease has passed, or half of a lease too short for 20% of it to
    leave a minute (upkeep runs every second or so, and a busy bot may run it late)."""
    if sub.expires_at is None or sub.verified_at is None:
        return True
    lease = sub.expires_at - sub.verified_at
    margin = max(lease * (1 - RENEW_AT), min(lease / 2, RENEW_MARGIN))
    return now >= sub.expires_at - margin


class WebSub:
    """One bot's subscriptions; ``base_url`` (settings) is where hubs reach its callback."""

    def __init__(
        self,
        settings: Settings,
        on_push: Pushed,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        assert settings.websub_base_url, "WebSub needs [websub] base_url or NEWSALERT_PUBLIC_URL"
        self.settings = settings
        self.on_push = on_push
        self.now = now
        self.base_url = settings.websub_base_url.rstrip("/")

    def callback_url(self, callback: str) -> str:
        return f"{self.base_url}{CALLBACK_PATH}{callback}"

    def _store(self) -> Store:
        return Store.open(self.settings.db_path)

    # --- the hub calls us --------------------------------------------------------------------

    def verify(self, callback: str, query: Mapping[str, str]) -> Reply:
        """The hub's GET: verification of intent (echo hub.challenge), or a denial.

        The challenge is echoed only for a subscription this bot asked for (or holds) on that
        callback, for that topic and mode; anything else is a 404, so nobody can subscribe this
        callback to something else."""
        mode, topic = query.get("hub.mode", ""), query.get("hub.topic", "")
        challenge = query.get("hub.challenge", "")
        now = self.now()
        with self._store() as store:
            sub = store.websub.by_callback(callback)
            if sub is None or sub.topic != topic:
                log.warning("websub verification refused callback=%s mode=%s: unknown", callback, mode)
                return Reply(404, b"unknown subscription")
            if mode == "denied":
                reason = query.get("hub.reason", "") or "no reason given"
                log.warning("websub denied source=%r hub=%s reason=%s", sub.source, sub.hub, reason)
                retry = now + timedelta(seconds=backoff_delay(sub.attempts + 1, RETRY_BASE, RETRY_CAP, _one))
                with store.transaction():
                    store.websub.record_failure(sub.source, "denied", f"denied: {reason}"[:500], retry)
                return Reply(200)
            if not challenge:
                return Reply(400, b"hub.challenge missing")
            if mode == "subscribe" and sub.state in (*PENDING, "active"):
                asked = sub.lease_seconds or self.settings.websub_lease
                lease = _lease(query.get("hub.lease_seconds"), asked)
                with store.transaction():
                    store.websub.record_verified(sub.source, lease, now, now + timedelta(seconds=lease))
                log.info("websub subscribed source=%r hub=%s lease=%ds", sub.source, sub.hub, lease)
                return Reply(200, challenge.encode())
            if mode == "unsubscribe" and sub.state == "unsubscribing":
                with store.transaction():
                    store.websub.delete(sub.source)
                log.info("websub unsubscribed source=%r hub=%s", sub.source, sub.hub)
                return Reply(200, challenge.encode())
        log.warning("websub verification refused source=%r mode=%s state=%s", sub.source, mode, sub.state)
        return Reply(404, b"not pending")

    def receive(self, callback: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """The hub's POST: a content distribution. ``headers`` are lower-cased.

        Only a push signed with the subscription's secret is ingested. An unsigned or wrongly
        signed one is acknowledged (2xx, as WebSub requires, so a forger learns nothing) and
        dropped: nothing of it is stored."""
        with self._store() as store:
            sub = store.websub.by_callback(callback)
        if sub is None or sub.state not in LIVE:
            return Reply(410, b"no such subscription")  # the hub may drop it
        if not signature_valid(sub.secret, body, headers.get("x-hub-signature")):
            log.warning(
                "websub push dropped source=%r: %s",
                sub.source,
                "bad signature" if headers.get("x-hub-signature") else "unsigned",
            )
            return Reply(202)
        self.on_push(sub.source, body, dict(headers))
        return Reply(202)

    # --- we call the hub -----------------------------------------------------------------------

    def maintain(self) -> int:
        """Subscribe to newly advertised hubs, renew leases, retry what failed, unsubscribe what
        no active source advertises any more. Returns how many requests were sent."""
        now = self.now()
        with self._store() as store:
            advertised = store.websub.advertised_hubs()
            held = {s.source: s for s in store.websub.subscriptions()}
            wanted = self._requests(advertised, held, now)
            if not wanted:
                return 0
            # Recorded before the hub is asked: many hubs verify before they answer the request.
            with store.transaction():
                for sub in wanted:
                    store.websub.record_request(sub)
            errors = asyncio.run(_send_all([(s, self._form(s)) for s in wanted], self.settings))
            with store.transaction():
                for sub, error in zip(wanted, errors, strict=True):
                    if error is None:
                        continue
                    log.warning("websub request failed source=%r hub=%s: %s", sub.source, sub.hub, error)
                    attempts = held.get(sub.source, sub).attempts + 1
                    retry = now + timedelta(seconds=backoff_delay(attempts, RETRY_BASE, RETRY_CAP, _one))
                    store.websub.record_failure(sub.source, "failed", error[:500], retry)
        return len(wanted)

    def _requests(
        self,
        advertised: Mapping[str, tuple[str, str]],
        held: Mapping[str, HubSubscription],
        now: datetime,
    ) -> list[HubSubscription]:
        out = []
        for source, (hub, topic) in advertised.items():
            sub = held.get(source)
            if sub is None or (sub.hub, sub.topic) != (hub, topic) or sub.state == "unsubscribing":
                out.append(self._new(source, hub, topic, now))  # a new callback and secret
            elif sub.state == "active" and renewal_due(sub, now):
                out.append(replace(sub, state="renewing", requested_at=now))
            elif (sub.state in PENDING and now - sub.requested_at > VERIFY_TIMEOUT) or (
                sub.state in ("failed", "denied") and (sub.retry_at is None or sub.retry_at <= now)
            ):
                out.append(replace(sub, state="requested", requested_at=now))
        for source, sub in held.items():
            if source in advertised:
                continue
            if sub.state != "unsubscribing":
                out.append(replace(sub, state="unsubscribing", requested_at=now))
            elif now - sub.requested_at > VERIFY_TIMEOUT:
                out.append(replace(sub, requested_at=now))  # asked once more; the row goes when verified
        return out

    def _new(self, source: str, hub: str, topic: str, now: datetime) -> HubSubscription:
        return HubSubscription(
            source=source,
            hub=hub,
            topic=topic,
            callback=secrets.token_urlsafe(18),
            secret=secrets.token_hex(32),  # WebSub: under 200 bytes
            state="requested",
            requested_at=now,
            lease_seconds=self.settings.websub_lease,
        )

    def _form(self, sub: HubSubscription) -> dict[str, str]:
        form = {
            "hub.mode": "unsubscribe" if sub.state == "unsubscribing" else "subscribe",
            "hub.topic": sub.topic,
            "hub.callback": self.callback_url(sub.callback),
        }
        if form["hub.mode"] == "subscribe":
            form["hub.secret"] = sub.secret
            form["hub.lease_seconds"] = str(self.settings.websub_lease)
        return form


def _one() -> float:
    return 1.0  # the longest wait of the backoff step: a hub is not a herd to spread


def _lease(value: str | None, asked: int) -> int:
    """The lease the hub granted (hub.lease_seconds), else the one asked for."""
    value = (value or "").strip()
    if value.isdigit() and value.isascii() and len(value) <= 12:
        return max(1, min(int(value), MAX_LEASE))
    return asked


def _target_problem(url: str, allow_private: bool) -> str | None:
    """Why a hub URL must not be posted to (the feed that named it is untrusted), or None."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as e:
        return f"invalid hub URL: {e}"
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        return f"only http and https hubs are used, not {url!r}"
    if allow_private:
        return None
    try:
        ipaddress.ip_address(parsed.raw_host.strip("[]"))
    except ValueError:
        return None  # a name: its addresses are checked by GuardedResolver when connecting
    problem = address_problem(parsed.raw_host.strip("[]"))
    return f"blocked: {parsed.raw_host} is {problem}" if problem else None


async def _send_all(
    requests: Sequence[tuple[HubSubscription, dict[str, str]]], settings: Settings
) -> list[str | None]:
    """POST each form to its hub, at most ``concurrency`` at once; per request, None or why it failed.

    The same limits as fetching a feed: a timeout for the whole request, no redirects, no
    private addresses unless allowed, and only a short answer is read."""
    semaphore = asyncio.Semaphore(settings.concurrency)
    timeout = aiohttp.ClientTimeout(total=settings.fetch_timeout)
    owned = aiohttp.DefaultResolver()
    resolver = owned if settings.allow_private_sources else GuardedResolver(owned)
    connector = aiohttp.TCPConnector(limit=settings.concurrency, resolver=resolver)
    try:
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, headers={"User-Agent": settings.user_agent}, trust_env=False
        ) as session:

            async def one(sub: HubSubscription, form: dict[str, str]) -> str | None:
                if problem := _target_problem(sub.hub, settings.allow_private_sources):
                    return problem
                async with semaphore:
                    try:
                        async with session.post(sub.hub, data=form, allow_redirects=False) as resp:
                            text = (await resp.content.read(500)).decode("utf-8", "replace")
                            if 200 <= resp.status < 300:
                                return None
                            return f"HTTP {resp.status}: {' '.join(text.split())[:200]}"
                    except TimeoutError:
                        return f"timed out after {settings.fetch_timeout}s"
                    except (aiohttp.ClientError, OSError) as e:
                        return f"{type(e).__name__}: {e}"

            return list(await asyncio.gather(*(one(sub, form) for sub, form in requests)))
    finally:
        await owned.close()
