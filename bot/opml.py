"""OPML: teams arrive with their feed lists from other readers, and leave with ours.

`newsalert sources import FILE` adds every feed of an OPML file as a source in the database
(origin 'opml', like sources added from Slack); `newsalert sources export` writes the active
sources as OPML 2.0. The file is untrusted input: entity declarations are refused (no billion
laughs, no external entities), its size is capped, and each URL goes through the same checks as
the config file's (http/https only; no loopback or private address unless allowed).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlsplit

from bot.errors import OpmlError
from bot.ingest.normalize import url_key
from bot.model import Source
from bot.store import Store
from bot.urls import source_url_problem

MAX_OPML_BYTES = 5 * 1024 * 1024
TYPE_ATTRIBUTE = "newsalertType"  # OPML allows extra outline attributes; readers ignore this one
_DECLARATION = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_NAME_LIMIT = 200


@dataclass(frozen=True)
class Feed:
    """One outline with a feed URL, as the file gives it."""

    name: str
    url: str
    type: str = "feed"


@dataclass
class ImportReport:
    added: list[Source] = field(default_factory=list)
    restored: list[Source] = field(default_factory=list)  # removed earlier, back now
    present: list[Feed] = field(default_factory=list)  # URL already a source: skipped
    refused: list[tuple[Feed, str]] = field(default_factory=list)  # (feed, why)

    def summary(self) -> str:
        return (
            f"{len(self.added)} sources added, {len(self.restored)} restored, "
            f"{len(self.present)} already present, {len(self.refused)} refused"
        )


def parse_opml(data: bytes) -> list[Feed]:
    """Every outline with an xmlUrl, in document order (folders are walked), each URL once."""
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(f"file too large ({len(data):,} bytes; the limit is {MAX_OPML_BYTES:,})")
    if _DECLARATION.search(data):
        # No reader writes a DTD into OPML; entity declarations are how XML bombs and XXE work.
        raise OpmlError("DOCTYPE and ENTITY declarations are not accepted in OPML")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise OpmlError(f"not well-formed XML: {e}") from None
    if _local(root.tag) != "opml":
        raise OpmlError(f"the root element is <{_local(root.tag)}>, not <opml>")
    feeds: list[Feed] = []
    seen: set[str] = set()
    for outline in root.iter():
        if _local(outline.tag) != "outline":
            continue
        attrs = {_local(k).lower(): v for k, v in outline.attrib.items()}
        url = (attrs.get("xmlurl") or "").strip()
        if not url or url in seen:
            continue
        seen.add(url)
        name = " ".join((attrs.get("title") or attrs.get("text") or "").split())[:_NAME_LIMIT]
        feeds.append(Feed(name or (urlsplit(url).hostname or url), url, _source_type(attrs, url)))
    return feeds


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]  # "{namespace}outline" -> "outline"


def _source_type(attrs: dict[str, str], url: str) -> str:
    declared = attrs.get(TYPE_ATTRIBUTE.lower(), "")
    if declared in ("feed", "jsonfeed", "wordpress"):
        return declared
    if "/wp-json/wp/v2/" in urlsplit(url).path:
        return "wordpress"
    return "feed"  # RSS, Atom and JSON Feed are told apart by the parser itself


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why this URL cannot be a source (bot.urls: the config file's rule), or None."""
    return source_url_problem(url, allow_private=allow_private, allow_credentials=True)


def import_feeds(
    store: Store,
    feeds: Iterable[Feed],
    *,
    interval: int,
    allow_private: bool,
    now: datetime | None = None,
) -> ImportReport:
    """Add each feed as a source unless its URL is already one; one transaction for the file."""
    now = now or datetime.now(UTC)
    report = ImportReport()
    with store.transaction():
        rows = store.catalog.source_catalog()
        names = {r.name for r in rows}
        active = {key for r in rows if not r.removed for key in (r.url, url_key(r.url))}
        removed = {r.url: r.name for r in rows if r.removed}
        for feed in feeds:
            if feed.url in active or url_key(feed.url) in active:
                report.present.append(feed)
                continue
            problem = url_problem(feed.url, allow_private=allow_private)
            if problem is not None:
                report.refused.append((feed, problem))
                continue
            if feed.url in removed:  # bring the old row back under its old name
                source = Source(removed[feed.url], feed.url, feed.type, interval)
                report.restored.append(source)
            else:
                source = Source(_unique(feed, names), feed.url, feed.type, interval)
                report.added.append(source)
            names.add(source.name)
            active.update((feed.url, url_key(feed.url)))
            store.catalog.import_source(source, now)
    return report


def _unique(feed: Feed, taken: set[str]) -> str:
    """The feed's name, or with its host (then a number) added when another source has it."""
    if feed.name not in taken:
        return feed.name
    host = urlsplit(feed.url).hostname or "feed"
    candidate = f"{feed.name} ({host})"
    number = 2
    while candidate in taken:
        candidate = f"{feed.name} ({host}) {number}"
        number += 1
    return candidate


def export_opml(sources: Sequence[Source], now: datetime | None = None) -> str:
    """OPML 2.0 with one outline per source; the type is kept in an extra attribute for a round trip."""
    now = now or datetime.now(UTC)
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = "newsalert sources"
    ET.SubElement(head, "dateCreated").text = format_datetime(now.astimezone(UTC), usegmt=True)
    body = ET.SubElement(root, "body")
    for source in sources:
        attrs = {"type": "rss", "text": source.name, "title": source.name, "xmlUrl": source.url}
        if source.type != "feed":
            attrs[TYPE_ATTRIBUTE] = source.type
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
