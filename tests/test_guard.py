"""The byte-level defences of bot.ingest.guard, through parse() where they show, and one by one."""

from __future__ import annotations

import io
import logging

import feedparser
import pytest

from bot.errors import ParseError
from bot.ingest import guard
from bot.ingest.entries import MAX_ENTRIES
from bot.ingest.parse import parse, run_feedparser
from bot.model import Source

FEED = Source("guarded", "https://guarded.example/feed.xml")


def rss(items: str) -> bytes:
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>t</title>"
        f"{items}</channel></rss>"
    ).encode()


def item(n: int, description: str = "") -> str:
    return (
        f"<item><title>Story {n}</title><link>https://guarded.example/{n}</link>"
        f"<description>{description}</description></item>"
    )


# --- entries are counted where they are markup -------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "feedparser"])
def test_entry_tags_inside_cdata_and_comments_are_not_entries(
    fast: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Each description quotes markup: before, 300 items counted as 600 "entries", and the feed
    # was cut before the "501st", 167 items in, with "dropped=100" in the log.
    quoted = "<![CDATA[How to write <item> and <entry type='x'> in a feed]]>"
    items = "".join(item(n, quoted) + "<!-- <item>not one</item> -->" for n in range(300))
    entries = parse(rss(items), FEED, fast=fast)
    assert len(entries) == 300
    assert "<item>" in entries[0].summary
    assert not any("too many entries" in r.getMessage() for r in caplog.records)


def test_real_entries_past_the_cap_are_still_cut(caplog: pytest.LogCaptureFixture) -> None:
    quoted = "<![CDATA[<item>]]>"
    entries = parse(rss("".join(item(n, quoted) for n in range(MAX_ENTRIES + 20))), FEED)
    assert len(entries) == MAX_ENTRIES and entries[-1].title == f"Story {MAX_ENTRIES - 1}"
    assert any("kept=500 dropped=20" in r.getMessage() for r in caplog.records)


def test_markup_spans_skip_cdata_and_comments_even_unterminated() -> None:
    data = b"a<![CDATA[b]]>c<!--d-->e<![CDATA[never closed <item>"
    assert [data[s:e] for s, e in guard.markup_spans(data)] == [b"a", b"c", b"e"]
    assert guard.markup_spans(b"<!--x-->") == []
    assert guard.markup_spans(b"plain") == [(0, 5)]


# --- attributes --------------------------------------------------------------------------


def attribute_bomb(count: int) -> bytes:
    attributes = " ".join(f'a{i}="v"' for i in range(count))
    return rss(f"<item {attributes}><title>Bomb</title><link>https://guarded.example/b</link></item>")


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "feedparser"])
def test_an_element_with_too_many_attributes_refuses_the_feed(fast: bool) -> None:
    # 200,000 attributes (3.2 MB): 187 s in a poll before; refused before any parser runs.
    with pytest.raises(ParseError) as caught:
        parse(attribute_bomb(200_000), FEED, fast=fast)
    assert (
        caught.value.reason
        == f"refused: an element with more than {guard.MAX_ATTRIBUTES} attributes at line 1"
    )
    assert caught.value.url == FEED.url


def test_attributes_up_to_the_cap_are_fine_in_any_quoting() -> None:
    (entry,) = parse(attribute_bomb(guard.MAX_ATTRIBUTES), FEED)
    assert entry.title == "Bomb"
    many = " ".join(f"a{i}='v'" for i in range(guard.MAX_ATTRIBUTES + 1))
    assert guard.attribute_problem(f"<x {many}>".encode(), [(0, 200_000)]) is not None
    unquoted = " ".join(f"a{i}=v" for i in range(guard.MAX_ATTRIBUTES + 1))
    assert guard.attribute_problem(f"<x {unquoted}>".encode(), [(0, 200_000)]) is not None
    # Text that only looks like a tag, inside CDATA, is not an element.
    quoted = rss(item(1, f"<![CDATA[<x {many}>]]>"))
    assert guard.attribute_problem(quoted, guard.markup_spans(quoted)) is None


def test_the_attribute_search_does_not_backtrack() -> None:
    # Many tags just under the cap, and unterminated quotes: each fails after one pass.
    under = ("<a " + " ".join(f'b{i}="v"' for i in range(guard.MAX_ATTRIBUTES)) + ">") * 5_000
    assert guard.attribute_problem(under.encode(), [(0, len(under))]) is None
    odd = b'<a x="' * 200_000
    assert guard.attribute_problem(odd, [(0, len(odd))]) is None


# --- how much markup feedparser is given ---------------------------------------------------


def test_a_malformed_feed_with_too_many_tags_is_cut_for_feedparser(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Malformed (a bare "&" at the end), so feedparser reads it, at 15-60 µs a tag: 200,000 tags
    # took 6 s. Cut at MAX_TAGS (lowered here: the real one takes seconds to reach), the items
    # before the cut are kept.
    monkeypatch.setattr(guard, "MAX_TAGS", 1_000)
    doc = rss(item(1) + item(2) + "<item><title>Flood</title>" + "<a>" * 5_000 + "</item>" + item(3) + "&")
    entries = parse(doc, FEED)
    assert [e.title for e in entries][:2] == ["Story 1", "Story 2"]
    assert "Story 3" not in [e.title for e in entries]
    assert any(
        "feed cut for feedparser" in r.getMessage() and "more than 1,000 tags" in r.getMessage()
        for r in caplog.records
    )


def test_a_cut_document_goes_straight_to_the_lenient_parser_with_the_same_result() -> None:
    # Cut short, a document is malformed: feedparser's strict parser would read it all and fail
    # at the cut, then its lenient one read it again. Skipping the first changes nothing.
    doc = rss("".join(item(n, "<![CDATA[<b>bold</b> &amp; more]]>") for n in range(MAX_ENTRIES + 5)))
    cut, total = guard.first_entries(doc, guard.markup_spans(doc), MAX_ENTRIES)
    assert total == MAX_ENTRIES + 5 and len(cut) < len(doc)
    headers = {"content-location": FEED.url, "content-type": "application/rss+xml; charset=utf-8"}
    both = feedparser.parse(
        io.BytesIO(cut), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )
    lenient = run_feedparser(cut, headers, lenient_only=True)
    assert both["bozo"] and not lenient["bozo"]
    assert lenient["entries"] == both["entries"] and len(lenient["entries"]) == MAX_ENTRIES
    assert lenient["version"] == both["version"] == "rss20"


def test_the_markup_cut_is_exact_and_ignores_cdata() -> None:
    doc = b"<![CDATA[" + b"<" * 10 + b"]]>" + b"<a>" * (guard.MAX_TAGS + 5)
    at, why = guard.markup_cut(doc, guard.markup_spans(doc))  # type: ignore[misc]
    assert doc[:at].count(b"<") - 11 == guard.MAX_TAGS and doc[at : at + 1] == b"<"
    assert why == f"more than {guard.MAX_TAGS:,} tags"
    refs = b"&x;" * (guard.MAX_REFERENCES + 1)
    at, why = guard.markup_cut(refs, [(0, len(refs))])  # type: ignore[misc]
    assert refs[:at].count(b"&") == guard.MAX_REFERENCES and why.endswith("entity references")
    small = rss(item(1))
    assert guard.markup_cut(small, guard.markup_spans(small)) is None


def test_a_well_formed_feed_with_much_markup_is_not_cut(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(guard, "MAX_TAGS", 1_000)
    # Well-formed: the fast path (lxml) reads it whole; the cut is only for feedparser.
    doc = rss("".join(item(n) for n in range(MAX_ENTRIES)) + "<x/>" * 1_000)
    assert len(parse(doc, FEED)) == MAX_ENTRIES
    assert not any("feed cut" in r.getMessage() for r in caplog.records)
