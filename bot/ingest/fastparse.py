"""The fast path for RSS and Atom: lxml builds the tree, and a small walker reproduces what
feedparser would have returned, for the fields newsalert reads.

feedparser spends most of a parse in Python SAX callbacks (about 20-50 feeds/s); lxml builds the
tree in C and the walker below touches each element once, several times faster. feedparser stays
the reference and the fallback: ``entries()`` either returns what ``feedparser.parse()`` would
have put in ``result["entries"]`` for the keys bot.ingest.parse reads (id, link, title, summary,
content, published_parsed, updated_parsed, source), or raises ``Refused`` and the caller runs
feedparser. It refuses rather than guess whenever feedparser's behaviour is odd or depends on
something the walker does not model:

* a document expat rejects (feedparser would switch to its lenient parser), or that lxml rejects;
* a document with no entries (feedparser decides whether that is an empty feed or not a feed);
* ``xml:base`` (or any ``base`` attribute), XHTML or base64 content, markup or comments inside a
  text field, an element inside an entry that feedparser has a handler for and that is not
  modelled here (images, georss, ...), entries inside entries, and namespace prefixes that are
  re-bound, because feedparser resolves those against its parse-time state.

The walker follows feedparser 6's handlers (feedparser/mixin.py, namespaces/_base.py) closely,
including their quirks, which are the point: a second <description> that becomes content, a guid
that fills in a missing link, "title depth", the Latin-1/UTF-8 and cp1252 repairs of every text
value, dates through feedparser's own ``_parse_date``. tests/test_fastparse.py runs both parsers
over a corpus of more than a thousand feeds and requires the same normalized items.

Untrusted input: the body has already lost every DOCTYPE and ENTITY declaration (bot.ingest.guard), and
the lxml parser is built to resolve no entity, load no DTD, reach no network and refuse huge
trees, so nothing here can expand or fetch anything.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
import xml.parsers.expat
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import feedparser.api
from feedparser.datetimes import _parse_date
from feedparser.datetimes.rfc822 import timezone_names
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin, make_safe_absolute_uri
from feedparser.util import FeedParserDict
from lxml import etree

from bot.ingest.feednames import Namespaces, Refused

__all__ = ["Refused", "entries"]


# Every element name feedparser has a handler for ("dc_date", "media_title", ...).
_HANDLED_BY_FEEDPARSER = frozenset(
    name.split("_", 2)[2]
    for name in dir(feedparser.api.StrictFeedParser)
    if name.startswith(("_start_", "_end_"))
)

_TITLE = frozenset({"title", "dc_title"})
_DESCRIPTION = frozenset({"description", "dc_description", "media_description"})
_SUMMARY = frozenset({"summary", "itunes_summary"})
_PUBLISHED = frozenset({"published", "issued", "pubdate", "dcterms_issued"})
_UPDATED = frozenset({"updated", "modified", "lastbuilddate", "dc_date", "dcterms_modified"})
_GUID = frozenset({"guid", "id"})
_CONTENT_ENCODED = frozenset({"content_encoded", "fullitem"})
_ENTRY = frozenset({"item", "entry"})
# Elements feedparser handles that write only keys newsalert never reads (author, tags, media
# attachments, rights...). Their children are still walked: a media:description inside a
# media:content is a description to feedparser.
_INERT = frozenset(
    """author dc_author dc_creator itunes_author managingeditor contributor dc_contributor name
    itunes_name email itunes_email uri url homepage category dc_subject media_category keywords
    itunes_category itunes_keywords media_keywords tags enclosure media_content media_thumbnail
    media_group media_credit media_rating media_restriction media_license media_player rights
    copyright dc_rights created dcterms_created expirationdate dcterms_valid language dc_language
    webmaster dc_publisher itunes_owner subtitle tagline itunes_subtitle itunes_image itunes_link
    itunes_explicit itunes_block info feedburner_browserfriendly width height generator cloud
    newlocation cc_license creativecommons_license""".split()
)
# Keys of an entry that an unhandled element must not write to (feedparser stores an unknown
# element's text, or its attributes, under the element's name, after FeedParserDict's key map).
_READ_KEYS = frozenset(
    {"id", "link", "links", "title", "summary", "content", "published_parsed", "updated_parsed", "source"}
)
# Outside entries these would leak state into the next entry (hasContent, insource) or put a
# summary where feedparser then turns descriptions into content.
_FEED_LEVEL_REFUSED = frozenset(
    {"content", "content_encoded", "fullitem", "body", "xhtml_body", "source", "summary", "itunes_summary"}
)

# Both are searched for in the lower-cased document: a case-insensitive pattern with no literal
# prefix makes re try every position, several times slower than lower() and a literal search.
_DECLARATION = re.compile(rb"<!(?:doctype|entity)")
# Any attribute named "base" (xml:base or a bare one) moves feedparser's base URI.
_BASE_ATTRIBUTE = re.compile(rb"base\s*=")
_LINK_REF = re.compile("&([A-Za-z0-9_]+);")
_C1_UTF8 = re.compile(rb"\xc2[\x80-\x9f]")  # U+0080 to U+009F
_PLAIN_URL = re.compile(
    r"https?://[A-Za-z0-9.\-_~%!$&'()*+,=:@]+(?:/[^?#;\x00-\x20\x7f]*)?(?:\?[^#\x00-\x20\x7f]+)?\Z"
)
# No "//" after the scheme, which _urljoin would rewrite, and so no network location to check.
_OPAQUE_URI = re.compile(r"(?:tag|urn):[^/]")
_HTML_TYPES = frozenset({"application/xhtml+xml", "text/html"})
# The two date layouts nearly every feed uses, in a strict form that datetime.fromisoformat reads
# the way feedparser's own handlers do (see _date). Hours stop at 23: a newer Python may read
# "24:00" as the next midnight, where feedparser's handlers reject it.
_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
_W3DTF_DATE = re.compile(rf"\d{{4}}-\d\d-\d\dT{_TIME}(?:\.\d{{1,6}})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)\Z")
_MONTHS = {
    name: f"{number:02d}"
    for number, name in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)
}
_RFC822_DATE = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d?) ({'|'.join(_MONTHS)}) "
    rf"(\d{{4}}) ({_TIME}) ([+-](?:[01]\d|2[0-3])[0-5]\d|[A-Z]{{1,3}})\Z"
)
_ZONES = {name.upper(): f"{hours:+03d}:00" for name, hours in timezone_names.items()}
_COPY_TO_SUMMARY = frozenset({"text/plain", "application/xhtml+xml", "text/html"})

_local = threading.local()  # lxml parsers must not be shared between threads


def _parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            huge_tree=False,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            remove_blank_text=False,
            collect_ids=False,
        )
    return parser


def entries(data: bytes, headers: Mapping[str, str]) -> list[dict[str, Any]]:
    """The entries feedparser would return for ``data`` (UTF-8, declarations stripped), or Refused.

    ``headers`` are the response headers as bot.ingest.parse hands them to feedparser (lower-case keys,
    ``content-location`` set): they give the base URI for relative links.
    """
    lowered = data.lower()
    if _DECLARATION.search(lowered):  # bot.ingest.guard removed them all; anything else is not for this path
        raise Refused("a DOCTYPE or ENTITY declaration")
    if _BASE_ATTRIBUTE.search(lowered):
        raise Refused("a base attribute (xml:base) moves the base URI")
    declarations = _expat_declarations(data)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        raise Refused(f"lxml: {e}") from None
    walker = _Walker(_base_uri(headers.get("content-location", "")), declarations, root.nsmap)
    walker.feed(root)
    if not walker.entries:
        raise Refused("no entries")
    return walker.entries


def _expat_declarations(data: bytes) -> list[tuple[str | None, str]]:
    """The namespace declarations, in document order; Refused unless expat accepts the document.

    feedparser parses with expat first and only falls back to its lenient parser when expat
    fails; this runs the same expat (no handlers but this one, so it is quick) to be sure the
    fast path is only taken where feedparser's strict parser would have been.
    """
    declared: list[tuple[str | None, str]] = []
    parser = xml.parsers.expat.ParserCreate(None, " ")
    parser.StartNamespaceDeclHandler = lambda prefix, uri: declared.append((prefix, uri))
    # Belt and braces: no DTD ever reaches here, but if one did, nothing is read or expanded.
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as e:
        raise Refused(f"expat: {e}") from None
    return declared


def _base_uri(content_location: str) -> str:
    # As feedparser.api.parse computes it (no href: the body is not fetched by feedparser), then
    # as every start tag re-derives it from itself; it settles after one or two rounds.
    base = make_safe_absolute_uri("", content_location) or make_safe_absolute_uri(content_location) or ""
    for _ in range(4):
        if not base:
            return base
        settled = make_safe_absolute_uri(base, base) or base
        if settled == base:
            return base
        base = settled
    raise Refused("base URI does not settle")


def _content_type(attrs: Mapping[str, str], default: str) -> str:
    """feedparser's content type for a text element, Refused for XHTML and base64 content."""
    return _kind(attrs.get("type", default), attrs.get("mode", ""))


@functools.lru_cache(maxsize=256)  # a feed repeats the same few type attributes on every entry
def _kind(declared: str, mode: str) -> str:
    kind = _FeedParserMixin.map_content_type(declared)
    base64 = mode == "base64" or not (
        kind.startswith("text/") or kind.endswith("+xml") or kind.endswith("/xml")
    )
    if base64 or kind == "application/xhtml+xml":
        raise Refused(f"content of type {kind!r}")
    return kind


def _repaired(text: str) -> str:
    # feedparser's last two steps for every value (mixin.pop): undo UTF-8 read as Latin-1, then map
    # the C1 controls to what Windows-1252 meant by them. Both leave ASCII alone, and the second
    # anything without a C1 control (str.translate with a dict is slow on long texts).
    if text.isascii():
        return text
    try:
        latin1 = text.encode("iso-8859-1")
    except UnicodeEncodeError:  # beyond Latin-1, so not UTF-8 read as Latin-1
        pass
    else:
        with contextlib.suppress(UnicodeDecodeError):
            text = latin1.decode("utf-8")
    # Encoding and searching the bytes for a C1 control's UTF-8 form is several times quicker
    # than a character-class search through the str. (surrogatepass: lone surrogates cannot match.)
    return text.translate(_cp1252) if _C1_UTF8.search(text.encode("utf-8", "surrogatepass")) else text


def _date(value: str) -> time.struct_time | None:
    """``_parse_date(value)``, without trying feedparser's date handlers in turn for the usual layouts.

    feedparser tries its W3DTF handler first, then RFC 822. A strict W3DTF date is what the W3DTF
    handler reads. The W3DTF handler gives up on anything that starts with a letter (the part
    before the first "-" cannot be a four-digit year), so a strict RFC 822 date is what the RFC 822
    handler reads. Where those would fail (day 31 of a 30-day month, say), feedparser's later
    handlers get their turn, so that goes to ``_parse_date`` too.
    """
    if _W3DTF_DATE.match(value):
        iso = value
    elif match := _RFC822_DATE.match(value):
        day, month, year, clock, zone = match.groups()
        if zone[0] not in "+-":
            zone = _ZONES.get(zone, "Z")  # feedparser: a zone name it does not know is UTC
        iso = f"{year}-{_MONTHS[month]}-{day:0>2}T{clock}{zone}"
    else:
        return _parse_date(value)
    try:
        return datetime.fromisoformat(iso).utctimetuple()
    except (ValueError, OverflowError):
        return _parse_date(value)


def _resolve(base: str, uri: str) -> str:
    """feedparser's resolve_uri: ``_urljoin(base, uri)``, skipped where it is known to change nothing.

    An absolute http(s) URL in plain ASCII without empty parts, parameters or a fragment comes
    back from urllib's urljoin exactly as it went in (another scheme: as is; the same scheme:
    split and joined again, which only changes what this pattern excludes). Atom ids are often
    tag: or urn: URIs, which urljoin returns untouched.
    """
    if uri.isascii() and _PLAIN_URL.match(uri):
        return uri
    if _OPAQUE_URI.match(uri) and _keeps_opaque_uris(base):
        return uri
    return _urljoin(base, uri)


@functools.lru_cache(maxsize=64)
def _keeps_opaque_uris(base: str) -> bool:
    # urljoin returns a URI of a scheme it never resolves (tag:, urn:) as it is; unless the base
    # itself is one urlparse rejects, and then feedparser's _urljoin returns "".
    return _urljoin(base, "tag:x") == "tag:x"


class _Entry:
    """feedparser's per-entry state while one <item>/<entry> is walked."""

    __slots__ = ("data", "depth_of", "guidislink", "has_content", "title_depth")

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.depth_of: dict[str, int] = {}  # feedparser's property_depth_map
        self.title_depth = -1
        self.guidislink = False
        self.has_content = False

    def store(self, key: str, value: str, depth: int) -> None:
        # A value from a more deeply nested element never replaces one from a shallower element.
        old = self.depth_of.get(key)
        if old is None or depth <= old:
            self.depth_of[key] = depth
            self.data[key] = value


# What the walker does with one element inside an entry: (element, its depth, the entry).
_Handler = Callable[[etree._Element, int, _Entry], None]


_UNSEEN: Any = object()  # a tag the walker has no handler for yet


def _ignore(el: etree._Element, depth: int, entry: _Entry) -> None:
    """Comments, processing instructions, entity references: feedparser ignores them."""


def _refuse(reason: str) -> _Handler:
    def refuse(el: etree._Element, depth: int, entry: _Entry) -> None:
        raise Refused(reason)

    return refuse


class _Walker(Namespaces):
    """One document's walk: feedparser's handlers for the elements newsalert reads."""

    def __init__(
        self, base: str, declarations: list[tuple[str | None, str]], on_root: Mapping[str | None, str]
    ):
        self.base = base
        self.entries: list[dict[str, Any]] = []
        self.dates: dict[str, time.struct_time | None] = {}
        # Element tag (or lxml's tag for a comment...) -> handler, decided once per tag and document:
        # which handler applies depends only on the tag and on this document's namespace prefixes.
        # None: nothing to read in the element itself, only perhaps in its children.
        self.handlers: dict[object, _Handler | None] = dict.fromkeys(
            (etree.Comment, etree.ProcessingInstruction, etree.Entity), _ignore
        )
        super().__init__(declarations, on_root)

    # -- text -------------------------------------------------------------------------------

    def text(self, el: etree._Element, resolve: bool = False) -> str:
        """An element's value as feedparser's pop() returns it."""
        if len(el):
            raise Refused(f"markup or a comment inside <{el.tag}>")
        value = el.text
        if not value:
            return ""
        value = value.strip()
        if resolve and value:
            value = _resolve(self.base, value)
        return value if value.isascii() else _repaired(value)

    def date(self, value: str) -> time.struct_time | None:
        # An Atom entry is usually <updated> when it was <published>: each string is parsed once.
        parsed = self.dates.get(value, _UNSEEN)
        if parsed is _UNSEEN:
            parsed = self.dates[value] = _date(value)
        return parsed

    # -- the document -------------------------------------------------------------------------

    def feed(self, root: etree._Element) -> None:
        if self.key(root.tag) in _ENTRY:
            raise Refused("an entry document")
        self._outside(root, 1)

    def _outside(self, parent: etree._Element, depth: int) -> None:
        for el in parent:
            tag = el.tag
            if type(tag) is not str:  # a comment or processing instruction: feedparser ignores them
                continue
            key = self.key(tag)
            if key in _ENTRY:
                self.entries.append(self._entry(el, depth + 1))
            elif key in _FEED_LEVEL_REFUSED:
                raise Refused(f"<{key}> outside an entry")
            elif len(el):
                self._outside(el, depth + 1)

    def _entry(self, item: etree._Element, depth: int) -> dict[str, Any]:
        attrs = self.attrs(item)
        if "href" in attrs or "lastmod" in attrs:
            raise Refused("a CDF-style link or date on the entry element")
        entry = _Entry()
        about = attrs.get("rdf:about")
        if about:
            entry.data["id"] = about
        self._inside(item, depth, entry)
        return entry.data

    def _inside(self, parent: etree._Element, parent_depth: int, entry: _Entry) -> None:
        depth = parent_depth + 1
        handlers = self.handlers
        for el in parent:
            tag = el.tag
            handler = handlers.get(tag, _UNSEEN)
            if handler is _UNSEEN:
                handler = handlers[tag] = self._handler(tag)
            if handler is not None:
                handler(el, depth, entry)
            elif len(el):  # most such elements are leaves: no call for them
                self._inside(el, depth, entry)

    def _handler(self, tag: object) -> _Handler | None:
        """What feedparser does with this element inside an entry, as far as newsalert cares."""
        if not isinstance(tag, str):
            return _ignore
        key = self.key(tag)
        if key in _TITLE:
            return self._title
        if key == "link":
            return self._link
        if key in _GUID:
            return self._guid
        if key in _PUBLISHED:
            return self._published
        if key in _UPDATED:
            return self._updated
        if key in _DESCRIPTION:
            return self._description
        if key in _SUMMARY:
            return self._summary
        if key == "abstract":
            return self._abstract
        if key == "content":
            return self._content
        if key in _CONTENT_ENCODED:
            return self._content_encoded
        if key == "media_title":
            return self._media_title
        if key == "source":
            return self._source
        if key in _INERT:
            return None
        if key in _HANDLED_BY_FEEDPARSER:
            return _refuse(f"<{key}> inside an entry")
        stored = FeedParserDict.keymap.get(key, key)
        if isinstance(stored, list):
            stored = stored[0]
        if stored in _READ_KEYS:
            return _refuse(f"unknown element <{key}> would overwrite {stored!r}")
        return None

    # -- the handlers, after feedparser's _start_*/_end_* -------------------------------------

    def _title(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        self._any_title(el, depth, entry, keeps_depth=False)

    def _media_title(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        self._any_title(el, depth, entry, keeps_depth=True)

    def _any_title(self, el: etree._Element, depth: int, entry: _Entry, *, keeps_depth: bool) -> None:
        if attrs := self.attrs(el):
            _content_type(attrs, "text/plain")
        value = self.text(el)
        # Once an entry has a title, titles as deep or deeper (a media:title in a media:group,
        # say) are ignored; a shallower one still replaces it.
        if not -1 < entry.title_depth <= depth:
            entry.store("title", value, depth)
        if value and not keeps_depth:  # media:title restores the depth it found
            entry.title_depth = depth

    def _link(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        attrs = self.attrs(el)
        if attrs:
            rel = attrs.setdefault("rel", "alternate")
            kind = attrs.setdefault("type", "application/atom+xml" if rel == "self" else "text/html")
            href = attrs.get("url", attrs.get("uri", attrs.get("href")))
            if href:
                attrs["href"] = href
            if "href" in attrs:  # Atom style: the URL is the attribute, the text is ignored
                if len(el):
                    raise Refused("markup inside <link>")
                href = _resolve(self.base, attrs["href"])
                if rel == "alternate" and _FeedParserMixin.map_content_type(kind) in _HTML_TYPES:
                    entry.data["link"] = href
                return
        value = self.text(el, resolve=True)
        if "&" in value:
            # feedparser undoes what it takes for unhandled entity references in query strings.
            value = value.replace("&amp;", "&")
            if ";" in value:
                value = _LINK_REF.sub(r"&\g<1>", value)
        entry.data["link"] = value

    def _guid(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        entry.guidislink = self.attrs(el).get("ispermalink", "true") == "true"
        value = self.text(el, resolve=entry.guidislink)
        entry.store("id", value, depth)
        if entry.guidislink:  # a permalink guid is the link when the entry has none (yet)
            entry.data.setdefault("link", value)

    def _published(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        value = self.text(el)
        entry.store("published", value, depth)
        entry.data["published_parsed"] = self.date(value)

    def _updated(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        value = self.text(el)
        entry.store("updated", value, depth)
        entry.data["updated_parsed"] = self.date(value)

    def _description(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        self._any_description(el, depth, entry, "text/html")

    def _summary(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        self._any_description(el, depth, entry, "text/plain")

    def _any_description(self, el: etree._Element, depth: int, entry: _Entry, default: str) -> None:
        # feedparser: a second summary/description, when the entry has no content yet, is content.
        if "summary" in entry.data and not entry.has_content:
            self._any_content(el, entry, "text/plain")
            return
        if attrs := self.attrs(el):
            _content_type(attrs, default)
        entry.store("summary", self.text(el), depth)

    def _abstract(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        # A description that never turns into content.
        _content_type(self.attrs(el), "text/plain")
        entry.store("summary", self.text(el), depth)

    def _content(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        self._any_content(el, entry, "text/plain")

    def _content_encoded(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        self._any_content(el, entry, "text/html")

    def _any_content(self, el: etree._Element, entry: _Entry, default: str) -> None:
        entry.has_content = True
        attrs = self.attrs(el)
        kind = _content_type(attrs, default) if attrs else default  # the defaults are canonical
        value = self.text(el)
        entry.data.setdefault("content", []).append({"value": value})
        if kind in _COPY_TO_SUMMARY:
            entry.data.setdefault("summary", value)

    def _source(self, el: etree._Element, depth: int, entry: _Entry) -> None:
        attrs = self.attrs(el)
        entry.title_depth = -1
        value = self.text(el)  # Refused when it has children (an Atom <source> with its own feed data)
        entry.store("source", value, depth)
        source: dict[str, str] = {}
        if "url" in attrs:
            source["href"] = attrs["url"]
        if value:
            source["title"] = value
        entry.data["source"] = source
