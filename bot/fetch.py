"""HTTP fetching: many sources at once, politely, with hard limits.

Conditional GET (ETag / Last-Modified) keeps repeat polls cheap; a timeout and a cap on the
decompressed body keep one bad source from stalling or exhausting the poll. Each source's
outcome is a Fetched or a FetchError: one failure never affects the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from bot.errors import FetchError
from bot.model import Fetched, Source

log = logging.getLogger("newsalert.fetch")

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Limits:
    timeout: float = 30.0
    max_bytes: int = 10 * 1024 * 1024
    concurrency: int = 20
    max_redirects: int = 5
    user_agent: str = "newsalert"


@dataclass(frozen=True)
class Validators:
    """What the previous successful fetch told us, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


def fetch_all(
    sources: Sequence[Source],
    validators: Mapping[str, Validators],
    limits: Limits,
) -> dict[str, Fetched | FetchError]:
    """Fetch every source concurrently; the result maps source name to its outcome."""
    return asyncio.run(_fetch_all(sources, validators, limits))


async def _fetch_all(
    sources: Sequence[Source], validators: Mapping[str, Validators], limits: Limits
) -> dict[str, Fetched | FetchError]:
    semaphore = asyncio.Semaphore(limits.concurrency)
    timeout = aiohttp.ClientTimeout(total=limits.timeout, sock_connect=min(10.0, limits.timeout))
    connector = aiohttp.TCPConnector(limit=limits.concurrency, ttl_dns_cache=300)
    headers = {
        "User-Agent": limits.user_agent,
        "Accept": "application/rss+xml, application/atom+xml, application/feed+json, "
        "application/json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
    }
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers) as session:

        async def one(source: Source) -> tuple[str, Fetched | FetchError]:
            async with semaphore:
                try:
                    got = await _fetch(session, source, validators.get(source.name, Validators()), limits)
                except FetchError as e:
                    return source.name, e
                return source.name, got

        results = await asyncio.gather(*(one(s) for s in sources))
    return dict(results)


async def _fetch(session: aiohttp.ClientSession, source: Source, seen: Validators, limits: Limits) -> Fetched:
    headers = {}
    if seen.etag:
        headers["If-None-Match"] = seen.etag
    if seen.last_modified:
        headers["If-Modified-Since"] = seen.last_modified
    try:
        async with session.get(source.url, headers=headers, max_redirects=limits.max_redirects) as resp:
            if resp.status == 304:
                return Fetched(source.url, 304, b"", dict(resp.headers), seen.etag, seen.last_modified)
            if resp.status >= 400:
                raise FetchError(source.url, f"HTTP {resp.status} {resp.reason or ''}".strip())
            declared = resp.content_length
            if declared is not None and declared > limits.max_bytes:
                raise FetchError(
                    source.url, f"response too large: {declared} bytes (limit {limits.max_bytes})"
                )
            body = bytearray()
            # aiohttp decompresses as it reads, so this caps the decompressed size (gzip bombs).
            async for chunk in resp.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > limits.max_bytes:
                    raise FetchError(source.url, f"response too large: over {limits.max_bytes} bytes")
            return Fetched(
                url=source.url,
                status=resp.status,
                body=bytes(body),
                headers={k.lower(): v for k, v in resp.headers.items()},
                etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"),
            )
    except TimeoutError:
        raise FetchError(source.url, f"timed out after {limits.timeout:g}s") from None
    except aiohttp.TooManyRedirects:
        raise FetchError(source.url, f"more than {limits.max_redirects} redirects") from None
    except aiohttp.ClientResponseError as e:
        raise FetchError(source.url, f"HTTP error: {e.status} {e.message}") from None
    except aiohttp.ClientError as e:
        raise FetchError(source.url, f"{type(e).__name__}: {e}") from None
