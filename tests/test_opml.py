"""OPML: import a real-world reader export, export it back, and refuse what must not become a source."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.errors import OpmlError
from bot.model import Source, Subscription, Watchlist
from bot.opml import Feed, export_opml, import_feeds, parse_opml
from bot.store import Store
from tests.conftest import DATA, run_newsalert, write_config

FEEDLY = DATA / "opml" / "feedly-export.opml"
NOW = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)

EXPECTED = [
    ("UN News", "https://news.un.org/feed/subscribe/en/news/all/rss.xml", "feed"),
    ("ECPAT International", "https://ecpat.org/wp-json/wp/v2/posts?per_page=20", "wordpress"),
    ("IWF news", "https://www.iwf.org.uk/news-media/feed/", "feed"),  # title wins over text
    (
        '"child sexual abuse material" - Google News',
        "https://news.google.com/rss/search?q=%22child+sexual+abuse+material%22&hl=en-US&gl=US&ceid=US:en",
        "feed",
    ),
    ("deepfake nudify - Bing News", "https://www.bing.com/news/search?q=deepfake+nudify&format=rss", "feed"),
    ("Défenseur des droits — Actualités", "https://www.defenseurdesdroits.fr/rss.xml", "feed"),
    ("eSafety Commissioner", "https://www.esafety.gov.au/feed", "feed"),
    ("Ofcom news", "https://www.ofcom.org.uk/rss/news", "feed"),  # nested folders are walked
    ("digital-strategy.ec.europa.eu", "https://digital-strategy.ec.europa.eu/en/rss.xml", "feed"),  # no name
]


def active(store: Store) -> list[tuple[str, str, str]]:
    return [(s.name, s.url, s.type) for s in store.catalog.active_sources()]


def test_a_feedly_export_imports_every_feed_once(tmp_path: Path) -> None:
    feeds = parse_opml(FEEDLY.read_bytes())
    assert len(feeds) == 11  # the UN News duplicate in a second folder counts once
    store = Store.open(tmp_path / "t.db")
    report = import_feeds(store, feeds, interval=900, allow_private=False, now=NOW)
    assert [(s.name, s.url, s.type) for s in report.added] == EXPECTED
    assert [(f.name, why) for f, why in report.refused] == [
        (
            "Team wiki changes",
            "192.168.10.4 is a private or loopback address; sources must be on the public internet "
            "(set [defaults] allow_private_sources = true for local sources)",
        ),
        ("Old gopher", "must be an http:// or https:// URL, got 'gopher://example.org/1/news'"),
    ]
    assert sorted(active(store)) == sorted(EXPECTED)
    assert {r.origin for r in store.sources.listed()} == {"opml"}

    again = import_feeds(store, parse_opml(FEEDLY.read_bytes()), interval=900, allow_private=False, now=NOW)
    assert (len(again.added), len(again.present), len(again.refused)) == (0, 9, 2)


def test_export_then_import_round_trips(tmp_path: Path) -> None:
    first = Store.open(tmp_path / "a.db")
    import_feeds(first, parse_opml(FEEDLY.read_bytes()), interval=900, allow_private=False, now=NOW)
    text = export_opml(first.catalog.active_sources(), now=NOW)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">')
    second = Store.open(tmp_path / "b.db")
    report = import_feeds(second, parse_opml(text.encode()), interval=900, allow_private=False, now=NOW)
    assert report.refused == [] and active(second) == active(first)


def test_config_sources_are_present_and_sync_leaves_imports_alone(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    config = [Source("UN News feed", "https://news.un.org/feed/subscribe/en/news/all/rss.xml")]
    store.catalog.sync_config(config, [Watchlist("w", "x")], [Subscription("C1", ("w",))], NOW)
    report = import_feeds(store, parse_opml(FEEDLY.read_bytes()), interval=900, allow_private=False, now=NOW)
    assert [f.name for f in report.present] == ["UN News"]  # same URL as a config source
    store.catalog.sync_config(config, [Watchlist("w", "x")], [Subscription("C1", ("w",))], NOW)  # a restart
    assert len(store.catalog.active_sources()) == 1 + len(EXPECTED) - 1


def test_names_stay_unique_and_removed_sources_come_back(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    store.catalog.sync_config([Source("News", "https://a.example/rss")], [], [], NOW)
    report = import_feeds(
        store,
        [Feed("News", "https://b.example/rss"), Feed("News", "https://c.example/rss")],
        interval=600,
        allow_private=False,
    )
    assert [s.name for s in report.added] == ["News (b.example)", "News (c.example)"]
    store.catalog.remove_source("News (b.example)", "U1", NOW)
    report = import_feeds(
        store, [Feed("Renamed", "https://b.example/rss")], interval=600, allow_private=False
    )
    assert [s.name for s in report.restored] == ["News (b.example)"]
    assert "News (b.example)" in {s.name for s in store.catalog.active_sources()}


def test_private_addresses_need_allow_private_sources(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    feeds = [
        Feed("loopback", "http://127.0.0.1:8080/feed"),
        Feed("short form", "http://127.1/feed"),
        Feed("decimal", "http://2130706433/feed"),
        Feed("metadata", "http://169.254.169.254/latest/meta-data/"),
        Feed("v6", "http://[::1]/feed"),
        Feed("localhost", "http://localhost/feed"),
    ]
    report = import_feeds(store, feeds, interval=900, allow_private=False)
    assert report.added == [] and len(report.refused) == len(feeds)
    report = import_feeds(store, feeds, interval=900, allow_private=True)
    assert len(report.added) == len(feeds)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><opml><body/></opml>', "DOCTYPE"),
        (b"<rss><channel/></rss>", "not <opml>"),
        (b"<opml><body><outline", "not well-formed"),
        (b"<opml>" + b" " * (6 * 1024 * 1024) + b"</opml>", "too large"),
    ],
)
def test_what_is_not_opml_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(OpmlError, match=problem):
        parse_opml(data)


def test_sources_import_and_export_commands(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = write_config(
        tmp_path / "newsalert.toml",
        sources=[{"name": "From config", "url": "https://config.example/rss"}],
        watchlists={"csam": "csam"},
    )
    result = run_newsalert("sources", "import", str(FEEDLY), config=config, db=db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith(
        "9 sources added, 0 restored, 0 already present, 2 refused"
    )
    result = run_newsalert("sources", "export", config=config, db=db)
    assert result.returncode == 0
    exported = [(f.name, f.url, f.type) for f in parse_opml(result.stdout.encode())]
    assert sorted(exported) == sorted([("From config", "https://config.example/rss", "feed"), *EXPECTED])
    result = run_newsalert("sources", "import", str(tmp_path / "missing.opml"), config=config, db=db)
    assert result.returncode == 1 and "cannot read" in result.stderr
