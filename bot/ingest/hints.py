"""Feed-level hints: how often a feed asks to be polled (RSS ``<ttl>``, ``<sy:updatePeriod>``) and
where it is pushed from (WebSub ``rel="hub"`` and ``rel="self"``, in the feed or a ``Link:`` header).

Only the head of the document is read, up to its first item or entry, with an lxml parser
configured like the fast path (no entity expansion, no network, no DTD; libxml2 gives up on
a document whose entities would amplify it, so such a feed has no hints): the hints live at
channel level, and reading only the head keeps this to microseconds on a large feed. A body that
cannot be read gives no hints; that is never an error, the entries are parse.py's business.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

from lxml import etree

from bot.model import FeedHints

ATOM = "http://www.w3.org/2005/Atom"
SYNDICATION = "http://purl.org/rss/1.0/modules/syndication/"
HEAD_BYTES = 256 * 1024  # hints after this much of a document are not looked for
MAX_URL_CHARS = 2_048
MAX_HUBS = 4  # a feed listing more hubs than this is not taken at its word for all of them
_PERIODS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400, "yearly": 365 * 86400}
# The start tag of an RSS/RDF <item> or Atom <entry>: the hints are in the document before it.
_ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)(?=[\s/>])")
_SPACE = re.compile(r"\s")
_local = threading.local()  # lxml parsers must not be shared between threads

# One `<uri>; param; param=value` element of a Link header (RFC 8288); values may be quoted.
_LINK_VALUE = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,\"=]+(?:=\s*(?:\"(?:[^\"\\]|\\.)*\"|[^;,]*))?)*)")
_LINK_PARAM = re.compile(r";\s*([^=;,\s]+)\s*(?:=\s*(\"(?:[^\"\\]|\\.)*\"|[^;,]*))?")


def feed_hints(body: bytes, headers: Mapping[str, str], url: str) -> FeedHints:
    """The hints of one fetched (or pushed) feed. ``headers`` are lower-cased response headers;
    ``url`` is where the body came from, against which relative links are resolved.

    WebSub says a ``Link:`` header comes first: its hub and self links are used when present,
    the document's otherwise."""
    ttl, period, body_hubs, body_self = _document_hints(body, url)
    header_hubs, header_self = link_header(headers.get("link", ""), url)
    return FeedHints(
        ttl=ttl,
        update_period=period,
        hubs=(header_hubs or body_hubs)[:MAX_HUBS],
        self_url=header_self or body_self,
    )


def link_header(value: str, base: str) -> tuple[tuple[str, ...], str | None]:
    """(hub URLs, self URL) of a ``Link:`` header value; relative references resolved on ``base``."""
    hubs: list[str] = []
    self_url = None
    for match in _LINK_VALUE.finditer(value[:16_384]):
        rels: set[str] = set()
        for name, raw in _LINK_PARAM.findall(match.group(2)):
            if name.lower() == "rel":
                rels |= {r.lower() for r in _unquote(raw).split()}
        target = _absolute(match.group(1).strip(), base)
        if target is None:
            continue
        if "hub" in rels and target not in hubs:
            hubs.append(target)
        if "self" in rels and self_url is None:
            self_url = target
    return tuple(hubs), self_url


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def _absolute(ref: str, base: str) -> str | None:
    """``ref`` resolved on ``base``, if it is a plausible http(s) URL; None otherwise."""
    if not ref or len(ref) > MAX_URL_CHARS or _SPACE.search(ref):
        return None
    try:
        target = urljoin(base, ref)
        parts = urlsplit(target)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return target


def _document_hints(body: bytes, url: str) -> tuple[int | None, int | None, tuple[str, ...], str | None]:
    ttl = frequency = period = None
    hubs: list[str] = []
    self_url = None
    if body.lstrip()[:1] != b"<":
        return None, None, (), None  # JSON Feed, WordPress: no channel-level hints read here
    first = _ENTRY_START.search(body, 0, HEAD_BYTES)
    head = body[: first.start() if first else HEAD_BYTES]
    try:
        root = etree.fromstring(head, _parser())  # recover: the cut head's open tags are closed
    except (etree.XMLSyntaxError, ValueError):
        root = None
    for el in root.iter() if root is not None else ():
        if not isinstance(el.tag, str):
            continue
        namespace, _, name = el.tag.rpartition("}")
        namespace = namespace.lstrip("{")
        if namespace == ATOM and name == "link":
            rels = set((el.get("rel") or "").lower().split())
            target = _absolute((el.get("href") or "").strip(), url)
            if target and "hub" in rels and target not in hubs:
                hubs.append(target)
            if target and "self" in rels and self_url is None:
                self_url = target
        elif name == "ttl" and namespace == "" and ttl is None:
            minutes = _whole_number(el.text)
            ttl = minutes * 60 if minutes else None
        elif namespace == SYNDICATION and name == "updatePeriod":
            period = _PERIODS.get((el.text or "").strip().lower())
        elif namespace == SYNDICATION and name == "updateFrequency":
            frequency = _whole_number(el.text)
    update_period = None
    if period is not None or frequency:
        # The syndication module's defaults: daily, once.
        update_period = max(1, (period or 86400) // (frequency or 1))
    return ttl, update_period, tuple(hubs), self_url


def _parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
            recover=True,  # a head cut before its first item; an undeclared &nbsp; before the <ttl>
        )
    return parser


def _whole_number(text: str | None) -> int | None:
    text = (text or "").strip()
    if not text.isdigit() or not text.isascii() or len(text) > 9:
        return None
    value = int(text)
    return value if value > 0 else None
