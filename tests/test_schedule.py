"""Adaptive polling: the decision (bot/ingest/schedule.py) for each header and feed element, its
floor and ceiling, the budget and the jitter; then polls of real loopback feeds that store it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from bot.config import Settings
from bot.ingest import schedule
from bot.ingest.hints import feed_hints
from bot.ingest.poll import poll
from bot.ingest.schedule import Answer, Bounds, after_failure, answer, bounds, decide, reference_rate
from bot.model import FeedHints, Source, Subscription, Watchlist
from bot.store import Store
from tests.feed_server import FeedServer

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMITS = Bounds(floor=300, interval=900, ceiling=3600)  # the defaults of a 15-minute interval


def gap(d: schedule.Decision) -> float:
    return (d.next_at - NOW).total_seconds()


def test_with_nothing_known_a_source_keeps_its_interval_with_jitter() -> None:
    d = decide("UN News", LIMITS, NOW)
    assert (d.interval, d.reason, d.bound) == (900, "interval", None)
    assert 0.9 * 900 <= gap(d) <= 1.1 * 900 + 1
    assert decide("UN News", LIMITS, NOW) == d  # the jitter is the source's own, every run


def test_jitter_spreads_sources_that_would_fire_together() -> None:
    gaps = [gap(decide(f"source {i}", LIMITS, NOW)) for i in range(200)]
    assert min(gaps) >= 810 and max(gaps) <= 991
    assert len(set(gaps)) > 100  # not all in one second
    assert sum(1 for g in gaps if g < 900) > 60 and sum(1 for g in gaps if g > 900) > 60


@pytest.mark.parametrize(
    ("headers", "max_age"),
    [
        ({"cache-control": "public, max-age=1800"}, 1800),
        ({"cache-control": 'max-age="1800", must-revalidate'}, 1800),
        ({"cache-control": "max-age=1800", "age": "600"}, 1200),  # a cache already held it 10 min
        ({"cache-control": "no-cache, max-age=1800"}, None),
        ({"cache-control": "max-age=soon"}, None),
        ({}, None),
    ],
)
def test_cache_control_max_age(headers: dict[str, str], max_age: int | None) -> None:
    said = answer(headers, None, NOW)
    assert said.max_age == max_age
    d = decide("a", LIMITS, NOW, said)
    if max_age is None:
        assert d.reason == "interval"
    else:
        assert (d.interval, d.reason) == (max_age, "max-age")
        assert gap(d) >= max_age  # jitter never polls before the server asked


def test_expires_counts_from_the_servers_date() -> None:
    date = NOW - timedelta(hours=3)  # the server's clock is 3 h behind ours
    headers = {
        "date": format_datetime(date, usegmt=True),
        "expires": format_datetime(date + timedelta(minutes=40), usegmt=True),
    }
    d = decide("a", LIMITS, NOW, answer(headers, None, NOW))
    assert (d.interval, d.reason) == (2400, "expires")
    assert answer({"expires": "0"}, None, NOW).expires is None  # "already expired"
    assert (
        answer({"expires": format_datetime(NOW - timedelta(hours=1), usegmt=True)}, None, NOW).expires is None
    )
    both = {
        "cache-control": "max-age=1200",
        "expires": format_datetime(NOW + timedelta(hours=1), usegmt=True),
    }
    assert answer(both, None, NOW) == Answer(max_age=1200)  # max-age overrides Expires


def test_rss_ttl_and_syndication_period() -> None:
    d = decide("a", LIMITS, NOW, answer({}, FeedHints(ttl=1800), NOW))
    assert (d.interval, d.reason) == (1800, "ttl")
    d = decide("a", LIMITS, NOW, answer({}, FeedHints(update_period=3000), NOW))
    assert (d.interval, d.reason) == (3000, "sy:updatePeriod")
    # Several hints: the longest "not before" wins.
    d = decide("a", LIMITS, NOW, answer({"cache-control": "max-age=1000"}, FeedHints(ttl=1500), NOW))
    assert (d.interval, d.reason) == (1500, "ttl")


def test_retry_after_is_honoured_within_the_ceiling() -> None:
    d = after_failure("a", LIMITS, NOW, failures=1, retry_after=1200)
    assert (d.interval, d.reason, d.bound) == (1200, "retry-after", None)
    assert 1200 <= gap(d) <= 1321
    d = after_failure("a", LIMITS, NOW, failures=1, retry_after=6 * 3600)
    assert (d.interval, d.reason, d.bound, gap(d)) == (3600, "retry-after", "ceiling", 3600)


def test_a_server_asking_for_less_than_the_floor_gets_the_floor() -> None:
    # A very busy source would be polled every minute; its server's max-age says 30 s is fine.
    d = decide("a", LIMITS, NOW, Answer(max_age=30), rate=10_000, reference=100)
    assert (d.interval, d.bound) == (300, "floor")
    assert 300 <= gap(d) <= 331
    d = after_failure("a", LIMITS, NOW, failures=1, retry_after=5)
    assert d.interval == 900 and gap(d) >= 300


@pytest.mark.parametrize(
    "said",
    [
        Answer(max_age=86400),
        Answer(expires=2 * 86400),
        Answer(ttl=24 * 3600),
        Answer(update_period=7 * 86400),
    ],
)
def test_a_server_asking_for_more_than_the_ceiling_gets_the_ceiling(said: Answer) -> None:
    d = decide("a", LIMITS, NOW, said)
    assert (d.interval, d.bound, gap(d)) == (3600, "ceiling", 3600)
    assert d.why.endswith(", ceiling")


def test_busy_sources_are_polled_more_often_than_quiet_ones_within_the_budget() -> None:
    sources = {"busy": 100.0, "steady": 9.0, "quiet": 1.0, "silent": 0.0}
    wide = Bounds(floor=60, interval=900, ceiling=86400)
    ref = reference_rate((rate, 900) for rate in sources.values())
    decided = {name: decide(name, wide, NOW, rate=rate, reference=ref) for name, rate in sources.items()}
    assert decided["busy"].interval < decided["steady"].interval < decided["quiet"].interval
    assert (decided["busy"].reason, decided["quiet"].reason) == ("busy", "quiet")
    assert (decided["silent"].interval, decided["silent"].reason) == (86400, "quiet")
    # The requests per second of the sources with a rate interval are those of fixed intervals.
    polled = [d for name, d in decided.items() if name != "silent"]
    assert sum(1 / d.interval for d in polled) == pytest.approx(4 / 900, rel=0.01)
    # Clamped to the usual floor and ceiling, they still keep to them.
    clamped = decide("busy", LIMITS, NOW, rate=100.0, reference=ref)
    assert LIMITS.floor <= clamped.interval < 900


def test_a_live_websub_lease_polls_at_the_ceiling() -> None:
    d = decide("a", LIMITS, NOW, Answer(max_age=60), rate=500, reference=1, pushed=True)
    assert (d.interval, d.reason) == (3600, "websub")


def test_a_failing_source_backs_off_deterministically() -> None:
    waits = [after_failure("a", LIMITS, NOW, failures=n, retry_after=None) for n in range(1, 12)]
    assert all(w.reason == "backoff" for w in waits)
    assert all(900 <= w.interval <= schedule.MAX_BACKOFF for w in waits)
    assert waits == [after_failure("a", LIMITS, NOW, failures=n, retry_after=None) for n in range(1, 12)]


def test_bounds_come_from_the_source_then_the_defaults() -> None:
    assert bounds(Source("a", "https://a.example/")) == Bounds(300, 900, 3600)
    assert bounds(Source("a", "https://a.example/", interval=1)) == Bounds(1, 1, 4)
    own = Source("a", "https://a.example/", interval=600, min_interval=120, max_interval=7200)
    assert bounds(own, 300, 3600) == Bounds(120, 600, 7200)
    # A source added from Slack at another interval than [defaults]' bounds allow: widened.
    assert bounds(Source("a", "https://a.example/", interval=60), 300, 3600) == Bounds(60, 60, 3600)


# --- feed hints: what the parsers read besides the entries ------------------------------------

RSS_HEAD = (
    "<?xml version='1.0'?><rss version='2.0' xmlns:sy='http://purl.org/rss/1.0/modules/syndication/'"
    " xmlns:atom='http://www.w3.org/2005/Atom'><channel><title>t</title>{head}"
    "<item><title>x</title><ttl>1</ttl><atom:link rel='hub' href='https://in-item.example/'/></item>"
    "</channel></rss>"
)


@pytest.mark.parametrize(
    ("head", "hints"),
    [
        ("<ttl>30</ttl>", FeedHints(ttl=1800)),
        ("<ttl>-5</ttl>", FeedHints()),
        ("<ttl>soon</ttl>", FeedHints()),
        (
            "<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>4</sy:updateFrequency>",
            FeedHints(update_period=900),
        ),
        ("<sy:updatePeriod> Weekly </sy:updatePeriod>", FeedHints(update_period=7 * 86400)),
        ("<sy:updateFrequency>2</sy:updateFrequency>", FeedHints(update_period=43200)),  # daily by default
        (
            "<atom:link rel='hub' href='https://hub.example/'/><atom:link rel='self' href='/feed.xml'/>",
            FeedHints(hubs=("https://hub.example/",), self_url="https://site.example/feed.xml"),
        ),
        ("<atom:link rel='hub' href='javascript:alert(1)'/>", FeedHints()),
        ("", FeedHints()),  # and nothing from inside the items
    ],
)
def test_feed_hints_from_rss(head: str, hints: FeedHints) -> None:
    assert feed_hints(RSS_HEAD.format(head=head).encode(), {}, "https://site.example/rss") == hints


def test_feed_hints_from_atom_and_link_headers() -> None:
    atom = (
        b"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><title>t</title>"
        b"<link rel='hub' href='https://a.hub.example/'/><link rel='hub' href='https://b.hub.example/'/>"
        b"<link rel='self' href='https://site.example/atom'/><entry><title>x</title></entry></feed>"
    )
    got = feed_hints(atom, {}, "https://site.example/atom?x=1")
    assert got == FeedHints(
        hubs=("https://a.hub.example/", "https://b.hub.example/"), self_url="https://site.example/atom"
    )
    # WebSub: the Link header, when it has them, comes before the document's links.
    header = {"link": '<https://h.example/hub>; rel="hub", <https://site.example/canonical>; rel="self"'}
    got = feed_hints(atom, header, "https://site.example/atom")
    assert (got.hubs, got.self_url) == (("https://h.example/hub",), "https://site.example/canonical")
    assert feed_hints(b'{"version": "https://jsonfeed.org/version/1.1"}', {}, "https://s.example/").hubs == ()


def test_feed_hints_from_hostile_or_broken_documents() -> None:
    laughs = (
        "<?xml version='1.0'?><!DOCTYPE rss [<!ENTITY a 'aaaaaaaaaa'>"
        + "".join(
            f"<!ENTITY {c}{i} '{('&a;' if i == 0 else f'&{c}{i - 1};') * 10}'>" for c in "b" for i in range(8)
        )
        + "]><rss version='2.0'><channel><title>&b7;</title><ttl>20</ttl></channel></rss>"
    )
    assert feed_hints(laughs.encode(), {}, "https://s.example/") == FeedHints()  # nothing expanded
    assert feed_hints(b"<rss><channel><ttl>20</ttl><oops", {}, "https://s.example/") == FeedHints(ttl=1200)
    undeclared = b"<rss><channel><title>a&nbsp;b</title><ttl>20</ttl></channel></rss>"
    assert feed_hints(undeclared, {}, "https://s.example/") == FeedHints(ttl=1200)
    assert feed_hints(b"<html><body>not a feed", {}, "https://s.example/") == FeedHints()


# --- polls of loopback feeds ------------------------------------------------------------------


def rss(
    count: int,
    *,
    head: str = "",
    every: timedelta = timedelta(hours=1),
    prefix: str = "x",
    ago: timedelta = timedelta(),
) -> str:
    now = datetime.now(UTC) - ago
    items = "".join(
        f"<item><title>Item {prefix} {i}</title><link>https://n.example/{prefix}/{i}</link>"
        f"<pubDate>{format_datetime(now - every * i)}</pubDate></item>"
        for i in range(count)
    )
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>{head}{items}</channel></rss>"


def settings_for(tmp_path: Path, *sources: Source) -> Settings:
    return Settings(
        path="test.toml",
        sources=sources,
        watchlists=(Watchlist("csam", "CSAM"),),
        subscriptions=(Subscription("C1", ("csam",)),),
        first_poll_window=None,
        allow_private_sources=True,
        fetch_timeout=5,
        db_path=str(tmp_path / "t.db"),
    )


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "t.db")
    yield s
    s.close()


def polled(store: Store, name: str) -> tuple[float, int, str]:
    row = store.db["sources"].get(name)
    seconds = (datetime.fromisoformat(row["next_poll_at"]) - datetime.now(UTC)).total_seconds()
    return seconds, row["poll_interval"], row["poll_reason"]


def test_a_poll_stores_each_sources_next_poll_and_why(tmp_path, feeds: FeedServer, store: Store) -> None:
    settings = settings_for(
        tmp_path,
        Source("max-age", feeds.serve("/a.rss", rss(3), headers={"Cache-Control": "max-age=86400"})),
        Source("ttl", feeds.serve("/b.rss", rss(3, head="<ttl>40</ttl>"), etag='"b1"')),
        Source("plain", feeds.serve("/c.rss", rss(3))),
    )
    store.catalog.sync_config(
        settings.sources, settings.watchlists, settings.subscriptions, datetime.now(UTC)
    )
    assert poll(settings, store).polled == 3
    seconds, interval, why = polled(store, "max-age")
    assert (interval, why) == (3600, "max-age, ceiling") and 3590 < seconds <= 3600
    assert polled(store, "ttl")[1:] == (2400, "ttl")
    assert polled(store, "plain")[1:] == (900, "interval")
    assert store.sources.due_names(datetime.now(UTC)) == set()
    assert poll(settings, store, due_only=True).polled == 0  # nobody is due: nothing fetched
    # A 304 carries no feed: the ttl read from the last body still holds.
    before = feeds.hits("/b.rss")
    poll(settings, store)
    assert feeds.hits("/b.rss") == before + 1 and polled(store, "ttl")[1:] == (2400, "ttl")
    # Every poll due an hour from now is due then.
    later = datetime.now(UTC) + timedelta(hours=1, seconds=5)
    assert store.sources.due_names(later) == {"max-age", "ttl", "plain"}


def test_busy_feeds_are_polled_more_often_than_quiet_ones(tmp_path, feeds: FeedServer, store: Store) -> None:
    wide = dict(interval=900, min_interval=60, max_interval=86400)
    settings = settings_for(
        tmp_path,
        Source("busy", feeds.serve("/busy.rss", rss(100, every=timedelta(hours=1), prefix="b")), **wide),
        Source("quiet", feeds.serve("/quiet.rss", rss(4, every=timedelta(days=2), prefix="q")), **wide),
        Source("silent", feeds.serve("/silent.rss", rss(2, prefix="s", ago=timedelta(days=9))), **wide),
    )
    store.catalog.sync_config(
        settings.sources, settings.watchlists, settings.subscriptions, datetime.now(UTC)
    )
    poll(settings, store)
    busy, quiet, silent = (polled(store, name) for name in ("busy", "quiet", "silent"))
    assert busy[2] == "busy" and quiet[2] == "quiet" and busy[1] < 900 < quiet[1]
    assert silent[1:] == (86400, "quiet")  # nothing published this week
    # 100 items a week against 4 and 0: sqrt(25) = 5 times the polls of "quiet" (before clamping).
    assert busy[1] * 5 == pytest.approx(quiet[1], abs=5)


def test_a_source_s_own_floor_and_ceiling(tmp_path, feeds: FeedServer, store: Store) -> None:
    url = feeds.serve("/a.rss", rss(2), headers={"Cache-Control": "max-age=86400"})
    settings = dataclasses.replace(
        settings_for(tmp_path, Source("a", url, interval=600, max_interval=1200)), min_interval=60
    )
    store.catalog.sync_config(
        settings.sources, settings.watchlists, settings.subscriptions, datetime.now(UTC)
    )
    assert store.catalog.active_sources()[0].max_interval == 1200
    poll(settings, store)
    assert polled(store, "a")[1:] == (1200, "max-age, ceiling")
