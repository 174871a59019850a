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

Feeds are untrusted input, so before feedparser sees a body every ``<!DOCTYPE …>`` (with its
internal subset) and every ``<!ENTITY …>`` is removed: nothing is ever declared, so nothing can
be expanded (billion laughs, one big entity repeated, external entities such as
``file:///etc/passwd``); a reference to an undeclared entity stays as text. A parse also keeps
at most ``MAX_ENTRIES`` entries, each field capped, and the first of entries sharing a guid.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
import xml.sax
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser
from feedparser.encodings import convert_to_utf8

from bot.errors import ParseError
from bot.ingest import fastparse
from bot.model import Entry, Source

log = logging.getLogger("newsalert.parse")

_JSONFEED_VERSION_PREFIXES = ("https://jsonfeed.org/", "http://jsonfeed.org/")

# feedparser's own class for "bozo" conditions that do not affect the parse: a missing or
# non-XML Content-Type, or a declared encoding that was wrong. Every feed parsed without
# response headers gets one, so treating them as damage would warn on every poll.
_HARMLESS_BOZO = feedparser.ThingsNobodyCaresAboutButMe

# Caps so that no single feed can blow up memory, the database or a Slack message.
MAX_ENTRIES = 500  # per parse; feeds list newest first, so the first ones are kept
MAX_TITLE_CHARS = 1_000
MAX_BODY_CHARS = 100_000  # summary and content each, before HTML stripping
MAX_ID_CHARS = 2_048  # guid and links

_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
# What both a DOCTYPE and an ENTITY declaration start with, in any case.
_DECLARATION_START = re.compile(rb"<![DdEe]")
_DOCTYPE_OUTSIDE_SUBSET = re.compile(rb"[\"'\[>]")
_DOCTYPE_INSIDE_SUBSET = re.compile(rb"[\"'\]]|<!--")
# A stray declaration outside any DOCTYPE; the quoted parts may contain ">". Every part after
# the keyword is optional, so the pattern cannot fail and backtrack.
_ENTITY_DECLARATION = re.compile(rb"<!ENTITY(?:[^>\"']+|\"[^\"]*\"|'[^']*')*>?", re.IGNORECASE)
# A numeric character reference; feedparser crashes on some that XML forbids (&#xD800;).
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9A-Fa-f]+)|([0-9]+));")
# An ASCII "<?xml" cannot begin a UTF-16 or UTF-32 document, whatever its declaration says.
_WIDE_ENCODING_DECLARED = re.compile(
    rb"""(<\?xml[^>]*?encoding\s*=\s*["'])(?:utf-?16|utf-?32|ucs-?[24]|iso-10646-ucs-[24]|unicode)[\w-]*""",
    re.IGNORECASE,
)
# The start tag of an RSS/RDF <item> or Atom <entry>, with or without a namespace prefix.
_ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)(?=[\s/>])")


class _SkipEntry(Exception):
    """Raised by the per-entry converters; the message is the reason that gets logged."""


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
    try:
        data, response_headers, decoded = _as_utf8(body, response_headers)
        data, removed = _strip_declarations(data)
        data = _replace_bad_char_refs(data)
        data, total = _first_entries(data)
        # The fast path only sees what feedparser's strict parser would: a decoded document that
        # was not cut short (a cut one is malformed, which feedparser's lenient parser handles).
        if fast and decoded and total <= MAX_ENTRIES:
            raw = _fast_entries(data, response_headers, source)
            if raw is not None:
                if removed:
                    log.info(
                        "DOCTYPE/ENTITY declarations removed source=%r url=%s count=%d",
                        source.name,
                        source.url,
                        removed,
                    )
                return _convert_all(raw, source, _entry_from_feedparser)
        # A BytesIO, never the bytes themselves: feedparser treats a bare str/bytes argument
        # as a URL or a file name first, so a body could make it fetch or open something.
        result = feedparser.parse(
            io.BytesIO(data),
            response_headers=response_headers,
            # Both rewrite HTML we never post (alerts are text only) and cost more than the parse:
            # 10 s of a 13 s parse for one 6 MB description. normalize strips scripts and media itself.
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # feedparser itself raises ValueError, UnicodeError... on hostile input
        raise ParseError(source.url, f"unreadable feed: {type(exc).__name__}: {exc}") from exc
    if removed:
        log.info(
            "DOCTYPE/ENTITY declarations removed source=%r url=%s count=%d", source.name, source.url, removed
        )
    truncated = total > MAX_ENTRIES
    if truncated:
        log.warning(
            "too many entries, first kept source=%r url=%s kept=%d dropped=%d",
            source.name,
            source.url,
            MAX_ENTRIES,
            total - MAX_ENTRIES,
        )

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

    if damaged and not truncated:  # cutting the document made it malformed: already reported
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
        log.debug("fast path refused source=%r url=%s reason=%s", source.name, source.url, why)
    except Exception:  # a bug in the fast path costs speed, never the feed
        log.warning(
            "fast path failed, using feedparser source=%r url=%s", source.name, source.url, exc_info=True
        )
    return None


def _strip_declarations(data: bytes) -> tuple[bytes, int]:
    """``data`` without any DOCTYPE (internal subset included) or ENTITY declaration; and how many.

    Each declaration is replaced by the newlines it contained, so parse errors still report
    the line numbers of the original document.
    """
    if _DECLARATION_START.search(data) is None:  # CDATA sections and comments start with "<!" too
        return data, 0
    parts: list[bytes] = []
    removed = 0
    pos = 0
    while (match := _DOCTYPE.search(data, pos)) is not None:
        end = _doctype_end(data, match.end())
        if end is None:
            # Unterminated: the scan read to the end of the document, and doing that again for
            # each later "<!DOCTYPE" would be quadratic. Without its keyword no DOCTYPE declares
            # anything, so from here on only the keywords go.
            rest, count = _DOCTYPE.subn(b"", data[match.start() :])
            parts += (data[pos : match.start()], rest)
            removed += count
            pos = len(data)
            break
        parts += (data[pos : match.start()], b"\n" * data.count(b"\n", match.start(), end))
        removed += 1
        pos = end
    parts.append(data[pos:])
    data = b"".join(parts)

    def blank(entity: re.Match[bytes]) -> bytes:
        nonlocal removed
        removed += 1
        return b"\n" * entity.group().count(b"\n")

    return _ENTITY_DECLARATION.sub(blank, data), removed


def _replace_bad_char_refs(data: bytes) -> bytes:
    """Character references to code points XML forbids (NUL, surrogates, > U+10FFFF) become U+FFFD.

    feedparser's lenient parser turns ``&#xD800;`` into a string it then fails to encode,
    which would cost the whole feed rather than one character.
    """
    if _CHAR_REF.search(data) is None:  # re finds the "&#" prefix faster than bytes.find
        return data

    def fix(ref: re.Match[bytes]) -> bytes:
        digits = ref.group(1) or ref.group(2)
        if len(digits) <= 8:
            code = int(digits, 16) if ref.group(1) else int(digits)
            if (
                code in (0x9, 0xA, 0xD)
                or 0x20 <= code <= 0xD7FF
                or 0xE000 <= code <= 0xFFFD
                or 0x10000 <= code <= 0x10FFFF
            ):
                return ref.group()
        return b"&#xFFFD;"

    return _CHAR_REF.sub(fix, data)


def _doctype_end(data: bytes, pos: int) -> int | None:
    """Index just past the DOCTYPE whose body starts at ``pos``; None when it never ends.

    Quoted literals and comments may contain "]" and ">", so they are skipped whole.
    """
    in_subset = False
    while True:
        match = (_DOCTYPE_INSIDE_SUBSET if in_subset else _DOCTYPE_OUTSIDE_SUBSET).search(data, pos)
        if match is None:
            return None
        token = match.group()
        if token in (b'"', b"'", b"<!--"):
            close = data.find(b"-->" if token == b"<!--" else token, match.end())
            if close < 0:
                return None
            pos = close + (3 if token == b"<!--" else 1)
        elif token == b"[":
            in_subset, pos = True, match.end()
        elif token == b"]":
            in_subset, pos = False, match.end()
        else:  # ">" outside the internal subset
            return match.end()


def _first_entries(data: bytes) -> tuple[bytes, int]:
    """``data`` cut before its (MAX_ENTRIES + 1)th entry, and how many entries it had.

    feedparser parses a whole document before we can drop anything, at about a second per
    10,000 entries, so a huge feed is cut first; the cut document is then read by
    feedparser's lenient parser, which keeps the complete entries before the cut.
    """
    total = 0
    cut = None
    for total, match in enumerate(_ENTRY_START.finditer(data), start=1):
        if total == MAX_ENTRIES + 1:
            cut = match.start()
    return (data if cut is None else data[:cut]), total


# A dict is a Mapping; testing for dict first skips the slower ABC check for nearly every value.
_MAPPING = (dict, Mapping)


def _entry_from_feedparser(raw: Any) -> Entry:
    if not isinstance(raw, _MAPPING):
        raise _SkipEntry(f"not an entry object: {type(raw).__name__}")
    outlet = outlet_url = ""
    origin = raw.get("source")
    if isinstance(origin, _MAPPING):
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
    values = [_str(c.get("value")) for c in contents if isinstance(c, _MAPPING)]
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
    raw_list = list(raw_entries)
    if len(raw_list) > MAX_ENTRIES:
        log.warning(
            "too many entries, first kept source=%r url=%s kept=%d dropped=%d",
            source.name,
            source.url,
            MAX_ENTRIES,
            len(raw_list) - MAX_ENTRIES,
        )
        del raw_list[MAX_ENTRIES:]
    entries = []
    guids: set[str] = set()
    duplicates = 0
    for position, raw in enumerate(raw_list):
        try:
            entry = convert(raw)
        except _SkipEntry as skip:
            log.warning(
                "entry skipped source=%r url=%s position=%d reason=%s",
                source.name,
                source.url,
                position,
                skip,
            )
            continue
        # Same guid twice in one document: the first is what the source lists first (newest).
        if entry.guid in guids:
            duplicates += 1
            continue
        guids.add(entry.guid)
        entries.append(entry)
    if duplicates:
        log.warning(
            "duplicate guids dropped source=%r url=%s dropped=%d", source.name, source.url, duplicates
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
    title = title[:MAX_TITLE_CHARS]
    if not guid:
        guid = link or _fallback_guid(title, published)
    if len(guid) > MAX_ID_CHARS:
        # Hashed, not cut: two long ids that share a prefix must stay two items.
        guid = _hashed(guid)
    if len(link) > MAX_ID_CHARS:
        link = ""  # a cut URL leads nowhere, and nothing legitimate is this long
    if not title and not link:
        raise _SkipEntry("no title and an overlong link")
    return Entry(
        guid=guid,
        link=link,
        title=title,
        summary=summary[:MAX_BODY_CHARS],
        content=content[:MAX_BODY_CHARS],
        published=published,
        outlet=outlet[:MAX_TITLE_CHARS],
        outlet_url=outlet_url if len(outlet_url) <= MAX_ID_CHARS else "",
    )


def _hashed(text: str) -> str:
    return "sha1:" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


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
    if isinstance(value, str):  # first: nearly every value is one
        if not value.isascii():
            # JSON can carry lone surrogates ("\ud800"); they would fail later at SQLite or Slack.
            # Only encoding can find them, and a text that encodes needs no decoding back.
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = value.encode("utf-8", "replace").decode("utf-8")
        return value.strip()
    if isinstance(value, bool):
        return ""
    if isinstance(value, int | float):
        return str(value)
    return ""


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
