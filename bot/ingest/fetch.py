"""HTTP fetching: many sources at once, politely, with hard limits.

Conditional GET (ETag / Last-Modified) keeps repeat polls cheap; a timeout and a cap on the
decompressed body keep one bad source from stalling or exhausting the poll. Each source's
outcome is a Fetched or a FetchError: one failure never affects the others.

Sources can be added by people who are not the operator (from Slack), so a source URL is
untrusted: only http(s) is fetched, and unless ``Limits.allow_private`` is set no connection
is ever made to a loopback, private, link-local or otherwise non-public address. The check is
made on the address actually connected to (a resolver wrapper that drops non-public answers,
so there is no second lookup for DNS rebinding to exploit) and on every redirect hop, which
this module follows itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bot.errors import FetchError
from bot.model import Fetched, Source

log = logging.getLogger("newsalert.fetch")

_CHUNK = 64 * 1024

# A server may ask for a pause (429/503 Retry-After) but not for a week of silence.
MAX_RETRY_AFTER = 6 * 3600.0

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT_REDIRECTS = frozenset({301, 308})
_RETRY_AFTER_STATUSES = frozenset({429, 503})

# ipaddress calls 100.64/10 neither private nor global, and 224/4 "global": both named here.
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Limits:
    timeout: float = 30.0
    max_bytes: int = 10 * 1024 * 1024
    concurrency: int = 20
    max_redirects: int = 5
    user_agent: str = "newsalert"
    # True only for local use and tests: sources on loopback/private addresses are fetched.
    allow_private: bool = False


@dataclass(frozen=True)
class Validators:
    """What the previous successful fetch told us, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


# --- address policy -------------------------------------------------------------------


def address_problem(address: str) -> str | None:
    """Why a connection to this IP address is refused ("a loopback address"), or None when public."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not a valid IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        # Addresses that carry an IPv4 address inside reach that IPv4 host: judge it instead.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_problem(str(embedded))
            return f"{inner} ({embedded}) inside an IPv6 address" if inner else None
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _SHARED_ADDRESS_SPACE:
        return "a shared (carrier-grade NAT) address"
    if ip in _UNIQUE_LOCAL:
        return "a unique local (private IPv6) address"
    if any(ip in net for net in _RFC1918):
        return "a private (RFC 1918) address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def _looks_like_ip_literal(host: str) -> bool:
    # aiohttp's own test (helpers.is_ip_address): such hosts are connected to directly, without
    # asking the resolver, so the resolver guard never sees them and they must be checked here.
    return ":" in host or host.replace(".", "").isdigit()


class _Blocked(OSError):
    """Raised inside aiohttp's connector; an OSError so that aiohttp wraps it like a DNS failure."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class GuardedResolver(AbstractResolver):
    """Wraps a resolver and keeps only public addresses.

    aiohttp connects to exactly the addresses its resolver returns, so filtering them here
    checks the address actually connected to: a name that answered a public address to some
    earlier check and 127.0.0.1 now (DNS rebinding) is refused, because there is no earlier check.
    """

    def __init__(self, inner: AbstractResolver):
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        kept: list[ResolveResult] = []
        refused: list[str] = []
        for answer in answers:
            problem = address_problem(answer["host"])
            if problem is None:
                kept.append(answer)
            else:
                refused.append(f"{answer['host']}, {problem}")
        if refused:
            log.info("addresses refused host=%s refused=%s kept=%d", host, "; ".join(refused), len(kept))
        if not kept:
            if refused:
                raise _Blocked(f"{host} resolves to {refused[0]}")
            raise OSError(f"{host}: no address")  # aiohttp asserts on an empty answer
        return kept

    async def close(self) -> None:
        pass  # the inner resolver belongs to whoever created it


def _check_target(url: URL, allow_private: bool) -> str | None:
    """Why ``url`` must not be requested (for any hop), or None."""
    if url.scheme not in ("http", "https"):
        return f"only http and https URLs are fetched, not {url.scheme or 'a relative URL'}"
    host = url.raw_host
    if not host:
        return "the URL has no host"
    if allow_private:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if _looks_like_ip_literal(host):
            return f"{host} is not a valid IP address"
        return None  # a name: its addresses are checked by GuardedResolver when connecting
    problem = address_problem(host)
    return f"{host} is {problem}" if problem else None


# --- retry and backoff helpers ----------------------------------------------------------


def parse_retry_after(
    value: str | None, now: datetime | None = None, cap: float = MAX_RETRY_AFTER
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), at most ``cap``.

    None when the header is absent or unreadable; a date in the past gives 0.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit() and value.isascii():
        # A 5000-digit number would make int() raise (and is a request for "forever" anyway).
        return cap if len(value) > 12 else min(float(int(value)), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP-dates are GMT; a missing zone means the same
    now = now or datetime.now(UTC)
    return max(0.0, min((when - now).total_seconds(), cap))


def backoff_delay(
    consecutive_failures: int, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retrying a source that failed ``consecutive_failures`` times in a row.

    Exponential with full jitter: uniform in [0, min(cap, base * 2**(n-1))). The jitter spreads
    retries of sources that failed together (one network outage) so they do not return in step.
    The scheduler should wait at least the source's normal interval too; 0 failures gives 0.
    """
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    if consecutive_failures <= 0:
        return 0.0
    # 2.0 ** 1100 overflows; past 2**62 the cap has long been reached anyway.
    ceiling = min(cap, base * 2.0 ** min(consecutive_failures - 1, 62))
    return ceiling * rng()


# --- fetching -----------------------------------------------------------------------------


def fetch_all(
    sources: Sequence[Source],
    validators: Mapping[str, Validators],
    limits: Limits,
    *,
    resolver: AbstractResolver | None = None,
) -> dict[str, Fetched | FetchError]:
    """Fetch every source concurrently; the result maps source name to its outcome.

    ``resolver`` replaces aiohttp's default DNS resolver (tests use it to play DNS); it is
    still wrapped by the address guard unless ``limits.allow_private``.
    """
    return asyncio.run(_fetch_all(sources, validators, limits, resolver))


async def _fetch_all(
    sources: Sequence[Source],
    validators: Mapping[str, Validators],
    limits: Limits,
    resolver: AbstractResolver | None,
) -> dict[str, Fetched | FetchError]:
    semaphore = asyncio.Semaphore(limits.concurrency)
    timeout = aiohttp.ClientTimeout(total=limits.timeout, sock_connect=min(10.0, limits.timeout))
    # Created here, inside the running loop, which the default (threaded) resolver binds to.
    owned = aiohttp.DefaultResolver() if resolver is None else None
    inner = resolver or owned
    assert inner is not None
    active = inner if limits.allow_private else GuardedResolver(inner)
    connector = aiohttp.TCPConnector(limit=limits.concurrency, ttl_dns_cache=300, resolver=active)
    headers = {
        "User-Agent": limits.user_agent,
        "Accept": "application/rss+xml, application/atom+xml, application/feed+json, "
        "application/json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
    }
    try:
        # trust_env=False: an HTTP(S)_PROXY from the environment would move the connection
        # (and the address check) to the proxy.
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, headers=headers, trust_env=False
        ) as session:

            async def one(source: Source) -> tuple[str, Fetched | FetchError]:
                async with semaphore:
                    try:
                        seen = validators.get(source.name, Validators())
                        # One bound for the whole redirect chain, not one per hop.
                        async with asyncio.timeout(limits.timeout):
                            got = await _fetch(session, source, seen, limits)
                    except TimeoutError:
                        return source.name, FetchError(source.url, f"timed out after {limits.timeout:g}s")
                    except FetchError as e:
                        return source.name, e
                    except Exception as e:  # a bug or an aiohttp surprise must cost one source, not the poll
                        from bot.urls import redact  # here: bot.urls imports this module

                        log.exception("fetch crashed source=%r url=%s", source.name, redact(source.url))
                        reason = f"unexpected error: {type(e).__name__}: {e}"
                        return source.name, FetchError(source.url, reason)
                    return source.name, got

            results = await asyncio.gather(*(one(s) for s in sources))
    finally:
        if owned is not None:  # a connector never closes a resolver it was given
            await owned.close()
    return dict(results)


async def _fetch(session: aiohttp.ClientSession, source: Source, seen: Validators, limits: Limits) -> Fetched:
    headers = {}
    if seen.etag:
        headers["If-None-Match"] = seen.etag
    if seen.last_modified:
        headers["If-Modified-Since"] = seen.last_modified
    try:
        url = URL(source.url)
    except (ValueError, TypeError) as e:
        raise FetchError(source.url, f"invalid URL: {e}") from None
    permanent = True  # every hop so far was 301/308
    try:
        for hop in range(limits.max_redirects + 1):
            problem = _check_target(url, limits.allow_private)
            if problem:
                where = f"redirect to {url}: " if hop else ""
                raise FetchError(source.url, f"blocked: {where}{problem}", blocked=True)
            # Redirects are followed by hand so that every hop goes through _check_target.
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS:
                    url = _redirect_target(source, resp)
                    permanent = permanent and resp.status in _PERMANENT_REDIRECTS
                    continue
                moved = str(url) if hop and permanent else None
                return await _answer(source, resp, seen, limits, moved)
        raise FetchError(source.url, f"more than {limits.max_redirects} redirects")
    except TimeoutError:
        raise  # aiohttp's timeouts are ClientErrors too; the caller words them
    except aiohttp.ClientConnectorError as e:
        if isinstance(e.os_error, _Blocked):
            raise FetchError(source.url, f"blocked: {e.os_error.reason}", blocked=True) from None
        raise FetchError(source.url, f"{type(e).__name__}: {e}") from None
    except aiohttp.ClientResponseError as e:
        raise FetchError(source.url, f"HTTP error: {e.status} {e.message}", status=e.status) from None
    except aiohttp.ClientError as e:
        raise FetchError(source.url, f"{type(e).__name__}: {e}") from None


def _redirect_target(source: Source, resp: aiohttp.ClientResponse) -> URL:
    location = resp.headers.get("Location", "").strip()
    if not location:
        raise FetchError(source.url, f"HTTP {resp.status} redirect without a Location header")
    try:
        target = resp.url.join(URL(location))
    except (ValueError, TypeError) as e:
        raise FetchError(source.url, f"HTTP {resp.status} redirect to an invalid URL: {e}") from None
    return target.with_fragment(None)


async def _answer(
    source: Source, resp: aiohttp.ClientResponse, seen: Validators, limits: Limits, moved: str | None
) -> Fetched:
    status = resp.status
    response_headers: dict[str, str] = {}
    for key, value in resp.headers.items():
        # A repeated field (one Link header per WebSub hub) is one list, joined as RFC 9110 allows.
        key = key.lower()
        response_headers[key] = f"{response_headers[key]}, {value}" if key in response_headers else value
    if status == 304:
        return Fetched(
            str(resp.url), 304, b"", response_headers, seen.etag, seen.last_modified, permanent_url=moved
        )
    if status == 410:
        raise FetchError(source.url, "HTTP 410 Gone: the source has been removed", status=410, gone=True)
    if status >= 400:
        reason = f"HTTP {status} {resp.reason or ''}".strip()
        retry_after = None
        if status in _RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if retry_after is not None:
                reason += f" (retry after {retry_after:g}s)"
        raise FetchError(source.url, reason, status=status, retry_after=retry_after)
    if not 200 <= status < 300:
        raise FetchError(source.url, f"unexpected HTTP {status} {resp.reason or ''}".strip(), status=status)
    declared = resp.content_length
    if declared is not None and declared > limits.max_bytes:
        raise FetchError(source.url, f"response too large: {declared} bytes (limit {limits.max_bytes})")
    body = bytearray()
    # aiohttp decompresses as it reads, a bounded amount per chunk, so this caps the
    # decompressed size (gzip bombs) without ever holding much more than the limit.
    async for chunk in resp.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limits.max_bytes:
            raise FetchError(source.url, f"response too large: over {limits.max_bytes} bytes")
    return Fetched(
        url=str(resp.url),
        status=status,
        body=bytes(body),
        headers=response_headers,
        etag=resp.headers.get("ETag"),
        last_modified=resp.headers.get("Last-Modified"),
        permanent_url=moved,
    )
