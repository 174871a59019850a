"""When to poll a source next, and why: adaptive polling as one pure decision (no I/O).

Inputs are what the last answer said (``Cache-Control: max-age``, ``Expires``, ``Retry-After``),
what the feed says about itself (RSS ``<ttl>``, ``<sy:updatePeriod>``), how often it publishes
(items of the last week) and the source's floor and ceiling; the output is the next poll time
and the reason shown by ``newsalert status``. The rules follow Miniflux's scheduler: the
publishing rate gives an interval, a server's "not before" hint can only lengthen it, and the
result is clamped to [floor, ceiling], so a server asking for less than the floor gets the
floor and one asking for more than the ceiling gets the ceiling.

The request budget is the configured intervals': a source's rate interval is its interval scaled
by sqrt(reference / rate), with the reference chosen so that, before clamping, the sources
together make as many requests as they would at their configured intervals. Polling at a
frequency proportional to the square root of the publishing rate is what minimises the mean
delay of an item for a fixed number of requests (mean delay of a source polled every T is T/2
per item; minimise sum(rate_i * T_i) subject to sum(1 / T_i) = budget).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from bot.ingest.fetch import backoff_delay
from bot.model import FeedHints, Source

RATE_WINDOW = timedelta(days=7)  # the publishing rate is counted over this window (Miniflux's week)
JITTER = 0.1  # each source's gap is its interval +-10%, by a fraction fixed per source
MAX_BACKOFF = 6 * 3600.0  # a failing source (no Retry-After) is retried at least this often
FLOOR_SHARE = 3  # default floor: interval / 3 (15m -> 5m)
CEILING_TIMES = 4  # default ceiling: interval x 4 (15m -> 1h)
SAME = 0.02  # a rate interval this close to the configured one is reported as "interval"

# Reasons, as shown in `newsalert status` and Slack.
INTERVAL, BUSY, QUIET = "interval", "busy", "quiet"
MAX_AGE, EXPIRES, TTL, SY, RETRY_AFTER = "max-age", "expires", "ttl", "sy:updatePeriod", "retry-after"
WEBSUB, BACKOFF = "websub", "backoff"


@dataclass(frozen=True)
class Bounds:
    """A source's configured interval, and the floor and ceiling adaptive polling keeps to."""

    floor: int
    interval: int
    ceiling: int


def bounds(source: Source, default_min: int | None = None, default_max: int | None = None) -> Bounds:
    """The source's own min/max_interval, else [defaults]', else interval / 3 and interval x 4.

    The config file is validated so that floor <= interval <= ceiling; sources added from Slack
    or OPML take [defaults], which may not fit their interval, so the bounds widen to include it.
    """
    interval = source.interval
    floor = source.min_interval or default_min or max(1, interval // FLOOR_SHARE)
    ceiling = source.max_interval or default_max or interval * CEILING_TIMES
    return Bounds(min(floor, interval), interval, max(ceiling, interval))


@dataclass(frozen=True)
class Answer:
    """What the server said about this source, in seconds: each is a "not before" request."""

    max_age: int | None = None
    expires: int | None = None
    ttl: int | None = None
    update_period: int | None = None
    retry_after: float | None = None


def answer(headers: Mapping[str, str], feed: FeedHints | None, now: datetime) -> Answer:
    """The hints of one HTTP answer (lower-cased ``headers``) and of its feed (None: not parsed)."""
    max_age = _max_age(headers)
    return Answer(
        max_age=max_age,
        # HTTP caching: max-age, when given, overrides Expires.
        expires=None if max_age is not None else _expires(headers, now),
        ttl=feed.ttl if feed else None,
        update_period=feed.update_period if feed else None,
    )


@dataclass(frozen=True)
class Decision:
    interval: int  # seconds: the effective interval, within [floor, ceiling] unless backing off
    next_at: datetime  # the interval with this source's jitter
    reason: str
    bound: str | None = None  # "floor" or "ceiling" when the interval was clamped to it

    @property
    def why(self) -> str:
        return f"{self.reason}, {self.bound}" if self.bound else self.reason


def decide(
    name: str,
    limits: Bounds,
    now: datetime,
    said: Answer = Answer(),  # frozen: one shared default is safe
    *,
    rate: float | None = None,
    reference: float | None = None,
    pushed: bool = False,
) -> Decision:
    """The next poll after a successful fetch (or a 429/503 with ``said.retry_after``).

    ``rate``: the source's items per day over RATE_WINDOW, None before its first success;
    ``reference``: reference_rate() over the active sources; ``pushed``: a WebSub lease is live,
    so polling is only the fallback and runs at the ceiling.
    """
    interval, reason = float(limits.interval), INTERVAL
    if rate is not None and rate <= 0:
        interval, reason = float(limits.ceiling), QUIET
    elif rate is not None and reference:
        interval = limits.interval * math.sqrt(reference / rate)
        if abs(interval - limits.interval) > limits.interval * SAME:
            reason = BUSY if interval < limits.interval else QUIET
    asked, asked_reason = _server_minimum(said)
    if asked is not None and asked >= interval:
        interval, reason = asked, asked_reason
    bound = None
    if interval < limits.floor:
        interval, bound = float(limits.floor), "floor"
    elif interval > limits.ceiling:
        interval, bound = float(limits.ceiling), "ceiling"
    if pushed:
        interval, reason, bound = float(limits.ceiling), WEBSUB, None
    # Never before the server asked (unless that is past the ceiling), never past the ceiling.
    lowest = max(limits.floor, min(asked or 0, limits.ceiling))
    gap = min(max(interval * (1 + JITTER * (2 * jitter_fraction(name) - 1)), lowest), limits.ceiling)
    return Decision(round(interval), now + timedelta(seconds=math.ceil(gap)), reason, bound)


def after_failure(
    name: str, limits: Bounds, now: datetime, failures: int, retry_after: float | None
) -> Decision:
    """The next poll after ``failures`` failures in a row (this one included).

    A server that said when to come back (429/503 Retry-After) is honoured within the floor and
    ceiling; otherwise the source backs off exponentially, up to MAX_BACKOFF (the ceiling is for
    sources that work), with jitter fixed by the source's name and the failure count.
    """
    if retry_after is not None:
        return decide(name, limits, now, Answer(retry_after=retry_after))
    fraction = jitter_fraction(f"{name}\n{failures}")
    wait = max(
        float(limits.interval),
        backoff_delay(failures, base=limits.interval, cap=MAX_BACKOFF, rng=lambda: fraction),
    )
    return Decision(round(wait), now + timedelta(seconds=math.ceil(wait)), BACKOFF)


def reference_rate(sources: Iterable[tuple[float, int]]) -> float | None:
    """The rate at which a source keeps its configured interval, from (rate, interval) pairs of
    every source with a known rate; None when there are none.

    With T_i = interval_i * sqrt(ref / rate_i), sum(1 / T_i) equals sum(1 / interval_i) when
    sqrt(ref) is the mean of sqrt(rate_i) weighted by 1 / interval_i.
    """
    weighted = total = 0.0
    for rate, interval in sources:
        weighted += math.sqrt(max(rate, 0.0)) / interval
        total += 1 / interval
    return (weighted / total) ** 2 if total else None


def per_day(items: int) -> float:
    """Items counted over RATE_WINDOW, as items per day."""
    return items / (RATE_WINDOW.total_seconds() / 86400)


def jitter_fraction(key: str) -> float:
    """A number in [0, 1) fixed by ``key``: the same source gets the same jitter on every run."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def _server_minimum(said: Answer) -> tuple[float | None, str]:
    """The longest "not before" the server asked for, and which hint asked it."""
    hints = [
        (said.retry_after, RETRY_AFTER),
        (said.max_age, MAX_AGE),
        (said.expires, EXPIRES),
        (said.ttl, TTL),
        (said.update_period, SY),
    ]
    given = [(float(seconds), why) for seconds, why in hints if seconds is not None and seconds > 0]
    if not given:
        return None, ""
    return max(given, key=lambda hint: hint[0])


def _max_age(headers: Mapping[str, str]) -> int | None:
    """Seconds the answer stays fresh by ``Cache-Control`` (less its ``Age``); None when not said.

    ``no-cache`` and ``no-store`` say nothing about how often to ask again, so they give None.
    """
    value = headers.get("cache-control", "")
    max_age = None
    for directive in value.split(","):
        key, _, arg = directive.strip().partition("=")
        key = key.strip().lower()
        if key in ("no-cache", "no-store"):
            return None
        arg = arg.strip().strip('"')
        if key == "max-age" and arg.isdigit() and arg.isascii() and len(arg) <= 10:
            max_age = int(arg)
    if max_age is None:
        return None
    age = headers.get("age", "").strip()
    if age.isdigit() and age.isascii() and len(age) <= 10:
        max_age -= int(age)
    return max(0, max_age)


def _expires(headers: Mapping[str, str], now: datetime) -> int | None:
    """Seconds until ``Expires``, counted from the server's ``Date`` (clocks differ); None when
    absent, unreadable or past (``Expires: 0`` means "already expired")."""
    expires = _http_date(headers.get("expires"))
    if expires is None:
        return None
    date = _http_date(headers.get("date")) or now
    seconds = int((expires - date).total_seconds())
    return seconds if seconds > 0 else None


def _http_date(value: str | None) -> datetime | None:
    if not value or not value.strip():
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
