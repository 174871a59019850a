"""Tests for bot.normalize: plain text, canonical URLs, UTC times, headline-only detection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.ingest.normalize import (
    HEADLINE_CHARS,
    canonical_url,
    headline_from,
    html_to_text,
    normalize,
    strip_outlet,
    to_utc,
    url_key,
)
from bot.ingest.parse import parse
from bot.model import Entry, Item, Source

DATA = Path(__file__).parent / "data"
FETCHED = datetime(2026, 2, 6, 8, 0, tzinfo=UTC)

GOOGLE = Source(name="google-deepfake", url="https://news.google.com/rss/search?q=deepfake", type="feed")
WORDPRESS = Source(name="app", url="https://www.app.com.pk/wp-json/wp/v2/posts", type="wordpress")
BLOG = Source(name="blog", url="https://blog.example.com/feed/", type="feed")


def items_from(name: str, source: Source) -> list[Item]:
    entries = parse((DATA / name).read_bytes(), source)
    return [normalize(entry, source, FETCHED) for entry in entries]


# --- html_to_text -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>a</p><p>b</p>", "a b"),
        ("<div>end.</div><div>Start</div>", "end. Start"),
        ("line<br>break<br/>again", "line break again"),
        ("<ul><li>one</li><li>two</li></ul>", "one two"),
        ("<h2>Head</h2>body", "Head body"),
        ("<blockquote>quoted</blockquote>reply", "quoted reply"),
        ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b c"),
        ("<b>bold</b>face and <a href='https://x.example'>link</a>ed", "boldface and linked"),
        ('before <img alt="x" src="y.png"> after', "before after"),
        ("<p>children&#8217;s &amp; &quot;teens&quot; &hellip;</p>", 'children’s & "teens" …'),
        ("<p>UNICEF,\xa0 has</p>", "UNICEF, has"),
        (
            "<p>thin\u2009space, em\u2003space, ideographic\u3000space</p>",
            "thin space, em space, ideographic space",
        ),
        ("<p>deep\u200bfake</p>", "deepfake"),
        ("<!-- tracking pixel below --><p>text</p>", "text"),
        ("<p>a < b</p>", "a < b"),
        ("", ""),
        ("   \n\t ", ""),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    ("plain", "text"),
    [
        ("Plain text, nothing to do.", "Plain text, nothing to do."),
        ("a < b and c > d", "a < b and c > d"),
        ("if x<y and z>1 then", "if x<y and z>1 then"),  # looks like a tag, is not a known one
        ("AT&amp;T &#8220;quoted&#8221;", "AT&T “quoted”"),
        ("AT&T stays", "AT&T stays"),
        ("  spaced \n\n out\u00a0text  ", "spaced out text"),
        ("see https://example.com/a?b=1&utm_source=x", "see https://example.com/a?b=1&utm_source=x"),
    ],
)
def test_html_to_text_plain_input(plain: str, text: str) -> None:
    assert html_to_text(plain) == text


def test_html_to_text_drops_media_and_code_completely() -> None:
    html = (
        "<p>Start</p>"
        '<figure><img src="a.jpg" alt="ALT1"><figcaption>CAPTION Photo: Getty</figcaption></figure>'
        '<picture><source srcset="b.webp"><img src="b.jpg" alt="ALT2"></picture>'
        '<video controls><source src="v.mp4">VIDEO-FALLBACK</video>'
        "<audio>AUDIO-FALLBACK</audio>"
        '<iframe src="https://www.youtube.com/embed/x">IFRAME-FALLBACK</iframe>'
        '<object data="x.swf">OBJECT-FALLBACK</object><embed src="y.swf">'
        "<svg><title>SVG-TITLE</title><text>SVG-TEXT</text></svg>"
        "<canvas>CANVAS-FALLBACK</canvas>"
        "<script>var SCRIPT = 1;</script><style>.STYLE{}</style>"
        "<noscript>NOSCRIPT</noscript><template><p>TEMPLATE</p></template>"
        "<p>End</p>"
    )
    assert html_to_text(html) == "Start End"


def test_html_to_text_is_not_thrown_by_broken_markup() -> None:
    assert html_to_text("<p>unclosed <b>bold <i>italic") == "unclosed bold italic"
    assert html_to_text("<p>" * 10_000 + "deep") == "deep"
    assert html_to_text("<p>nul\x00byte</p>") == "nulbyte"
    assert html_to_text("<div>tail</div></p></div></span>") == "tail"


# --- canonical_url ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base", "canonical"),
    [
        ("https://example.com/a", "", "https://example.com/a"),
        ("HTTPS://WWW.Example.COM/Path/Case", "", "https://www.example.com/Path/Case"),
        ("https://example.com", "", "https://example.com/"),
        ("https://example.com?x=1", "", "https://example.com/?x=1"),
        ("http://example.com:80/a", "", "http://example.com/a"),
        ("https://example.com:443/a", "", "https://example.com/a"),
        ("https://example.com:8443/a", "", "https://example.com:8443/a"),
        ("http://example.com:443/a", "", "http://example.com:443/a"),
        ("https://example.com/a#comments", "", "https://example.com/a"),
        (
            "https://example.com/a?utm_source=rss&id=7&utm_medium=feed&UTM_Campaign=x&page=2",
            "",
            "https://example.com/a?id=7&page=2",
        ),
        (
            "https://example.com/a?fbclid=1&gclid=2&dclid=3&gbraid=4&wbraid=5&msclkid=6&yclid=7&mc_cid=8"
            "&mc_eid=9&igshid=10&_ga=11&_gl=12&ref_src=13&cmpid=14",
            "",
            "https://example.com/a",
        ),
        # The parameters that stay keep their order and their exact encoding.
        ("https://example.com/s?q=a+b&z=%2F&a=1&fbclid=x", "", "https://example.com/s?q=a+b&z=%2F&a=1"),
        ("https://example.com/a?ref=home", "", "https://example.com/a?ref=home"),  # only ref_src is tracking
        (
            "/2026/02/05/story/",
            "https://news.example.org/feed/",
            "https://news.example.org/2026/02/05/story/",
        ),
        (
            "story.html",
            "https://news.example.org/section/feed.xml",
            "https://news.example.org/section/story.html",
        ),
        ("//cdn.example.net/x", "https://news.example.org/", "https://cdn.example.net/x"),
        ("https://other.example/x", "https://news.example.org/", "https://other.example/x"),
        ("  https://example.com/a  ", "", "https://example.com/a"),
        ("https://user:secret@example.com/a", "", "https://example.com/a"),
        ("http://[2001:DB8::1]:80/a", "", "http://[2001:db8::1]/a"),
        ("mailto:tips@example.com", "", ""),
        ("javascript:alert(1)", "https://news.example.org/", ""),
        ("ftp://example.com/file", "", ""),
        ("/relative/without/base", "", ""),
        ("", "https://news.example.org/", ""),
        ("https:///no-host", "", ""),
        ("https://example.com:99999/a", "", ""),
        ("https://example.com:port/a", "", ""),
        ("http://[::1/a", "", ""),
    ],
)
def test_canonical_url(url: str, base: str, canonical: str) -> None:
    assert canonical_url(url, base) == canonical


# --- to_utc and strip_outlet ------------------------------------------------------------


def test_to_utc() -> None:
    assert to_utc(datetime(2026, 2, 5, 12, 0)) == datetime(2026, 2, 5, 12, 0, tzinfo=UTC)
    assert to_utc(datetime(2026, 2, 5, 12, 0)).tzinfo is UTC
    karachi = timezone(timedelta(hours=5))
    converted = to_utc(datetime(2026, 2, 5, 22, 12, 14, tzinfo=karachi))
    assert converted == datetime(2026, 2, 5, 17, 12, 14, tzinfo=UTC)
    assert converted.tzinfo is UTC
    assert converted.hour == 17


@pytest.mark.parametrize(
    ("title", "outlet", "stripped"),
    [
        ("Story headline - BBC", "BBC", "Story headline"),
        ("Story headline – BBC", "BBC", "Story headline"),
        ("Story headline | BBC", "BBC", "Story headline"),
        ("Story headline - bbc", "BBC", "Story headline"),
        ("Story headline - The  Guardian ", "The Guardian", "Story headline"),
        ("Talks in Kyiv - Kyiv - Reuters", "Reuters", "Talks in Kyiv - Kyiv"),
        ("Story headline - Reuters", "BBC", "Story headline - Reuters"),
        ("Story headline-BBC", "BBC", "Story headline-BBC"),
        ("Story about the BBC", "BBC", "Story about the BBC"),
        (" - BBC", "BBC", " - BBC"),
        ("Story headline - BBC", "", "Story headline - BBC"),
    ],
)
def test_strip_outlet(title: str, outlet: str, stripped: str) -> None:
    assert strip_outlet(title, outlet) == stripped


# --- normalize: the real fixtures -------------------------------------------------------


def test_wordpress_fixture_item() -> None:
    (item,) = items_from("app-unicef-deepfake-csam-post.json", WORDPRESS)

    assert item.source == "app"
    assert item.guid == "https://www.app.com.pk/?p=1157729"
    assert item.url == (
        "https://demo.app.com.pk/index.php/2026/02/05/"
        "unicef-calls-on-governments-to-criminalize-ai-generated-child-abuse-material/"
    )
    assert item.title == "UNICEF calls on governments to criminalize AI-generated child abuse material"
    assert item.published == datetime(2026, 2, 5, 17, 12, 14, tzinfo=UTC)
    assert item.fetched == FETCHED
    assert item.headline_only is False
    assert item.outlet == ""
    assert "child sexual abuse material" in item.text
    assert "deep-fakes" in item.text
    for leftover in ("&#8217;", "&#8212;", "\xa0", "<", "  "):
        assert leftover not in item.text
    assert item.text.startswith(
        "UNITED NATIONS, Feb 05 (APP): The United Nations children’s agency, UNICEF, has issued an urgent"
    )
    # Adjacent <div>s must not glue sentences together.
    assert "in the past year. “The harm from deep-fake abuse is real and urgent,”" in item.text
    assert item.text.endswith("strengthen content moderation with investment in detection technologies.")


def test_google_news_items_are_headline_only() -> None:
    items = items_from("search-deepfake-csam.rss", GOOGLE)

    assert [(i.title, i.outlet) for i in items] == [
        ("UNICEF urges governments to criminalise AI-generated child sexual abuse material", "UN News"),
        (
            "1.2 million children had images turned into sexual deepfakes, UNICEF-INTERPOL study finds",
            "The Guardian",
        ),
        (
            "UNICEF calls on governments to criminalize AI-generated child abuse material",
            "Associated Press of Pakistan",
        ),
        ("Deepfake 'nudification' apps: what the new UNICEF guidance says", "BBC"),
        ("Premier League transfer deadline day: all the done deals", "Sky Sports"),
    ]
    assert all(i.headline_only for i in items)
    assert all(i.text == "" for i in items)
    assert items[0].url == (
        "https://news.google.com/rss/articles/CBMiq0AUZfeXqLOpaqueIdentifierThatIsNotABase64UrlAnyMore00?oc=5"
    )
    assert items[0].guid == "CBMiq0AUZfeXqLOpaqueIdentifierThatIsNotABase64UrlAnyMore00"
    assert items[0].published == datetime(2026, 2, 5, 17, 30, tzinfo=UTC)


# --- normalize: the rules one by one ----------------------------------------------------


def entry(**fields: object) -> Entry:
    defaults: dict[str, object] = {"guid": "g-1", "link": "https://blog.example.com/p/1", "title": "A title"}
    return Entry(**{**defaults, **fields})  # type: ignore[arg-type]


def test_content_wins_over_summary_and_media_is_dropped() -> None:
    item = normalize(
        entry(
            summary="<p>Teaser only.</p>",
            content='<figure><img alt="ALT"><figcaption>Photo: X</figcaption></figure><p>Full body.</p>',
        ),
        BLOG,
        FETCHED,
    )
    assert item.text == "Full body."
    assert item.headline_only is False


def test_summary_used_when_content_has_no_text() -> None:
    item = normalize(
        entry(summary="<p>The teaser.</p>", content='<p><img src="only-a-picture.jpg"></p>'), BLOG, FETCHED
    )
    assert item.text == "The teaser."


def test_no_text_at_all_is_headline_only() -> None:
    item = normalize(entry(summary="", content=""), BLOG, FETCHED)
    assert (item.text, item.headline_only) == ("", True)


HEADLINE = "Regulator fines platform over child safety failures"


@pytest.mark.parametrize(
    "summary",
    [
        HEADLINE,
        f"<p>{HEADLINE}</p>",
        f'<a href="https://news.google.com/x">{HEADLINE}</a>&nbsp;&nbsp;<font color="#666">The Outlet</font>',
        f"{HEADLINE} - The Outlet",
        f"{HEADLINE.upper()}.",
        "The Outlet",
        "Regulator fines platform over child…",  # a truncated copy
    ],
)
def test_text_that_only_repeats_the_headline(summary: str) -> None:
    item = normalize(
        entry(title=f"{HEADLINE} - The Outlet", summary=summary, outlet="The Outlet"), BLOG, FETCHED
    )
    assert item.title == HEADLINE
    assert item.outlet == "The Outlet"
    assert (item.text, item.headline_only) == ("", True)


def test_real_snippet_is_kept_even_for_aggregator_items() -> None:
    # Bing News style: the description is a real lead paragraph, not a copy of the title.
    item = normalize(
        entry(
            title=f"{HEADLINE} - The Outlet",
            outlet="The Outlet",
            summary=f"{HEADLINE}: the regulator said on Thursday that the platform had failed children.",
        ),
        BLOG,
        FETCHED,
    )
    assert item.headline_only is False
    assert item.text == f"{HEADLINE}: the regulator said on Thursday that the platform had failed children."


def test_title_is_cleaned_and_only_stripped_with_an_outlet() -> None:
    cleaned = normalize(entry(title="Scaling &amp; <b>review</b>\xa0queues - Engineering"), BLOG, FETCHED)
    assert cleaned.title == "Scaling & review queues - Engineering"  # no outlet: nothing to strip
    assert cleaned.outlet == ""
    stripped = normalize(
        entry(title="Fines &#8211; EU | Politico Europe", outlet="Politico Europe"), BLOG, FETCHED
    )
    assert stripped.title == "Fines – EU"


def test_url_is_canonical_and_relative_to_the_source() -> None:
    item = normalize(entry(link="/p/1?utm_source=rss&id=3#comments"), BLOG, FETCHED)
    assert item.url == "https://blog.example.com/p/1?id=3"
    assert normalize(entry(link="javascript:void(0)"), BLOG, FETCHED).url == ""
    assert normalize(entry(link=""), BLOG, FETCHED).url == ""


def test_published_is_utc_and_falls_back_to_fetch_time() -> None:
    karachi = timezone(timedelta(hours=5))
    dated = normalize(entry(published=datetime(2026, 2, 5, 22, 0, tzinfo=karachi)), BLOG, FETCHED)
    assert dated.published == datetime(2026, 2, 5, 17, 0, tzinfo=UTC)
    assert dated.published.tzinfo is UTC
    undated = normalize(entry(published=None), BLOG, FETCHED)
    assert undated.published == FETCHED
    naive_fetch = normalize(entry(published=None), BLOG, datetime(2026, 2, 6, 8, 0))
    assert naive_fetch.published == naive_fetch.fetched == FETCHED


def test_guid_unchanged_and_urls_in_text_kept() -> None:
    item = normalize(
        entry(
            guid="  tag:blog.example.com,2026:post-1  ",
            content='<p>Report at https://report.example.org/a?utm_source=x and <a href="/b">here</a>.</p>',
        ),
        BLOG,
        FETCHED,
    )
    assert item.guid == "  tag:blog.example.com,2026:post-1  "
    assert item.text == "Report at https://report.example.org/a?utm_source=x and here."
    assert item.source == "blog"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (
            "https://www.google.com/url?sa=t&url=https://www.bbc.co.uk/news/articles/c123&ved=x",
            "https://www.bbc.co.uk/news/articles/c123",
        ),
        (
            "https://www.bing.com/news/apiclick.aspx?ref=FexRss&url=https%3a%2f%2fapnews.com%2farticle%2fabc&c=1",
            "https://apnews.com/article/abc",
        ),
        (
            "https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.org%2Fstory&h=AT0",
            "https://example.org/story",
        ),
        (
            "https://www-theguardian-com.cdn.ampproject.org/c/s/www.theguardian.com/world/story",
            "https://www.theguardian.com/world/story",
        ),
        # opaque: cannot be undone without fetching it, so it stays as it is
        (
            "https://news.google.com/rss/articles/CBMiq0AUZ?oc=5",
            "https://news.google.com/rss/articles/CBMiq0AUZ?oc=5",
        ),
    ],
)
def test_redirector_links_are_unwrapped(link: str, expected: str) -> None:
    assert canonical_url(link) == expected


@pytest.mark.parametrize(
    "variant",
    [
        "https://www.example.com/news/story-123",
        "https://m.example.com/news/story-123/",
        "http://example.com/news/story-123",
        "https://amp.example.com/news/story-123/amp",
        "https://www.example.com/news/story-123.amp",
        "https://example.com/amp/news/story-123",
        "https://example.com/news/story-123?amp=1",
        "https://www.example.com/news/story-123/?outputType=amp",
    ],
)
def test_amp_mobile_www_and_slash_variants_share_one_key(variant: str) -> None:
    assert url_key(canonical_url(variant)) == "example.com/news/story-123"


def test_url_key_sorts_the_query_but_keeps_what_identifies_the_page() -> None:
    assert url_key("https://example.com/a?id=2&p=1") == url_key("https://example.com/a?p=1&id=2")
    assert url_key("https://example.com/a?id=2") != url_key("https://example.com/a?id=3")
    assert url_key("https://example.com/amplifier") == "example.com/amplifier"


def test_a_malformed_link_gives_no_url_rather_than_an_error() -> None:
    assert canonical_url("https://[::1/x") == ""
    assert canonical_url("/x", "https://[::1/feed") == ""


# --- items without a title ------------------------------------------------------------------


def test_an_item_with_only_a_description_is_titled_by_its_first_words() -> None:
    rss = (
        "<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>"
        "<item><description>&lt;p&gt;Police in Rotterdam seized fourteen servers used to share abuse "
        "images with 2,300 users, and arrested two men.&lt;/p&gt;</description></item>"
        "<item><description>Short note.</description></item></channel></rss>"
    )
    long, short = items_from_body(rss.encode(), BLOG)
    assert long.title == "Police in Rotterdam seized fourteen servers used to share abuse images with…"
    assert len(long.title) <= HEADLINE_CHARS + 1
    assert long.text.startswith("Police in Rotterdam") and long.text.endswith("arrested two men.")
    assert not long.headline_only
    assert (short.title, short.text, short.url) == ("Short note.", "Short note.", "")
    # The guid is a hash of the text: the same on the next poll, different for another text.
    again = items_from_body(rss.encode(), BLOG)
    assert [i.guid for i in again] == [long.guid, short.guid] and long.guid != short.guid


def test_headline_from_cuts_at_a_word() -> None:
    assert headline_from("One two three.") == "One two three."
    assert headline_from("x" * 200) == "x" * HEADLINE_CHARS + "…"
    assert headline_from(("word " * 40).strip()).endswith("word…")


def items_from_body(body: bytes, source: Source) -> list[Item]:
    return [normalize(entry, source, FETCHED) for entry in parse(body, source)]
