"""Parse stage: the body of one fetched source -> ``Entry`` values, nothing cleaned yet.

Three source types:

* ``feed``: RSS 0.9x / 1.0 (RDF) / 2.0 and Atom through feedparser; a body that is
  plainly a JSON Feed is accepted too, because sites swap formats behind the same URL.
* ``jsonfeed``: JSON Feed 1.0 / 1.1.
* ``wordpress``: the WordPress REST API, ``/wp-json/wp/v2/posts``.

A body that is not a feed at all raises ``ParseError``; a single bad entry is logged and
skipped so that one broken item never hides the rest of the source.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import xml.sax
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from bot.errors import ParseError
from bot.model import Entry, Source

log = logging.getLogger("newsalert.parse")

_JSONFEED_VERSION_PREFIXES = ("https://jsonfeed.org/", "http://jsonfeed.org/")

# feedparser's own class for "bozo" conditions that do not affect the parse: a missing or
# non-XML Content-Type, or a declared encoding that was wrong. Every feed parsed without
# response headers gets one, so treating them as damage would warn on every poll.
_HARMLESS_BOZO = feedparser.ThingsNobodyCaresAboutButMe


class _SkipEntry(Exception):
    """Raised by the per-entry converters; the message is the reason that gets logged."""


def parse(body: bytes, source: Source, headers: Mapping[str, str] | None = None) -> list[Entry]:
    """Turn a fetched body into entries, in the order the source lists them.

    ``headers`` are the HTTP response headers; for feeds they carry the charset and the
    base URL for relative links. Raises ``ParseError`` when the body is not a feed.
    """
    if not body.strip():
        raise ParseError(source.url, "empty body")
    if source.type == "feed":
        document = _json_feed_document(body)
        if document is not None:
            return _jsonfeed_entries(document, source)
        return _feed_entries(body, source, headers or {})
    if source.type == "jsonfeed":
        return _jsonfeed_entries(_load_json(body, source), source)
    if source.type == "wordpress":
        return _wordpress_entries(_load_json(body, source), source)
    raise ParseError(source.url, f"unknown source type {source.type!r}")


# --- RSS and Atom -------------------------------------------------------------------


def _feed_entries(body: bytes, source: Source, headers: Mapping[str, str]) -> list[Entry]:
    # feedparser looks headers up in lower case.
    response_headers = {key.lower(): value for key, value in headers.items()}
    # Relative links in the feed are relative to the feed's own URL unless the server said otherwise.
    response_headers.setdefault("content-location", source.url)
    try:
        # A BytesIO, never the bytes themselves: feedparser treats a bare str/bytes argument
        # as a URL or a file name first, so a body could make it fetch or open something.
        result = feedparser.parse(io.BytesIO(body), response_headers=response_headers)
    except Exception as exc:  # feedparser itself raises ValueError, UnicodeError... on hostile input
        raise ParseError(source.url, f"unreadable feed: {type(exc).__name__}: {exc}") from exc

    problem = result.get("bozo_exception") if result.get("bozo") else None
    damaged = problem is not None and not isinstance(problem, _HARMLESS_BOZO)
    raw_entries = result.get("entries") or []

    entries = _convert_all(raw_entries, source, _entry_from_feedparser)
    if damaged and not entries:
        # Checked after conversion: from a broken document feedparser's fallback parser can
        # salvage "entries" with nothing in them, and those do not make it a feed.
        raise ParseError(source.url, _not_a_feed_reason(body, headers, problem))
    if not raw_entries and not result.get("version"):
        raise ParseError(source.url, _not_a_feed_reason(body, headers, None))

    if damaged:
        log.warning(
            "feed malformed, entries kept source=%r url=%s entries=%d reason=%s",
            source.name,
            source.url,
            len(entries),
            _describe(problem),
        )
    elif problem is not None:
        log.debug("feed bozo ignored source=%r url=%s reason=%s", source.name, source.url, _describe(problem))
    return entries  # may be empty: a well-formed feed with nothing (usable) in it yet


def _entry_from_feedparser(raw: Any) -> Entry:
    if not isinstance(raw, Mapping):
        raise _SkipEntry(f"not an entry object: {type(raw).__name__}")
    outlet = outlet_url = ""
    origin = raw.get("source")
    if isinstance(origin, Mapping):
        # RSS <source url="...">Name</source> gives title and href; an Atom <source> gives a link.
        outlet = _str(origin.get("title"))
        outlet_url = _str(origin.get("href")) or _str(origin.get("link"))
    return _make_entry(
        guid=_str(raw.get("id")),
        link=_str(raw.get("link")),
        title=_str(raw.get("title")),
        summary=_str(raw.get("summary")),
        content=_fullest_content(raw.get("content")),
        published=_from_struct(raw.get("published_parsed")) or _from_struct(_updated_parsed(raw)),
        outlet=outlet,
        outlet_url=outlet_url,
    )


def _updated_parsed(raw: Mapping[str, Any]) -> Any:
    # Test with ``in`` first: FeedParserDict.get("updated_parsed") falls back to the published
    # date, with a DeprecationWarning, when the entry has no updated date of its own.
    return raw.get("updated_parsed") if "updated_parsed" in raw else None


def _fullest_content(contents: Any) -> str:
    # feedparser lists every body it finds (Atom <content>, content:encoded, xhtml:body);
    # when there are several, the longest is the full article rather than a teaser.
    if not isinstance(contents, list):
        return ""
    values = [_str(c.get("value")) for c in contents if isinstance(c, Mapping)]
    return max(values, key=len, default="")


def _from_struct(value: Any) -> datetime | None:
    # feedparser has already converted to UTC, but can hand back fields a datetime refuses.
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def _not_a_feed_reason(body: bytes, headers: Mapping[str, str], problem: BaseException | None) -> str:
    # The most useful thing to tell a user is what the URL serves instead of a feed:
    # a login or bot-check page is far more common than a subtly broken feed.
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "").lower()
    if head.startswith((b"<!doctype html", b"<html")) or "text/html" in content_type:
        return "not a feed: got HTML"
    if head.startswith((b"{", b"[")):
        return "not a feed: got JSON"
    if problem is not None:
        return f"not a feed: {_describe(problem)}"
    return "not a feed: no RSS or Atom root element"


def _describe(problem: BaseException) -> str:
    if isinstance(problem, xml.sax.SAXParseException):
        return f"{problem.getMessage()} at line {problem.getLineNumber()}"
    return str(problem) or type(problem).__name__


# --- JSON Feed ------------------------------------------------------------------------


def _json_feed_document(body: bytes) -> dict[str, Any] | None:
    """The decoded document when ``body`` is unmistakably a JSON Feed, else None."""
    if not body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return None  # skip decoding XML as JSON: the usual case for a "feed" source
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    version = document.get("version")
    if isinstance(version, str) and version.startswith(_JSONFEED_VERSION_PREFIXES):
        return document
    return None


def _jsonfeed_entries(document: Any, source: Source) -> list[Entry]:
    if not isinstance(document, dict):
        raise ParseError(source.url, f"not a JSON Feed: top level is {_json_type(document)}, not an object")
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError(source.url, "not a JSON Feed: no items list")
    return _convert_all(items, source, _entry_from_jsonfeed)


def _entry_from_jsonfeed(item: Any) -> Entry:
    if not isinstance(item, dict):
        raise _SkipEntry(f"item is {_json_type(item)}, not an object")
    published = _from_iso(item.get("date_published"), naive_is_utc=True)
    if published is None:
        published = _from_iso(item.get("date_modified"), naive_is_utc=True)
    return _make_entry(
        guid=_str(item.get("id")),
        # For link-blog posts ``url`` is the post and ``external_url`` the article it is about;
        # the post is what the feed's author published, so it wins when both exist.
        link=_str(item.get("url")) or _str(item.get("external_url")),
        title=_str(item.get("title")),
        summary=_str(item.get("summary")),
        content=_str(item.get("content_html")) or _str(item.get("content_text")),
        published=published,
    )


# --- WordPress REST API ---------------------------------------------------------------


def _wordpress_entries(document: Any, source: Source) -> list[Entry]:
    if isinstance(document, dict):
        if "code" in document and "message" in document and "id" not in document:
            # WordPress answers errors (disabled API, bad route) with {"code", "message", "data"}.
            code, message = _str(document.get("code")), _str(document.get("message"))
            raise ParseError(source.url, f"WordPress error {code}: {message}")
        if "id" not in document and "link" not in document:
            raise ParseError(source.url, "not WordPress posts: object without id or link")
        posts: list[Any] = [document]  # a single post, from /posts/<id>
    elif isinstance(document, list):
        posts = document
    else:
        raise ParseError(source.url, f"not WordPress posts: top level is {_json_type(document)}")
    return _convert_all(posts, source, _entry_from_wordpress)


def _entry_from_wordpress(post: Any) -> Entry:
    if not isinstance(post, dict):
        raise _SkipEntry(f"post is {_json_type(post)}, not an object")
    link = _str(post.get("link"))
    # The *_gmt fields are UTC written without an offset; ``date`` is the site's local
    # time, also without an offset, so it is only usable if some plugin added one.
    published = (
        _from_iso(post.get("date_gmt"), naive_is_utc=True)
        or _from_iso(post.get("modified_gmt"), naive_is_utc=True)
        or _from_iso(post.get("date"), naive_is_utc=False)
    )
    return _make_entry(
        guid=_rendered(post.get("guid")) or link or _str(post.get("id")),
        link=link,
        title=_rendered(post.get("title")),
        summary=_rendered(post.get("excerpt")),
        content=_rendered(post.get("content")),
        published=published,
    )


def _rendered(value: Any) -> str:
    # Normally {"rendered": "..."}; some plugins and ``_fields`` filters flatten it to a string.
    if isinstance(value, dict):
        return _str(value.get("rendered"))
    return _str(value)


# --- shared helpers -------------------------------------------------------------------


def _convert_all(raw_entries: Iterable[Any], source: Source, convert: Callable[[Any], Entry]) -> list[Entry]:
    entries = []
    for position, raw in enumerate(raw_entries):
        try:
            entries.append(convert(raw))
        except _SkipEntry as skip:
            log.warning(
                "entry skipped source=%r url=%s position=%d reason=%s",
                source.name,
                source.url,
                position,
                skip,
            )
    return entries


def _make_entry(
    *,
    guid: str,
    link: str,
    title: str,
    summary: str,
    content: str,
    published: datetime | None,
    outlet: str = "",
    outlet_url: str = "",
) -> Entry:
    if not title and not link:
        raise _SkipEntry("no title and no link")
    if not guid:
        guid = link or _fallback_guid(title, published)
    return Entry(
        guid=guid,
        link=link,
        title=title,
        summary=summary,
        content=content,
        published=published,
        outlet=outlet,
        outlet_url=outlet_url,
    )


def _fallback_guid(title: str, published: datetime | None) -> str:
    # Must be the same on every poll, or the item would be announced again each time.
    stamp = published.isoformat() if published else ""
    return "sha1:" + hashlib.sha1(f"{title}\n{stamp}".encode()).hexdigest()


def _from_iso(value: Any, *, naive_is_utc: bool) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            if not naive_is_utc:
                return None  # local time of an unknown zone: a wrong guess is worse than none
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _str(value: Any) -> str:
    """A JSON/feed field as text; numbers (JSON Feed 1.0 and WordPress ids) become text too."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        return ""
    if not value.isascii():
        # JSON can carry lone surrogates ("\ud800"); they would fail later at SQLite or Slack.
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.strip()


def _load_json(body: bytes, source: Source) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        if body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
            raise ParseError(source.url, "not JSON: got HTML or XML") from exc
        raise ParseError(source.url, f"invalid JSON: {exc.msg} at line {exc.lineno}") from exc
    except UnicodeDecodeError as exc:
        raise ParseError(source.url, f"invalid JSON: not {exc.encoding} text") from exc
    except (ValueError, RecursionError) as exc:  # absurd nesting, or a number with thousands of digits
        raise ParseError(source.url, f"invalid JSON: {exc}") from exc


def _json_type(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), type(value).__name__)
