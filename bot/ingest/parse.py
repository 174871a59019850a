"""Parse stage: the body of one fetched source -> ``Entry`` values, nothing cleaned yet.

Three source types:

* ``feed``: RSS 0.9x / 1.0 (RDF) / 2.0 and Atom through feedparser; a body that is
  plainly a JSON Feed is accepted too, because sites swap formats behind the same URL.
  Well-formed RSS and Atom take a fast path first (bot.fastparse: lxml, several times quicker),
  which gives the entries feedparser would give or refuses, and then feedparser parses it.
* ``jsonfeed``: JSON Feed 1.0 / 1.1.
* ``wordpress``: the WordPress REST API, ``/wp-json/wp/v2/posts``.

A body that is not a feed at all raises ``ParseError``; a single bad entry is logged and
skipped so that one broken item never hides the rest of the source.

Feeds are untrusted input, so before either parser sees a body it goes through bot.ingest.guard:
every ``<!DOCTYPE …>`` and ``<!ENTITY …>`` is removed, so nothing can be expanded (billion
laughs, external entities such as ``file:///etc/passwd``; a reference to an undeclared entity
stays as text); an element with absurdly many attributes refuses the body; and the document is
cut to what a parse can read in bounded time. A parse keeps at most ``MAX_ENTRIES`` entries,
each field capped, and the first of entries sharing a guid. (What bounds the rest, whatever
the input, is the parse budget of bot.ingest.prepare.)
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import xml.sax
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import feedparser
import feedparser.api
from feedparser.encodings import convert_to_utf8
from feedparser.sanitizer import replace_doctype
from feedparser.urls import make_safe_absolute_uri
from feedparser.util import FeedParserDict

from bot.errors import ParseError
from bot.ingest import fastparse, guard
from bot.ingest.entries import MAX_ENTRIES, SkipEntry, convert_all, field_text, from_iso, make_entry
from bot.model import Entry, Source
from bot.urls import redact

log = logging.getLogger("newsalert.parse")

_JSONFEED_VERSION_PREFIXES = ("https://jsonfeed.org/", "http://jsonfeed.org/")

# feedparser's own class for "bozo" conditions that do not affect the parse: a missing or
# non-XML Content-Type, or a declared encoding that was wrong. Every feed parsed without
# response headers gets one, so treating them as damage would warn on every poll.
_HARMLESS_BOZO = feedparser.ThingsNobodyCaresAboutButMe

# An ASCII "<?xml" cannot begin a UTF-16 or UTF-32 document, whatever its declaration says.
_WIDE_ENCODING_DECLARED = re.compile(
    rb"""(<\?xml[^>]*?encoding\s*=\s*["'])(?:utf-?16|utf-?32|ucs-?[24]|iso-10646-ucs-[24]|unicode)[\w-]*""",
    re.IGNORECASE,
)


def parse(
    body: bytes, source: Source, headers: Mapping[str, str] | None = None, *, fast: bool = True
) -> list[Entry]:
    """Turn a fetched body into entries, in the order the source lists them.

    ``headers`` are the HTTP response headers; for feeds they carry the charset and the
    base URL for relative links. Raises ``ParseError`` when the body is not a feed.
    ``fast=False`` skips the fast path (tests compare the two).
    """
    if not body.strip():
        raise ParseError(source.url, "empty body")
    if source.type == "feed":
        document = _json_feed_document(body)
        if document is not None:
            return _jsonfeed_entries(document, source)
        return _feed_entries(body, source, headers or {}, fast)
    if source.type == "jsonfeed":
        return _jsonfeed_entries(_load_json(body, source), source)
    if source.type == "wordpress":
        return _wordpress_entries(_load_json(body, source), source)
    raise ParseError(source.url, f"unknown source type {source.type!r}")


# --- RSS and Atom -------------------------------------------------------------------


def _feed_entries(body: bytes, source: Source, headers: Mapping[str, str], fast: bool = True) -> list[Entry]:
    # feedparser looks headers up in lower case.
    response_headers = {key.lower(): value for key, value in headers.items()}
    # Relative links in the feed are relative to the feed's own URL unless the server said otherwise.
    response_headers.setdefault("content-location", source.url)
    url = redact(source.url)
    try:
        data, response_headers, decoded = _as_utf8(body, response_headers)
        data, removed = guard.strip_declarations(data)
        data = guard.replace_bad_char_refs(data)
        spans = guard.markup_spans(data)
        if (problem := guard.attribute_problem(data, spans)) is not None:
            raise ParseError(source.url, f"refused: {problem}")
        cut, total = guard.first_entries(data, spans, MAX_ENTRIES)
        if removed:
            log.info(
                "DOCTYPE/ENTITY declarations removed source=%r url=%s count=%d", source.name, url, removed
            )
        # The fast path only sees what feedparser's strict parser would: a decoded document that
        # was not cut short (a cut one is malformed, which feedparser's lenient parser handles).
        if fast and decoded and total <= MAX_ENTRIES:
            raw = _fast_entries(data, response_headers, source)
            if raw is not None:
                return convert_all(raw, source, _entry_from_feedparser)
        too_much = guard.markup_cut(cut, spans)
        if too_much is not None:
            cut = cut[: too_much[0]]
            log.warning(
                "feed cut for feedparser source=%r url=%s reason=%s kept_bytes=%d of %d",
                source.name,
                url,
                too_much[1],
                len(cut),
                len(data),
            )
        cut_short = len(cut) < len(data)
        result = run_feedparser(cut, response_headers, lenient_only=cut_short)
    except ParseError:
        raise
    except Exception as exc:  # feedparser itself raises ValueError, UnicodeError... on hostile input
        raise ParseError(source.url, f"unreadable feed: {type(exc).__name__}: {exc}") from exc
    if total > MAX_ENTRIES:
        log.warning(
            "too many entries, first kept source=%r url=%s kept=%d dropped=%d",
            source.name,
            url,
            MAX_ENTRIES,
            total - MAX_ENTRIES,
        )

    problem = result.get("bozo_exception") if result.get("bozo") else None
    damaged = problem is not None and not isinstance(problem, _HARMLESS_BOZO)
    raw_entries = result.get("entries") or []

    entries = convert_all(raw_entries, source, _entry_from_feedparser)
    if damaged and not entries:
        # Checked after conversion: from a broken document feedparser's fallback parser can
        # salvage "entries" with nothing in them, and those do not make it a feed.
        raise ParseError(source.url, _not_a_feed_reason(body, headers, problem))
    if not raw_entries and not result.get("version"):
        raise ParseError(source.url, _not_a_feed_reason(body, headers, None))

    if damaged and not cut_short:  # cutting the document made it malformed: already reported
        log.warning(
            "feed malformed, entries kept source=%r url=%s entries=%d reason=%s",
            source.name,
            url,
            len(entries),
            _describe(problem),
        )
    elif problem is not None:
        log.debug("feed bozo ignored source=%r url=%s reason=%s", source.name, url, _describe(problem))
    return entries  # may be empty: a well-formed feed with nothing (usable) in it yet


def run_feedparser(data: bytes, headers: Mapping[str, str], *, lenient_only: bool = False) -> Any:
    """feedparser's result for ``data``, a UTF-8 document.

    ``lenient_only``: the document is known to be malformed (it was cut short), so feedparser's
    strict parser, which would read all of it only to fail at the cut (and take as long as the
    lenient parser that then reads it again), is skipped: this is feedparser.api.parse's own
    lenient branch, as it runs after a strict parse fails.
    """
    if not lenient_only:
        # A BytesIO, never the bytes themselves: feedparser treats a bare str/bytes argument
        # as a URL or a file name first, so a body could make it fetch or open something.
        return feedparser.parse(
            io.BytesIO(data),
            response_headers=dict(headers),
            # Both rewrite HTML we never post (alerts are text only) and cost more than the parse:
            # 10 s of a 13 s parse for one 6 MB description. normalize strips scripts and media itself.
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    result = FeedParserDict(bozo=False, entries=[], feed=FeedParserDict(), headers=dict(headers))
    data = convert_to_utf8(result["headers"], data, result)
    result["version"], data, entities = replace_doctype(data)
    location = result["headers"].get("content-location", "")
    base = make_safe_absolute_uri("", location) or make_safe_absolute_uri(location) or ""
    parser = feedparser.api.LooseFeedParser(
        base, result["headers"].get("content-language"), "utf-8", entities
    )
    parser.resolve_relative_uris = parser.sanitize_html = False
    parser.feed(data.decode("utf-8", "replace"))
    result["feed"], result["entries"] = parser.feeddata, parser.entries
    result["version"] = result["version"] or parser.version
    return result


def _as_utf8(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str], bool]:
    """The body as UTF-8, decoded the way feedparser would decode it, headers saying so, and
    whether it could be decoded at all (if not, feedparser goes straight to its lenient parser).

    Declarations are stripped from the decoded text: in UTF-16 or EBCDIC a ``<!DOCTYPE`` is
    not the ASCII bytes a byte-level search looks for, yet feedparser would still obey it.
    """
    if body.startswith(b"<?xml"):
        body = _WIDE_ENCODING_DECLARED.sub(rb"\1utf-8", body[:200], count=1) + body[200:]
    scratch: dict[str, Any] = {}
    data = convert_to_utf8(headers, body, scratch)
    if not scratch.get("encoding"):
        return body, headers, False  # undecodable: feedparser falls back to UTF-8 with replacement too
    # The XML declaration now says utf-8; a charset in the Content-Type would override it.
    media_type = headers.get("content-type", "").split(";")[0].strip()
    if media_type:
        headers = {**headers, "content-type": f"{media_type}; charset=utf-8"}
    return data, headers, True


def _fast_entries(data: bytes, headers: Mapping[str, str], source: Source) -> list[dict[str, Any]] | None:
    """What feedparser's ``result["entries"]`` would hold, from the fast path; None: use feedparser."""
    try:
        return fastparse.entries(data, headers)
    except fastparse.Refused as why:
        log.debug("fast path refused source=%r url=%s reason=%s", source.name, redact(source.url), why)
    except Exception:  # a bug in the fast path costs speed, never the feed
        log.warning(
            "fast path failed, using feedparser source=%r url=%s",
            source.name,
            redact(source.url),
            exc_info=True,
        )
    return None


# A dict is a Mapping; testing for dict first skips the slower ABC check for nearly every value.
_MAPPING = (dict, Mapping)


def _entry_from_feedparser(raw: Any) -> Entry:
    if not isinstance(raw, _MAPPING):
        raise SkipEntry(f"not an entry object: {type(raw).__name__}")
    outlet = outlet_url = ""
    origin = raw.get("source")
    if isinstance(origin, _MAPPING):
        # RSS <source url="...">Name</source> gives title and href; an Atom <source> gives a link.
        outlet = field_text(origin.get("title"))
        outlet_url = field_text(origin.get("href")) or field_text(origin.get("link"))
    return make_entry(
        guid=field_text(raw.get("id")),
        link=field_text(raw.get("link")),
        title=field_text(raw.get("title")),
        summary=field_text(raw.get("summary")),
        content=_fullest_content(raw.get("content")),
        published=_from_struct(raw.get("published_parsed"))
        or _from_struct(_updated_parsed(raw))
        or _from_email_date(raw.get("published"))
        or _from_email_date(raw.get("updated") if "updated" in raw else None),
        outlet=outlet,
        outlet_url=outlet_url,
    )


def _updated_parsed(raw: Mapping[str, Any]) -> Any:
    # Test with ``in`` first: FeedParserDict.get("updated_parsed") falls back to the published
    # date, with a DeprecationWarning, when the entry has no updated date of its own.
    return raw.get("updated_parsed") if "updated_parsed" in raw else None


def _from_email_date(value: Any) -> datetime | None:
    """A date feedparser could not read but the e-mail date parser can: RFC 822 with a missing
    space ("Tue,19 Feb 2019 14:08:19 GMT"), a two-digit year, no weekday... (both parse paths
    keep the raw string, so both get this). No zone, or "-0000", is UTC, as feedparser has it."""
    if not isinstance(value, str) or not value or len(value) > 100:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _fullest_content(contents: Any) -> str:
    # feedparser lists every body it finds (Atom <content>, content:encoded, xhtml:body);
    # when there are several, the longest is the full article rather than a teaser.
    if not isinstance(contents, list):
        return ""
    values = [field_text(c.get("value")) for c in contents if isinstance(c, _MAPPING)]
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
    return convert_all(items, source, _entry_from_jsonfeed)


def _entry_from_jsonfeed(item: Any) -> Entry:
    if not isinstance(item, dict):
        raise SkipEntry(f"item is {_json_type(item)}, not an object")
    published = from_iso(item.get("date_published"), naive_is_utc=True)
    if published is None:
        published = from_iso(item.get("date_modified"), naive_is_utc=True)
    return make_entry(
        guid=field_text(item.get("id")),
        # For link-blog posts ``url`` is the post and ``external_url`` the article it is about;
        # the post is what the feed's author published, so it wins when both exist.
        link=field_text(item.get("url")) or field_text(item.get("external_url")),
        title=field_text(item.get("title")),
        summary=field_text(item.get("summary")),
        content=field_text(item.get("content_html")) or field_text(item.get("content_text")),
        published=published,
    )


# --- WordPress REST API ---------------------------------------------------------------


def _wordpress_entries(document: Any, source: Source) -> list[Entry]:
    if isinstance(document, dict):
        if "code" in document and "message" in document and "id" not in document:
            # WordPress answers errors (disabled API, bad route) with {"code", "message", "data"}.
            code, message = field_text(document.get("code")), field_text(document.get("message"))
            raise ParseError(source.url, f"WordPress error {code}: {message}")
        if "id" not in document and "link" not in document:
            raise ParseError(source.url, "not WordPress posts: object without id or link")
        posts: list[Any] = [document]  # a single post, from /posts/<id>
    elif isinstance(document, list):
        posts = document
    else:
        raise ParseError(source.url, f"not WordPress posts: top level is {_json_type(document)}")
    return convert_all(posts, source, _entry_from_wordpress)


def _entry_from_wordpress(post: Any) -> Entry:
    if not isinstance(post, dict):
        raise SkipEntry(f"post is {_json_type(post)}, not an object")
    link = field_text(post.get("link"))
    content, excerpt = post.get("content"), post.get("excerpt")
    return make_entry(
        guid=_rendered(post.get("guid")) or link or field_text(post.get("id")),
        link=link,
        title=_rendered(post.get("title")),
        # A password-protected post's text is for those who have the password: not for an
        # alert, nor for the searchable history. Its title (and an unprotected excerpt) still are.
        summary="" if _protected(excerpt) else _rendered(excerpt),
        content="" if _protected(content) else _rendered(content),
        published=_wordpress_published(post),
    )


def _wordpress_published(post: dict[str, Any]) -> datetime | None:
    """When the post was published, in UTC; None (the fetch time) when the post does not say.

    ``date_gmt`` is UTC without an offset. Without it (null, or "0000-00-00..." on posts that
    were drafts), ``date`` is the site's local time of publication, usable with an offset:
    one written in it (some plugins add one), or the site's offset read from the same post's
    ``modified`` - ``modified_gmt`` (local and UTC times of its last edit; across a change of
    daylight saving time it can be an hour off, still far closer than the fetch time).
    ``modified_gmt`` itself is never taken: a post edited today is not news published today.
    """
    published = from_iso(post.get("date_gmt"), naive_is_utc=True) or from_iso(
        post.get("date"), naive_is_utc=False
    )
    if published is not None:
        return published
    local = from_iso(post.get("date"), naive_is_utc=True)  # the local clock reading, as if UTC
    modified = from_iso(post.get("modified"), naive_is_utc=True)
    modified_gmt = from_iso(post.get("modified_gmt"), naive_is_utc=True)
    if local is None or modified is None or modified_gmt is None:
        return None
    offset = modified - modified_gmt
    if abs(offset) > timedelta(hours=14) or offset % timedelta(minutes=15):
        return None  # no real time zone: something else is wrong with these dates
    return local - offset


def _protected(field: Any) -> bool:
    return isinstance(field, dict) and field.get("protected") is True


def _rendered(value: Any) -> str:
    # Normally {"rendered": "..."}; some plugins and ``_fields`` filters flatten it to a string.
    if isinstance(value, dict):
        return field_text(value.get("rendered"))
    return field_text(value)


def _load_json(body: bytes, source: Source) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        start, messages = _after_php_messages(body)
        if messages:
            return _load_json_after_php(body, start, messages, source)
        if body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
            raise ParseError(source.url, "not JSON: got HTML or XML") from exc
        raise ParseError(source.url, f"invalid JSON: {exc.msg} at line {exc.lineno}") from exc
    except UnicodeDecodeError as exc:
        raise ParseError(source.url, f"invalid JSON: not {exc.encoding} text") from exc
    except (ValueError, RecursionError) as exc:  # absurd nesting, or a number with thousands of digits
        raise ParseError(source.url, f"invalid JSON: {exc}") from exc


# A PHP error message, as a site with display_errors on prints it before its JSON:
# "<br />\n<b>Notice</b>:  Undefined index: x in <b>/var/www/…/x.php</b> on line <b>12</b><br />\n",
# or without html_errors "PHP Notice:  Undefined index: x in /var/www/…/x.php on line 12\n".
_PHP_MESSAGE = re.compile(
    rb"\s*(?:<br\s*/?>\s*)?(?:<b>)?(?:PHP )?"
    rb"(?:Notice|Warning|Deprecated|Strict Standards|Fatal error|Parse error)(?:</b>)?:"
    rb"[^\n]{0,2000}?on line (?:<b>)?\d+(?:</b>)?(?:<br\s*/?>)?"
)
_MAX_PHP_MESSAGES = 100  # messages skipped before the JSON, at most


def _after_php_messages(body: bytes) -> tuple[int, list[bytes]]:
    """Where the body goes on after the PHP error messages it starts with, and those messages."""
    pos = len(body) - len(body.lstrip(b"\xef\xbb\xbf"))
    messages = []
    while len(messages) < _MAX_PHP_MESSAGES and (found := _PHP_MESSAGE.match(body, pos)) is not None:
        messages.append(found.group())
        pos = found.end()
    while pos < len(body) and body[pos] in b" \t\r\n":
        pos += 1
    return pos, messages


def _load_json_after_php(body: bytes, start: int, messages: list[bytes], source: Source) -> Any:
    first = " ".join(re.sub(rb"<[^>]*>", b"", messages[0]).decode("utf-8", "replace").split())[:200]
    if body[start : start + 1] not in (b"[", b"{"):
        raise ParseError(source.url, f"not JSON: the site printed a PHP error instead ({first})")
    try:
        document = json.loads(body[start:])
    except (ValueError, RecursionError) as exc:
        raise ParseError(source.url, f"invalid JSON after {len(messages)} PHP messages: {exc}") from exc
    log.warning(
        "PHP messages before the JSON skipped source=%r url=%s count=%d first=%r",
        source.name,
        redact(source.url),
        len(messages),
        first,
    )
    return document


def _json_type(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), type(value).__name__)
