"""One ``Entry`` from what a parser found: the caps on every field, the guid when the feed gives
none, which entries are worth keeping, and the skip of one bad entry (never the whole feed).

Shared by every source type in bot.ingest.parse, so an RSS item, a JSON Feed item and a
WordPress post follow the same rules.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from bot.model import Entry, Source
from bot.urls import redact

log = logging.getLogger("newsalert.parse")

# Caps so that no single feed can blow up memory, the database or a Slack message.
MAX_ENTRIES = 500  # per parse; feeds list newest first, so the first ones are kept
MAX_TITLE_CHARS = 1_000
MAX_BODY_CHARS = 100_000  # summary and content each, before HTML stripping
MAX_ID_CHARS = 2_048  # guid and links


class SkipEntry(Exception):
    """Raised by the per-entry converters; the message is the reason that gets logged."""


def convert_all(raw_entries: Iterable[Any], source: Source, convert: Callable[[Any], Entry]) -> list[Entry]:
    """The first MAX_ENTRIES raw entries, each ``convert``-ed; one that raises SkipEntry is logged
    and left out, and of entries sharing a guid only the first is kept."""
    raw_list = list(raw_entries)
    if len(raw_list) > MAX_ENTRIES:
        log.warning(
            "too many entries, first kept source=%r url=%s kept=%d dropped=%d",
            source.name,
            redact(source.url),
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
        except SkipEntry as skip:
            log.warning(
                "entry skipped source=%r url=%s position=%d reason=%s",
                source.name,
                redact(source.url),
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
            "duplicate guids dropped source=%r url=%s dropped=%d", source.name, redact(source.url), duplicates
        )
    return entries


def make_entry(
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
    # RSS 2.0 lets an item be only a description (normalize makes it a title from its first
    # words); an entry with no title, no link and no text has nothing to show.
    summary, content = summary[:MAX_BODY_CHARS], content[:MAX_BODY_CHARS]
    if not title and not link and not summary and not content:
        raise SkipEntry("no title, no link and no text")
    title = title[:MAX_TITLE_CHARS]
    if not guid:
        # Without a title, the text is what identifies the item (a hash of it, every poll).
        guid = link or _fallback_guid(title or content or summary, published)
    if len(guid) > MAX_ID_CHARS:
        # Hashed, not cut: two long ids that share a prefix must stay two items.
        guid = _hashed(guid)
    if len(link) > MAX_ID_CHARS:
        link = ""  # a cut URL leads nowhere, and nothing legitimate is this long
    if not title and not link and not summary and not content:
        raise SkipEntry("no title, no text and an overlong link")
    return Entry(
        guid=guid,
        link=link,
        title=title,
        summary=summary,
        content=content,
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


def from_iso(value: Any, *, naive_is_utc: bool) -> datetime | None:
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


def field_text(value: Any) -> str:
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
