"""Tests for bot.fetch: the address guard (SSRF), redirects, HTTP outcomes, size cap, backoff.

Everything runs on loopback. "Public" hosts are played by a fake resolver that answers
PUBLIC, and by a patched connect that records every address aiohttp really connects to and
sends connections for PUBLIC to a loopback server: no test touches the network.
"""

from __future__ import annotations

import gzip
import random
import socket
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohappyeyeballs
import aiohttp.connector
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.config import Settings
from bot.errors import FetchError
from bot.ingest.fetch import (
    MAX_RETRY_AFTER,
    Limits,
    Validators,
    address_problem,
    backoff_delay,
    fetch_all,
    parse_retry_after,
)
from bot.ingest.poll import limits_from
from bot.model import Fetched, Source
from tests.feed_server import FeedServer

PUBLIC = "93.184.215.14"  # any public address; connections to it are sent to a loopback server
RSS = (
    b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>"
    b"<item><title>Public story</title><link>https://n.example/1</link></item></channel></rss>"
)
SECRET = b"internal-only-secret"

GUARDED = Limits(timeout=5)
LOCAL = Limits(timeout=5, allow_private=True)


class FakeDNS(AbstractResolver):
    """Answers from a table. Each name has a list of answers: one per call, the last repeats."""

    def __init__(self, table: dict[str, list[list[str]]]):
        self.table = table
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        if host not in self.table:
            raise OSError(f"{host}: NXDOMAIN (fake)")
        answers = self.table[host]
        nth = answers[min(self.calls.count(host) - 1, len(answers) - 1)]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in nth
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
def internal() -> Iterator[FeedServer]:
    """A loopback service that must never be reached unless private sources are allowed."""
    server = FeedServer().start()
    server.serve("/secret", SECRET)
    server.serve("/feed", SECRET)
    yield server
    server.stop()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch, feeds: FeedServer) -> list[tuple[str, int]]:
    """Every (address, port) aiohttp connects to; PUBLIC is routed to the ``feeds`` server."""
    seen: list[tuple[str, int]] = []
    real = aiohappyeyeballs.start_connection
    public_port = feeds.server.server_address[1]

    async def start_connection(addr_infos, **kwargs):  # type: ignore[no-untyped-def]
        routed = []
        for family, kind, proto, name, address in addr_infos:
            seen.append((address[0], address[1]))
            if address[0] == PUBLIC:
                family, address = socket.AF_INET, ("127.0.0.1", public_port)
            elif address[0] not in ("127.0.0.1", "::1"):
                # Even if the guard were broken, a test must never reach a real network.
                raise OSError(f"tests connect to loopback only, not {address[0]}")
            routed.append((family, kind, proto, name, address))
        return await real(routed, **kwargs)

    monkeypatch.setattr(aiohttp.connector.aiohappyeyeballs, "start_connection", start_connection)
    return seen


def fetch_one(url: str, limits: Limits = GUARDED, resolver: AbstractResolver | None = None, **seen: str):
    return fetch_all([Source("s", url)], {"s": Validators(**seen)}, limits, resolver=resolver)["s"]


def port_of(server: FeedServer) -> int:
    return server.server.server_address[1]


# --- address policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("10.1.2.3", "a private (RFC 1918) address"),
        ("172.16.0.1", "a private (RFC 1918) address"),
        ("192.168.1.1", "a private (RFC 1918) address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("fd00::1", "a unique local (private IPv6) address"),
        ("240.0.0.1", "a reserved address"),
        ("192.0.2.1", "not a public address"),  # documentation range
        ("::ffff:127.0.0.1", "a loopback address (127.0.0.1) inside an IPv6 address"),
        ("64:ff9b::a9fe:a9fe", "a link-local address (169.254.169.254) inside an IPv6 address"),
        ("2002:7f00:1::", "a loopback address (127.0.0.1) inside an IPv6 address"),
        ("not-an-ip", "not a valid IP address"),
        ("8.8.8.8", None),
        (PUBLIC, None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_address_problem(address: str, problem: str | None) -> None:
    assert address_problem(address) == problem


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:{port}/secret", "127.0.0.1 is a loopback address"),
        ("http://[::1]:{port}/secret", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://10.0.0.8:{port}/secret", "10.0.0.8 is a private (RFC 1918) address"),
        ("http://100.64.0.1/", "100.64.0.1 is a shared (carrier-grade NAT) address"),
        ("http://0.0.0.0:{port}/secret", "0.0.0.0 is an unspecified address"),
        ("http://[fd12:3456::1]/", "fd12:3456::1 is a unique local (private IPv6) address"),
        ("http://[::ffff:127.0.0.1]:{port}/secret", "a loopback address (127.0.0.1) inside an IPv6 address"),
        # Legacy numeric forms that socket would still map onto 127.0.0.1.
        ("http://2130706433:{port}/secret", "2130706433 is not a valid IP address"),
        ("http://127.1:{port}/secret", "127.1 is not a valid IP address"),
        ("file:///etc/passwd", "only http and https URLs are fetched, not file"),
        ("ftp://127.0.0.1/feed", "only http and https URLs are fetched, not ftp"),
    ],
)
def test_literal_non_public_targets_are_blocked_before_connecting(
    url: str, why: str, internal: FeedServer, connects: list[tuple[str, int]]
) -> None:
    # aiohttp does not ask the resolver about IP literals, so this is the only check they get.
    dns = FakeDNS({})
    outcome = fetch_one(url.format(port=port_of(internal)), resolver=dns)
    assert isinstance(outcome, FetchError)
    assert outcome.blocked
    assert outcome.reason.startswith("blocked: ") and why in outcome.reason
    assert connects == [] and internal.requests == [] and dns.calls == []


def test_link_local_reason_is_exact(connects: list[tuple[str, int]]) -> None:
    outcome = fetch_one("http://169.254.169.254/latest/meta-data/")
    assert isinstance(outcome, FetchError)
    assert outcome.reason == "blocked: 169.254.169.254 is a link-local address"
    assert connects == []


def test_loopback_is_fetched_when_private_sources_are_allowed(internal: FeedServer) -> None:
    outcome = fetch_one(internal.url("/secret"), LOCAL)
    assert isinstance(outcome, Fetched) and outcome.body == SECRET


def test_limits_from_passes_the_config_switch() -> None:
    settings = Settings(path="t.toml", sources=(), watchlists=(), subscriptions=())
    assert limits_from(settings).allow_private is False
    assert Limits().allow_private is False
    allowed = Settings(path="t.toml", sources=(), watchlists=(), subscriptions=(), allow_private_sources=True)
    assert limits_from(allowed).allow_private is True


def test_name_resolving_to_loopback_is_blocked_at_connect_time(
    internal: FeedServer, connects: list[tuple[str, int]]
) -> None:
    dns = FakeDNS({"intranet.example": [["127.0.0.1"]]})
    outcome = fetch_one(f"http://intranet.example:{port_of(internal)}/secret", resolver=dns)
    assert isinstance(outcome, FetchError) and outcome.blocked
    assert outcome.reason == "blocked: intranet.example resolves to 127.0.0.1, a loopback address"
    assert connects == [] and internal.requests == []


def test_non_public_answers_are_dropped_and_only_public_ones_connected(
    feeds: FeedServer, internal: FeedServer, connects: list[tuple[str, int]]
) -> None:
    feeds.serve("/feed", RSS)
    dns = FakeDNS({"mixed.example": [["127.0.0.1", "::1", "169.254.169.254", PUBLIC]]})
    outcome = fetch_one(f"http://mixed.example:{port_of(internal)}/feed", resolver=dns)
    assert isinstance(outcome, Fetched) and outcome.body == RSS
    assert connects == [(PUBLIC, port_of(internal))]
    assert internal.requests == []


def test_dns_rebinding_gets_no_request_to_loopback(
    feeds: FeedServer, internal: FeedServer, connects: list[tuple[str, int]]
) -> None:
    """The name answers a public address first and 127.0.0.1 on the next lookup.

    A fetcher that looked the name up to check it and then let the connection look it up
    again would connect to 127.0.0.1. Here the one lookup per connection is the one checked.
    """
    feeds.serve("/feed", RSS)
    dns = FakeDNS({"rebind.example": [[PUBLIC], ["127.0.0.1"]]})
    url = f"http://rebind.example:{port_of(internal)}/feed"

    first = fetch_one(url, resolver=dns)
    assert isinstance(first, Fetched) and first.body == RSS
    assert dns.calls == ["rebind.example"]  # no separate "check" lookup to be fooled
    assert connects == [(PUBLIC, port_of(internal))]

    second = fetch_one(url, resolver=dns)  # the next poll: the name now answers 127.0.0.1
    assert isinstance(second, FetchError) and second.blocked
    assert "127.0.0.1, a loopback address" in second.reason
    assert connects == [(PUBLIC, port_of(internal))]  # nothing new was connected to
    assert internal.requests == []


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("http://127.0.0.1:{port}/secret", "to http://127.0.0.1:{port}/secret: 127.0.0.1 is a loopback"),
        ("http://[::1]:{port}/secret", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://intranet.example:{port}/secret", "intranet.example resolves to 127.0.0.1"),
        ("file:///etc/passwd", "only http and https URLs are fetched, not file"),
    ],
)
def test_every_redirect_hop_is_checked(
    location: str, why: str, feeds: FeedServer, internal: FeedServer, connects: list[tuple[str, int]]
) -> None:
    port = port_of(internal)
    feeds.serve("/moved", b"", status=302, headers={"Location": location.format(port=port)})
    dns = FakeDNS({"public.example": [[PUBLIC]], "intranet.example": [["127.0.0.1"]]})
    outcome = fetch_one(f"http://public.example:{port_of(feeds)}/moved", resolver=dns)
    assert isinstance(outcome, FetchError) and outcome.blocked
    assert why.format(port=port) in outcome.reason
    assert feeds.hits("/moved") == 1
    assert internal.requests == []
    assert {address for address, _ in connects} == {PUBLIC}


# --- HTTP outcomes ------------------------------------------------------------------------


def test_conditional_get_with_etag(feeds: FeedServer) -> None:
    url = feeds.serve("/a.rss", RSS, etag='"v1"')
    first = fetch_one(url, LOCAL)
    assert isinstance(first, Fetched) and first.etag == '"v1"' and not first.not_modified
    again = fetch_one(url, LOCAL, etag='"v1"')
    assert isinstance(again, Fetched) and again.not_modified and again.body == b""
    assert again.etag == '"v1"'
    assert feeds.requests[-1][1]["If-None-Match"] == '"v1"'


def test_conditional_get_with_last_modified(feeds: FeedServer) -> None:
    stamp = "Thu, 05 Feb 2026 10:00:00 GMT"
    url = feeds.serve("/a.rss", RSS, last_modified=stamp)
    first = fetch_one(url, LOCAL)
    assert isinstance(first, Fetched) and first.last_modified == stamp and first.status == 200
    again = fetch_one(url, LOCAL, last_modified=stamp)
    assert isinstance(again, Fetched) and again.not_modified and again.last_modified == stamp
    assert feeds.requests[-1][1]["If-Modified-Since"] == stamp


@pytest.mark.parametrize(
    ("chain", "permanent"),
    [
        ((), False),
        ((301,), True),
        ((308,), True),
        ((301, 308, 301), True),
        ((302,), False),
        ((307,), False),
        ((303,), False),
        ((301, 302), False),
        ((302, 301), False),
    ],
)
def test_permanent_url_only_when_every_hop_is_permanent(
    chain: tuple[int, ...], permanent: bool, feeds: FeedServer
) -> None:
    final = feeds.serve("/final.rss", RSS)
    paths = [f"/hop{i}" for i in range(len(chain))] + ["/final.rss"]
    for i, status in enumerate(chain):
        # Relative and absolute Locations, alternating: both are resolved against the hop.
        target = paths[i + 1] if i % 2 == 0 else feeds.url(paths[i + 1])
        feeds.serve(paths[i], b"", status=status, headers={"Location": target})
    outcome = fetch_one(feeds.url(paths[0]), LOCAL)
    assert isinstance(outcome, Fetched) and outcome.body == RSS
    assert outcome.url == final
    assert outcome.permanent_url == (final if permanent else None)


def test_permanent_redirect_to_a_not_modified_feed_still_reports_the_new_url(feeds: FeedServer) -> None:
    final = feeds.serve("/new.rss", RSS, etag='"x"')
    old = feeds.serve("/old.rss", b"", status=301, headers={"Location": "/new.rss"})
    outcome = fetch_one(old, LOCAL, etag='"x"')
    assert isinstance(outcome, Fetched) and outcome.not_modified
    assert outcome.permanent_url == final


def test_permanent_redirect_to_an_error_is_an_error(feeds: FeedServer) -> None:
    old = feeds.serve("/old.rss", b"", status=301, headers={"Location": "/missing.rss"})
    outcome = fetch_one(old, LOCAL)
    assert isinstance(outcome, FetchError) and outcome.status == 404


def test_redirect_loop_is_an_error(feeds: FeedServer) -> None:
    feeds.serve("/a", b"", status=302, headers={"Location": "/b"})
    feeds.serve("/b", b"", status=302, headers={"Location": "/a"})
    outcome = fetch_one(feeds.url("/a"), LOCAL)
    assert isinstance(outcome, FetchError)
    assert outcome.reason == "more than 5 redirects"
    assert len(feeds.requests) == 6


def test_redirect_without_location_is_an_error(feeds: FeedServer) -> None:
    url = feeds.serve("/a", b"", status=301, headers={})
    outcome = fetch_one(url, LOCAL)
    assert isinstance(outcome, FetchError) and "without a Location" in outcome.reason


def test_410_marks_the_source_gone(feeds: FeedServer) -> None:
    outcome = fetch_one(feeds.serve("/gone.rss", b"gone", status=410), LOCAL)
    assert isinstance(outcome, FetchError)
    assert outcome.gone and outcome.status == 410 and outcome.retry_after is None
    missing = fetch_one(feeds.url("/missing.rss"), LOCAL)
    assert isinstance(missing, FetchError) and not missing.gone and missing.status == 404


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds(status: int, feeds: FeedServer) -> None:
    url = feeds.serve("/busy", b"", status=status, headers={"Retry-After": "120"})
    outcome = fetch_one(url, LOCAL)
    assert isinstance(outcome, FetchError)
    assert outcome.status == status and outcome.retry_after == 120.0
    assert "retry after 120s" in outcome.reason


def test_retry_after_http_date(feeds: FeedServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    outcome = fetch_one(feeds.serve("/busy", b"", status=503, headers={"Retry-After": when}), LOCAL)
    assert isinstance(outcome, FetchError) and outcome.retry_after is not None
    assert 3000 < outcome.retry_after <= 3600


@pytest.mark.parametrize("value", ["99999999", "9" * 5000, "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_retry_after_is_capped(value: str, feeds: FeedServer) -> None:
    outcome = fetch_one(feeds.serve("/busy", b"", status=429, headers={"Retry-After": value}), LOCAL)
    assert isinstance(outcome, FetchError) and outcome.retry_after == MAX_RETRY_AFTER


def test_retry_after_only_for_429_and_503(feeds: FeedServer) -> None:
    outcome = fetch_one(feeds.serve("/e", b"", status=500, headers={"Retry-After": "60"}), LOCAL)
    assert isinstance(outcome, FetchError) and outcome.retry_after is None and outcome.status == 500
    plain = fetch_one(feeds.serve("/f", b"", status=429, headers={}), LOCAL)
    assert isinstance(plain, FetchError) and plain.retry_after is None


def test_parse_retry_after() -> None:
    now = datetime(2026, 2, 5, 12, 0, tzinfo=UTC)
    assert parse_retry_after("0", now) == 0.0
    assert parse_retry_after(" 30 ", now) == 30.0
    assert parse_retry_after("Thu, 05 Feb 2026 12:10:00 GMT", now) == 600.0
    assert parse_retry_after("Thursday, 05-Feb-26 12:10:00 GMT", now) == 600.0  # RFC 850 form
    assert parse_retry_after("Thu, 05 Feb 2026 11:00:00 GMT", now) == 0.0  # already past
    assert parse_retry_after("Thu, 05 Feb 2026 18:00:01 GMT", now) == MAX_RETRY_AFTER
    assert parse_retry_after("100", now, cap=50) == 50
    for junk in (None, "", "soon", "-5", "1.5", "٣٠", "Thu, 99 Foo 2026"):
        assert parse_retry_after(junk, now) is None, junk


# --- size cap -----------------------------------------------------------------------------


def gzip_of_zeros(size: int) -> bytes:
    # Streamed, so the test itself never holds the decompressed size.
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(size >> 20)]
    return b"".join([*parts, packer.flush()])


def test_size_cap_applies_after_decompression(feeds: FeedServer) -> None:
    bomb = gzip_of_zeros(256 << 20)  # ~250 KB on the wire, 256 MB inflated
    assert len(bomb) < 1 << 20
    url = feeds.serve("/bomb.rss", bomb, headers={"Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        outcome = fetch_one(url, Limits(timeout=10, max_bytes=1 << 20, allow_private=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(outcome, FetchError)
    # Declared length (the compressed size) was under the cap: the streamed count caught it.
    assert outcome.reason == f"response too large: over {1 << 20} bytes"
    assert peak < 32 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_gzip_body_within_the_cap_is_decompressed(feeds: FeedServer) -> None:
    url = feeds.serve("/z.rss", gzip.compress(RSS), headers={"Content-Encoding": "gzip"})
    outcome = fetch_one(url, LOCAL)
    assert isinstance(outcome, Fetched) and outcome.body == RSS


# --- backoff ------------------------------------------------------------------------------


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(n, 60, 3600, rng=lambda: 1.0) for n in range(0, 10)]
    assert delays == [0, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]


def test_backoff_jitter_stays_within_the_exponential_bound() -> None:
    rng = random.Random(7).random
    for n in range(1, 200):
        bound = min(3600.0, 30 * 2.0 ** (n - 1))
        samples = [backoff_delay(n, 30, 3600, rng=rng) for _ in range(20)]
        assert all(0 <= d <= bound for d in samples)
        assert len(set(samples)) > 1  # jittered, not in lockstep
    assert backoff_delay(5, 30, 3600, rng=lambda: 0.0) == 0.0


def test_backoff_survives_absurd_failure_counts() -> None:
    assert backoff_delay(10**6, 1, 86400, rng=lambda: 1.0) == 86400
    assert backoff_delay(-3, 1, 86400) == 0.0
    with pytest.raises(ValueError):
        backoff_delay(1, -1, 10)
