"""Tests for bot.parse: real-shaped bodies in, exact Entry fields out, ParseError for non-feeds."""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.errors import ParseError
from bot.ingest.parse import parse
from bot.model import Entry, Source

DATA = Path(__file__).parent / "data"
FEEDS = DATA / "feeds"

FEED = Source(name="policywatch", url="https://policywatch.example.org/feed/", type="feed")
GOOGLE = Source(name="google-deepfake", url="https://news.google.com/rss/search?q=deepfake", type="feed")
JSONFEED = Source(name="digest", url="https://digest.example.org/feed.json", type="jsonfeed")
WORDPRESS = Source(name="app", url="https://www.app.com.pk/wp-json/wp/v2/posts", type="wordpress")


def body(name: str) -> bytes:
    path = DATA / name if (DATA / name).exists() else FEEDS / name
    return path.read_bytes()


def skipped_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "newsalert.parse" and r.getMessage().startswith("entry skipped")
    ]


# --- the two real fixtures ------------------------------------------------------------


def test_google_news_search_feed() -> None:
    entries = parse(body("search-deepfake-csam.rss"), GOOGLE)

    assert [e.outlet for e in entries] == [
        "UN News",
        "The Guardian",
        "Associated Press of Pakistan",
        "BBC",
        "Sky Sports",
    ]
    assert [e.outlet_url for e in entries] == [
        "https://news.un.org",
        "https://www.theguardian.com",
        "https://www.app.com.pk",
        "https://www.bbc.co.uk",
        "https://www.skysports.com",
    ]
    first = entries[0]
    assert first.guid == "CBMiq0AUZfeXqLOpaqueIdentifierThatIsNotABase64UrlAnyMore00"
    assert first.link == (
        "https://news.google.com/rss/articles/CBMiq0AUZfeXqLOpaqueIdentifierThatIsNotABase64UrlAnyMore00?oc=5"
    )
    # Parse keeps the title as the feed gives it; the " - Outlet" suffix is normalize's job.
    assert (
        first.title
        == "UNICEF urges governments to criminalise AI-generated child sexual abuse material - UN News"
    )
    assert first.published == datetime(2026, 2, 5, 17, 30, tzinfo=UTC)
    assert first.content == ""
    assert first.summary.startswith('<a href="https://news.google.com/rss/articles/CBMiq0AU')
    assert first.summary.endswith('<font color="#6f6f6f">UN News</font>')
    assert entries[3].title == "Deepfake 'nudification' apps: what the new UNICEF guidance says - BBC"
    assert [e.published.minute for e in entries if e.published] == [30, 13, 56, 39, 22]


def test_wordpress_single_post_fixture() -> None:
    (entry,) = parse(body("app-unicef-deepfake-csam-post.json"), WORDPRESS)

    assert entry.guid == "https://www.app.com.pk/?p=1157729"
    assert entry.link == (
        "https://demo.app.com.pk/index.php/2026/02/05/"
        "unicef-calls-on-governments-to-criminalize-ai-generated-child-abuse-material/"
    )
    assert entry.title == "UNICEF calls on governments to criminalize AI-generated child abuse material"
    # date_gmt is UTC; ``date`` (22:12:14) is Pakistan local time and must not be used.
    assert entry.published == datetime(2026, 2, 5, 17, 12, 14, tzinfo=UTC)
    assert entry.summary.startswith(
        "<p>UNITED NATIONS, Feb 05 (APP): The United Nations children&#8217;s agency"
    )
    assert entry.content.startswith('<div style="text-align: justify;">UNITED NATIONS, Feb 05 (APP)')
    assert "AI-generated child sexual abuse material normalizes" in entry.content
    assert entry.outlet == ""


# --- RSS and Atom ---------------------------------------------------------------------


def test_rss2_with_content_encoded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    entries = parse(body("rss2-content-encoded.xml"), FEED)

    assert len(entries) == 5
    ofcom, eu, untitled, roundup, future = entries
    assert ofcom.guid == "https://policywatch.example.org/?p=48211"
    assert ofcom.link == (
        "https://policywatch.example.org/2026/02/05/ofcom-nudify-investigation/?utm_source=rss&utm_medium=rss"
    )
    assert ofcom.title == "Ofcom opens investigation into “nudify” app operators"
    assert ofcom.published == datetime(2026, 2, 5, 17, 30, tzinfo=UTC)  # 22:30 +0500
    assert ofcom.summary == "<p>The regulator said the services failed to protect children&#8230;</p>"
    # content:encoded beats the description.
    assert "<strong>Ofcom</strong> has opened an investigation" in ofcom.content
    assert "<figcaption>" in ofcom.content

    assert eu.guid == eu.link == "https://policywatch.example.org/2026/02/04/eu-age-assurance-guidelines/"
    assert eu.content == ""
    assert eu.published == datetime(2026, 2, 4, 9, 15, tzinfo=UTC)

    # Only a description (RSS 2.0 allows it): kept, its guid a hash of the text (normalize gives
    # it a title from the text's first words).
    assert (untitled.title, untitled.link) == ("", "")
    assert untitled.summary == "An item with neither a title nor a link, as RSS 2.0 allows."
    assert untitled.guid.startswith("sha1:")

    # No guid and no link: a stable hash stands in; dc:date is used as the publication time.
    assert roundup.link == ""
    assert roundup.guid.startswith("sha1:")
    assert roundup.published == datetime(2026, 2, 3, 7, 0, tzinfo=UTC)

    # A relative link resolves against the feed URL; year 99999 is no date.
    assert future.link == "https://policywatch.example.org/2026/02/02/far-future/"
    assert future.published is None

    assert skipped_reasons(caplog) == []


def test_fallback_guid_is_stable_and_distinct() -> None:
    first = parse(body("rss2-content-encoded.xml"), FEED)
    second = parse(body("rss2-content-encoded.xml"), FEED)
    assert first[2].guid == second[2].guid
    assert len({e.guid for e in first}) == len(first)

    other = (
        b"<rss version='2.0'><channel><item><title>Weekly roundup: trust and safety jobs</title>"
        b"<pubDate>Tue, 10 Feb 2026 07:00:00 GMT</pubDate></item></channel></rss>"
    )
    (next_week,) = parse(other, FEED)
    assert next_week.guid.startswith("sha1:")
    assert next_week.guid != first[2].guid  # same title, different week: a different item


def test_fullest_of_several_contents_wins() -> None:
    # feedparser lists every body it finds; here an XHTML teaser comes before content:encoded.
    feed = b"""<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
      xmlns:xhtml="http://www.w3.org/1999/xhtml"><channel><item>
      <title>Two bodies</title><link>https://x.example/1</link>
      <xhtml:body><p>Short teaser.</p></xhtml:body>
      <content:encoded><![CDATA[<p>The full article, much longer than the teaser.</p>]]></content:encoded>
    </item></channel></rss>"""
    (entry,) = parse(feed, FEED)
    assert entry.content == "<p>The full article, much longer than the teaser.</p>"


def test_rss1_rdf() -> None:
    grooming, hashing = parse(body("rss1-rdf.xml"), FEED)

    assert (
        grooming.guid
        == grooming.link
        == "https://safety-journal.example.net/articles/2026/grooming-detection"
    )
    assert grooming.title == "New study measures grooming detection in encrypted messaging"
    assert grooming.summary == "Researchers compared client-side classifiers & metadata signals."
    assert grooming.published == datetime(2026, 2, 5, 9, 0, tzinfo=UTC)  # dc:date 10:00+01:00
    assert hashing.content == (
        "<p>A review of <em>PhotoDNA</em>-style approaches and their false-positive rates.</p>"
    )
    assert hashing.summary == "A review of PhotoDNA-style approaches."
    assert hashing.published is None


def test_atom_with_xhtml_content() -> None:
    scaling, workshop = parse(body("atom-xhtml.xml"), FEED)

    assert scaling.guid == "tag:blog.example.com,2026:post-101"
    assert scaling.link == "https://blog.example.com/posts/scaling-hash-matching#intro"  # xml:base applied
    assert scaling.title == "Scaling CSAM hash-matching &amp; review queues"  # type="html": still HTML
    assert scaling.summary == "How we rebuilt our review pipeline."
    assert scaling.content.startswith(
        "<p>We rebuilt our <b>review pipeline</b> to handle ten times the volume.</p>"
    )
    assert 'alt="Queue depth chart"' in scaling.content
    assert scaling.published == datetime(2026, 2, 5, 14, 30, tzinfo=UTC)  # published wins over updated

    assert workshop.link == "https://blog.example.com/posts/deepfake-workshop"
    assert workshop.content == "<p>Three takeaways on <i>synthetic media</i> labelling.</p>"
    assert workshop.published == datetime(2026, 2, 1, 16, 45, tzinfo=UTC)  # only <updated>


def test_response_headers_give_charset_and_base() -> None:
    latin1 = (
        "<rss version='2.0'><channel><item><title>Überwachung: Plattform zahlt 5 Mio. €</title>"
        "<link>/artikel/1</link></item></channel></rss>"
    ).encode("iso-8859-15")
    headers = {
        "Content-Type": "application/rss+xml; charset=ISO-8859-15",
        "Content-Location": "https://nachrichten.example.de/feed/",
    }
    (entry,) = parse(latin1, FEED, headers)
    assert entry.title == "Überwachung: Plattform zahlt 5 Mio. €"
    assert entry.link == "https://nachrichten.example.de/artikel/1"


def test_malformed_feed_with_entries_keeps_them_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    fine, second = parse(body("rss-undefined-entity.xml"), FEED)

    assert fine.title == "Platform fined\xa0€5m over illegal content"
    assert fine.published == datetime(2026, 2, 5, 9, 0, tzinfo=UTC)
    assert second.guid == "https://sloppy.example.com/news/second"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "feed malformed, entries kept source='policywatch' url=https://policywatch.example.org/feed/ "
        "entries=2 reason=undefined entity at line 6"
    ]


def test_truncated_feed_keeps_what_arrived(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    entries = parse(body("rss-truncated.xml"), FEED)
    assert [e.title for e in entries] == ["First complete item", "Second item is cut"]
    assert entries[0].published == datetime(2026, 2, 5, 10, 0, tzinfo=UTC)
    assert any("no element found" in r.getMessage() for r in caplog.records)


def test_valid_empty_feed_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert parse(body("rss-empty.xml"), FEED) == []
    empty_atom = b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>'
    assert parse(empty_atom, FEED, {"Content-Type": "application/atom+xml"}) == []
    assert caplog.records == []


@pytest.mark.parametrize(
    ("payload", "headers", "reason"),
    [
        (body("malformed-mismatched.xml"), None, "not a feed: mismatched tag at line 3"),
        (body("html-page.html"), None, "not a feed: got HTML"),
        # Well-formed XHTML parses as XML, so only the Content-Type gives it away.
        (
            b"<div><p>Sign in to continue</p></div>",
            {"Content-Type": "text/html; charset=utf-8"},
            "not a feed: got HTML",
        ),
        (body("not-a-feed.xml"), None, "not a feed: no RSS or Atom root element"),
        (b"[1, 2, 3]", None, "not a feed: got JSON"),
        (b'{"version": "1.0", "items": []}', None, "not a feed: got JSON"),
        (bytes(range(256)), None, "not a feed: not well-formed (invalid token) at line 2"),
        # The fallback parser salvages one item from this, but with no title or link it is nothing.
        (b"<rss><channel><item><title>unterminated", None, "not a feed: no element found at line 2"),
        (b"", None, "empty body"),
        (b" \r\n\t ", None, "empty body"),
    ],
    ids=[
        "mismatched",
        "html",
        "xhtml",
        "sitemap",
        "json-array",
        "json-object",
        "binary",
        "unterminated",
        "empty",
        "blank",
    ],
)
def test_not_a_feed(payload: bytes, headers: dict[str, str] | None, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(payload, FEED, headers)
    assert caught.value.url == FEED.url
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("payload", "title"),
    [
        # feedparser itself raises on these; they are replaced before it sees them, so one bad
        # character reference costs one character, not the whole feed.
        (b"<rss version='2.0'><channel><item><title>&#99999999;</title></item></channel></rss>", "\ufffd"),
        (b"<rss version='2.0'><channel><item><title>a &#xD800;</title></item></channel></rss>", "a \ufffd"),
    ],
    ids=["char-ref-out-of-range", "surrogate-char-ref"],
)
def test_character_references_feedparser_chokes_on_become_replacement_characters(
    payload: bytes, title: str
) -> None:
    assert parse(payload, FEED)[0].title == title


def test_random_garbage_never_escapes_as_another_exception() -> None:
    rng = random.Random(20260205)
    originals = [body(n) for n in ("rss2-content-encoded.xml", "atom-xhtml.xml", "rss1-rdf.xml")]
    for _ in range(200):
        mangled = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(mangled))
            mangled[at : at + rng.randint(0, 30)] = rng.randbytes(rng.randint(0, 6))
        try:
            entries = parse(bytes(mangled), FEED)
        except ParseError:
            continue
        assert all(isinstance(e, Entry) and (e.title or e.link or e.summary or e.content) for e in entries)
        assert all(e.guid for e in entries)
    with pytest.raises(ParseError):
        parse(rng.randbytes(4096), FEED)


def test_body_is_never_treated_as_a_url_or_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import feedparser.http

    def no_network(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("feedparser tried to fetch a URL")

    monkeypatch.setattr(feedparser.http, "get", no_network)
    with pytest.raises(ParseError):
        parse(b"https://example.com/feed.xml", FEED)

    local_feed = tmp_path / "feed.xml"
    local_feed.write_bytes(body("rss-undefined-entity.xml"))
    with pytest.raises(ParseError):
        parse(str(local_feed).encode(), FEED)  # a path as body must not be opened


def test_external_entities_are_not_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    feed = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY leak SYSTEM "file://{secret}">]>'
        "<rss version='2.0'><channel><item><title>x &leak; y</title><link>https://a.example/1</link>"
        "</item></channel></rss>"
    ).encode()
    entries = parse(feed, FEED)
    assert entries[0].link == "https://a.example/1"
    assert all("TOPSECRET" not in (e.title + e.summary + e.content) for e in entries)


def test_unknown_source_type() -> None:
    odd = Source(name="odd", url="https://odd.example/", type="sitemap")  # type: ignore[arg-type]
    with pytest.raises(ParseError, match="unknown source type 'sitemap'"):
        parse(b"<urlset/>", odd)


# --- JSON Feed ------------------------------------------------------------------------


@pytest.mark.parametrize("source", [JSONFEED, FEED], ids=["jsonfeed-source", "detected-in-feed-source"])
def test_json_feed(source: Source, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    sextortion, link_post, microblog, text_only, odd_date = parse(body("jsonfeed-1.1.json"), source)

    assert sextortion == Entry(
        guid="https://digest.example.org/2026/02/05/sextortion-warning",
        link="https://digest.example.org/2026/02/05/sextortion-warning",
        title="Police warn of rise in financial sextortion targeting teens",
        summary="Reports rose sharply in January.",
        content=(
            '<p>Reports rose <strong>sharply</strong> in January.</p><p><img src="chart.png" alt="chart"></p>'
        ),
        published=datetime(2026, 2, 5, 13, 20, tzinfo=UTC),
    )
    # url is the post itself; external_url only when there is no url.
    assert link_post.link == "https://digest.example.org/2026/02/04/link"
    assert link_post.content == "Worth reading in full."
    assert link_post.published == datetime(2026, 2, 4, 8, 0, tzinfo=UTC)  # date_modified fallback
    assert microblog.guid == "4031"  # JSON Feed 1.0 allowed numeric ids
    assert microblog.link == "https://www.example-news.com/world/moderators-union"
    assert microblog.title == ""
    assert (text_only.guid, text_only.link) == ("no-title-no-link", "")
    assert text_only.content == "Nothing to link to."
    assert odd_date.published is None
    assert [r.split("reason=")[1] for r in skipped_reasons(caplog)] == ["item is a string, not an object"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "items": [',
            "invalid JSON: Expecting value at line 1",
        ),
        (b"[1, 2, 3]", "not a JSON Feed: top level is an array, not an object"),
        (b'{"version": "https://jsonfeed.org/version/1", "title": "x"}', "not a JSON Feed: no items list"),
        (
            b'{"version": "https://jsonfeed.org/version/1", "items": {"id": 1}}',
            "not a JSON Feed: no items list",
        ),
        (body("rss-empty.xml"), "not JSON: got HTML or XML"),
        (b"\xfa\xfb garbage", "invalid JSON: not utf-8 text"),
        (b"[" * 100_000, "invalid JSON: maximum recursion depth exceeded"),
        (b"", "empty body"),
    ],
    ids=[
        "truncated",
        "array-of-numbers",
        "no-items",
        "items-not-list",
        "xml",
        "binary",
        "deep-nesting",
        "empty",
    ],
)
def test_json_feed_errors(payload: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(payload, JSONFEED)
    # A prefix: the tail of json's own messages ("... while decoding a JSON array ...") varies by version.
    assert caught.value.reason.startswith(reason)


def test_json_feed_dates_and_odd_values() -> None:
    document = {
        "version": "https://jsonfeed.org/version/1",
        "items": [
            {"id": "naive", "url": "https://x.example/1", "date_published": "2026-02-05T10:00:00"},
            {"id": "zulu", "url": "https://x.example/2", "date_published": "2026-02-05T10:00:00.123Z"},
            {"id": "feb30", "url": "https://x.example/3", "date_published": "2026-02-30T10:00:00Z"},
            {"id": "words", "url": "https://x.example/4", "date_published": "last Tuesday"},
            {"id": "number", "url": "https://x.example/5", "date_published": 1770285600},
            {"id": "year-one", "url": "https://x.example/6", "date_published": "0001-01-01T00:00:00+01:00"},
            {"id": ["not", "a", "string"], "url": "https://x.example/7", "title": {"nested": True}},
            {"id": "surrogate", "url": "https://x.example/8", "title": "broken \ud800 text"},
        ],
    }
    entries = parse(json.dumps(document).encode(), JSONFEED)
    assert [e.published for e in entries[:6]] == [
        datetime(2026, 2, 5, 10, 0, tzinfo=UTC),  # no offset: taken as UTC, as feedparser does for RSS
        datetime(2026, 2, 5, 10, 0, 0, 123000, tzinfo=UTC),
        None,
        None,
        None,
        None,
    ]
    assert entries[6].guid == "https://x.example/7"  # unusable id: falls back to the link
    assert entries[6].title == ""
    assert entries[7].title == "broken ? text"
    assert entries[7].title.encode("utf-8")  # storable and sendable


# --- WordPress ------------------------------------------------------------------------


def test_wordpress_post_list(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    lawsuit, scheduled, local_only, orphan = parse(body("wordpress-posts.json"), WORDPRESS)

    assert lawsuit == Entry(
        guid="https://news.example.org/?p=5120",
        link="https://news.example.org/2026/02/05/state-ag-sues-chat-app/",
        title="State AG sues chat app over child safety &#8211; filing",
        summary="<p>The attorney general&#8217;s complaint alleges&hellip;</p>",
        content=(
            "<p>The attorney general&#8217;s complaint alleges the app ignored reports.</p>\n"
            '<figure class="wp-block-image"><img src="https://news.example.org/wp-content/uploads/court.jpg" '
            'alt="Courthouse"/></figure>'
        ),
        published=datetime(2026, 2, 5, 14, 0, tzinfo=UTC),
    )
    # Empty guid.rendered falls back to the link; null date_gmt: ``date`` (local, 23:30) with the
    # site's offset, read from modified (00:10) - modified_gmt (05:10): UTC-5. Never modified_gmt.
    assert scheduled.guid == "https://news.example.org/2026/02/04/draft-recovered/"
    assert scheduled.published == datetime(2026, 2, 5, 4, 30, tzinfo=UTC)
    assert scheduled.content == ""
    assert scheduled.summary == "<p>Only an excerpt here.</p>"
    # Only the site-local ``date``: better no time than a wrong one.
    assert local_only.published is None
    # No title and no link, but text: kept under its id.
    assert (orphan.guid, orphan.title, orphan.content) == ("5117", "", "<p>Orphan.</p>")
    assert [r.split("reason=")[1] for r in skipped_reasons(caplog)] == ["post is a number, not an object"]


def test_wordpress_field_fallbacks() -> None:
    posts = [
        {"id": 77, "title": {"rendered": "Only an id"}, "date_gmt": "0000-00-00T00:00:00"},
        {
            "id": 78,
            "title": "Flattened by _fields",
            "link": "https://wp.example/78",
            "date": "2026-02-05T10:00:00+05:00",
        },
        {
            "id": 79,
            "title": {"rendered": "Bad gmt"},
            "date_gmt": "2026-13-45T99:00:00",
            "modified_gmt": "2026-02-01T00:00:00",
        },
    ]
    only_id, flattened, bad_gmt = parse(json.dumps(posts).encode(), WORDPRESS)
    assert (only_id.guid, only_id.link, only_id.published) == ("77", "", None)
    assert flattened.title == "Flattened by _fields"
    assert flattened.guid == "https://wp.example/78"
    assert flattened.published == datetime(2026, 2, 5, 5, 0, tzinfo=UTC)  # ``date`` with an offset is usable
    assert bad_gmt.published is None  # modified_gmt is when it was edited, not published


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            b'{"code": "rest_no_route", "message": "No route was found matching the URL and request method.",'
            b' "data": {"status": 404}}',
            "WordPress error rest_no_route: No route was found matching the URL and request method.",
        ),
        (b'{"name": "A site", "namespaces": ["wp/v2"]}', "not WordPress posts: object without id or link"),
        (b'"posts"', "not WordPress posts: top level is a string"),
        (b"null", "not WordPress posts: top level is null"),
        (body("html-page.html"), "not JSON: got HTML or XML"),
        (b"{'id': 1}", "invalid JSON: Expecting property name enclosed in double quotes at line 1"),
    ],
    ids=["api-error", "api-index", "string", "null", "html", "python-repr"],
)
def test_wordpress_errors(payload: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(payload, WORDPRESS)
    assert caught.value.reason == reason


def test_wordpress_array_of_numbers_skips_every_post(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert parse(b"[1, 2, 3]", WORDPRESS) == []
    assert len(skipped_reasons(caplog)) == 3
    assert all("source='app'" in message for message in skipped_reasons(caplog))


def test_wordpress_protected_text_is_never_used() -> None:
    posts = [
        {
            "id": 1,
            "link": "https://wp.example/1",
            "title": {"rendered": "Members only"},
            "content": {"rendered": "<p>The secret text.</p>", "protected": True},
            "excerpt": {"rendered": "<p>A public teaser.</p>", "protected": False},
        },
        {
            "id": 2,
            "link": "https://wp.example/2",
            "title": {"rendered": "Fully locked"},
            "content": {"rendered": "<p>Secret.</p>", "protected": True},
            "excerpt": {"rendered": "<p>Secret too.</p>", "protected": True},
        },
    ]
    teaser, locked = parse(json.dumps(posts).encode(), WORDPRESS)
    assert (teaser.content, teaser.summary) == ("", "<p>A public teaser.</p>")
    assert (locked.title, locked.content, locked.summary) == ("Fully locked", "", "")


_PHP_NOTICES = (
    b"<br />\n<b>Notice</b>:  Undefined index: lang in <b>/var/www/html/wp-content/plugins/x/x.php</b>"
    b" on line <b>12</b><br />\n<br />\n<b>Deprecated</b>:  Function create_function() is deprecated in"
    b" <b>/var/www/html/wp-includes/y.php</b> on line <b>3</b><br />\n"
)


@pytest.mark.parametrize(
    "prefix",
    [_PHP_NOTICES, b"PHP Warning:  Cannot modify header information in /srv/a.php on line 7\n\n", b"\r\n\t "],
    ids=["html-errors", "plain-errors", "whitespace"],
)
def test_php_notices_before_the_json_are_skipped(prefix: bytes, caplog: pytest.LogCaptureFixture) -> None:
    posts = [{"id": 9, "link": "https://wp.example/9", "title": {"rendered": "After the notices"}}]
    (entry,) = parse(prefix + json.dumps(posts).encode(), WORDPRESS)
    assert entry.title == "After the notices"
    if prefix.strip():
        assert any("PHP messages before the JSON skipped" in r.getMessage() for r in caplog.records)


def test_a_php_error_instead_of_json_is_reported_as_one() -> None:
    fatal = (
        b"<br />\n<b>Fatal error</b>:  Allowed memory size of 134217728 bytes exhausted in "
        b"<b>/var/www/html/wp-includes/z.php</b> on line <b>88</b><br />\n"
    )
    with pytest.raises(ParseError) as caught:
        parse(fatal, WORDPRESS)
    assert caught.value.reason.startswith("not JSON: the site printed a PHP error instead (Fatal error:")
    with pytest.raises(ParseError, match="invalid JSON after 2 PHP messages"):
        parse(_PHP_NOTICES + b'[{"id": 1,', WORDPRESS)
    with pytest.raises(ParseError, match="got HTML or XML"):  # a page is still a page
        parse(b"<!DOCTYPE html><html><body>Maintenance</body></html>", WORDPRESS)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "feedparser"])
@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("Tue,19 Feb 2019 14:08:19 GMT", datetime(2019, 2, 19, 14, 8, 19, tzinfo=UTC)),
        ("19 Feb 2019 14:08:19 -0500", datetime(2019, 2, 19, 19, 8, 19, tzinfo=UTC)),
        ("Tue,19 Feb 2019 14:08:19", datetime(2019, 2, 19, 14, 8, 19, tzinfo=UTC)),
        ("not a date at all", None),
    ],
)
def test_dates_feedparser_cannot_read_are_read_as_email_dates(
    written: str, expected: datetime | None, fast: bool
) -> None:
    doc = (
        "<?xml version='1.0'?><rss version='2.0'><channel><title>t</title><item><title>Dated</title>"
        f"<link>https://a.example/1</link><pubDate>{written}</pubDate></item></channel></rss>"
    )
    (entry,) = parse(doc.encode(), FEED, fast=fast)
    assert entry.published == expected
