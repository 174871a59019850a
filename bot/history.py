"""History: full-text search over every stored item, export of what alerted, and retention.

Search speaks the watchlist query language and agrees exactly with what alerts would match: SQLite
FTS5 (the items_fts index kept by store.py) only narrows the candidates, and every candidate is
confirmed by the real matcher (``bot.match``). The FTS5 expression is built from the words a match
*must* contain, so it never drops a match:

- a term becomes the text words one of which begins every occurrence of it (the matcher's own
  prefilter words: ``deep-fake`` -> deep | deepfake | deepfakes, ``nudif*`` -> nudif*);
- a phrase, AND and NEAR become an AND of their parts' words; OR an OR (given words for every branch);
- NOT, ``source:`` and words the two tokenizers might read differently give no words; a query left
  with none scans the window with the matcher alone.

Items whose text FTS5 might split differently from the matcher (rare scripts, fullwidth letters,
leftover HTML entities; see store.FTS_PLAIN) are candidates for every query. Confirming candidates has a
time budget (``SEARCH_BUDGET``): past it the search stops with SearchTimeout instead of holding a thread.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

from bot.errors import SearchTimeout
from bot.match.compile import word_triggers  # the words every occurrence of a term begins with
from bot.match.fold import fold  # the matcher's folding: the FTS words must be its words
from bot.match.query import And, Near, Node, Not, Or, Phrase, Query, Term, compile_query
from bot.store import Store
from bot.store.schema import FTS_NOT_PLAIN, FTS_PLAIN

log = logging.getLogger("newsalert.history")

DEFAULT_RETENTION_DAYS = 180
EXPORT_FIELDS = (
    "id",
    "first_seen",
    "title",
    "url",
    "sources",
    "watchlists",
    "channels",
    "feedback",
    "triage",
)
_BATCH = 200  # candidates whose text is read and matched at a time
# A search answers a person waiting in Slack or at a terminal; past this it is better to ask them to narrow
# it than to hold a thread. The 50 bench watchlists take a median of 3 ms over a million items.
SEARCH_BUDGET = 5.0  # seconds spent confirming candidates


@dataclass(frozen=True)
class StoryHit:
    id: int  # the story
    title: str  # of the story's earliest matching item in the window
    url: str
    sources: int  # outlets that reported the story (Store.story_sources)
    first_seen: datetime  # when the bot first saw the story, UTC
    watchlists: tuple[str, ...]  # every watchlist the story's items matched

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "url": self.url,
            "sources": self.sources,
            "first_seen": iso_z(self.first_seen),
            "watchlists": list(self.watchlists),
        }


def iso_z(dt: datetime) -> str:
    """ISO 8601 in UTC with a Z: 2026-02-05T17:12:00Z."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------------------
# Search


def search(
    store: Store,
    query: str,
    *,
    since: timedelta = timedelta(days=30),
    watchlist: str | None = None,
    source: str | None = None,
    limit: int = 20,
    offset: int = 0,
    now: datetime | None = None,
    budget: float | None = None,
) -> list[StoryHit]:
    """Stories with an item first seen in the last ``since`` that ``query`` matches, newest first;
    ``offset`` skips that many of the newest (a later page).

    ``watchlist`` keeps stories that watchlist matched; ``source`` keeps items from that source (or
    outlet, for aggregator items). Raises bot.errors.QueryError for a query that does not parse, and
    bot.errors.SearchTimeout when confirming the candidates takes more than ``budget`` seconds (default
    SEARCH_BUDGET; checked before each candidate, so a budget of 0 stops at the first).
    """
    budget = SEARCH_BUDGET if budget is None else budget
    compiled = compile_query(query)
    now = now or datetime.now(UTC)
    candidates = store.history.search_candidates(
        fts_match(compiled), now - since, source=source, watchlist=watchlist
    )
    deadline, checked = time.monotonic() + budget, 0
    found: dict[int, tuple[int, str, str, datetime]] = {}  # story -> (item, title, url, story first seen)
    position = 0
    wanted = offset + limit  # confirmed stories in order: the page is the last ``limit`` of them
    while position < len(candidates) and len(found) < wanted:
        # Candidates come story by story, newest story first: the first confirmed item of a story
        # is its earliest match, and once ``limit`` stories are confirmed the rest can only be older.
        batch = []
        while position < len(candidates) and len(batch) < _BATCH:
            if candidates[position][1] not in found:
                batch.append(candidates[position])
            position += 1
        texts = store.history.search_texts([item_id for item_id, _, _ in batch])
        for item_id, story_id, story_first_seen in batch:
            if story_id in found:
                continue
            if time.monotonic() >= deadline:
                raise SearchTimeout(budget, checked, len(candidates))
            checked += 1
            row = texts.get(item_id)
            if row is None:
                continue  # deleted since the candidates were read (retention runs in another thread)
            if compiled.match(row.title, row.text, source=row.source) is not None:
                first_seen = datetime.fromisoformat(story_first_seen)
                found[story_id] = (item_id, row.title, row.url, first_seen)
                if len(found) == wanted:
                    break
    found = dict(list(found.items())[offset:])
    watchlists = store.history.story_watchlists(list(found))
    return [
        StoryHit(
            id=story_id,
            title=title,
            url=url,
            sources=len(store.stories.story_sources(story_id)),
            first_seen=first_seen,
            watchlists=tuple(watchlists.get(story_id, ())),
        )
        for story_id, (_, title, url, first_seen) in found.items()
    ]


def fts_match(query: Query) -> str | None:
    """An FTS5 MATCH expression every item that ``query`` matches satisfies; None when there is none."""
    return _translate(query.ast)


def _translate(node: Node) -> str | None:
    if isinstance(node, Term):
        if node.field == "source":
            return None  # the source name is not in the index
        return _scoped(_word(node.word, last=True, exact=node.exact), node.field)
    if isinstance(node, Phrase):
        if node.field == "source":
            return None
        # Every word of a phrase occurs; only the last may be plural.
        last = len(node.words) - 1
        words = [_word(word, last=i == last, exact=False) for i, word in enumerate(node.words)]
        return _scoped(_join([w for w in words if w is not None], "AND"), node.field)
    if isinstance(node, Not):
        return None  # what must be absent narrows nothing
    if isinstance(node, And | Near):
        # Every operand matches, so each one's words are required: keep those that have words.
        parts = [_translate(operand) for operand in node.operands]
        return _join([p for p in parts if p is not None], "AND")
    assert isinstance(node, Or)
    parts = [_translate(operand) for operand in node.operands]
    if any(p is None for p in parts):
        return None  # a branch without words could match anything
    return _join([p for p in parts if p is not None], "OR")


def _word(word: str, *, last: bool, exact: bool) -> str | None:
    """FTS5 for one query word: an OR of the text words any occurrence of it begins with."""
    triggers = word_triggers(fold(word), last=last, exact=exact)
    if triggers is None or triggers.substring:
        return None
    words, prefixes = sorted(triggers.words), sorted(triggers.prefixes)
    if not words and not prefixes:
        return None
    if not all(_plain(char) for text in (*words, *prefixes) for char in text):
        return None  # a word FTS5 might fold or split unlike the matcher: it cannot narrow safely
    # Quoted strings: FTS5 reads nothing in them as syntax (folded words hold no '"' anyway).
    terms = [_quote(w) for w in words] + [f"{_quote(p)}*" for p in prefixes]
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _scoped(expr: str | None, field: str | None) -> str | None:
    if expr is None or field is None:
        return expr
    return f"{{{field}}} : ({expr})"  # title: / text: search that column only


def _join(parts: list[str], operator: str) -> str | None:
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else "(" + f" {operator} ".join(parts) + ")"


def _plain(char: str) -> bool:
    code = ord(char)
    inside = any(lo <= code <= hi for lo, hi in FTS_PLAIN)
    return inside and not any(lo <= code <= hi for lo, hi in FTS_NOT_PLAIN)


def format_hits(hits: Sequence[StoryHit]) -> str:
    """Plain text for a terminal: one block per story, newest first."""
    lines = []
    for hit in hits:
        sources = f"{hit.sources} source{'s' if hit.sources != 1 else ''}"
        watchlists = f"  [{', '.join(hit.watchlists)}]" if hit.watchlists else ""
        when = f"{hit.first_seen.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        lines.append(f"{when}  {sources}  story {hit.id}{watchlists}")
        lines.append(f"  {' '.join(hit.title.split())}")
        if hit.url:
            lines.append(f"  {hit.url}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Export


def export_rows(
    store: Store, *, since: timedelta, watchlist: str | None = None, now: datetime | None = None
) -> list[dict]:
    """One row per story that matched a watchlist (``watchlist`` if given) with an item first seen in
    the last ``since``, newest first. Values are JSON-ready; see write_csv for the flat form."""
    now = now or datetime.now(UTC)
    stories: dict[int, dict] = {}
    for r in store.history.matched_items_since(now - since, watchlist):
        if r.story_id in stories:
            continue  # the story's earliest matched item in the window names it
        stories[r.story_id] = {
            "id": r.story_id,
            "first_seen": iso_z(r.story_first_seen),
            "title": r.title,
            "url": r.url,
        }
    ids = list(stories)
    watchlists = store.history.story_watchlists(ids)
    channels = store.history.story_channels_sent(ids)
    feedback = store.history.story_feedback(ids)
    triage = store.history.story_triage(ids)
    for story_id, row in stories.items():
        row["sources"] = len(store.stories.story_sources(story_id))
        row["watchlists"] = watchlists.get(story_id, [])
        row["channels"] = channels.get(story_id, [])
        row["feedback"] = feedback.get(story_id, {})  # kind -> votes, e.g. {"not_relevant": 2}
        row["triage"] = triage.get(story_id, {})  # channel -> claimed | done | escalated
    return [{field: row[field] for field in EXPORT_FIELDS} for row in stories.values()]


def write_csv(rows: Iterable[dict], out: TextIO) -> None:
    """CSV with a header row. Lists are joined with "; ", mappings as "key=value; …"."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    for row in rows:
        writer.writerow([_cell(row[field]) for field in EXPORT_FIELDS])


def write_json(rows: Sequence[dict], out: TextIO) -> None:
    json.dump(list(rows), out, ensure_ascii=False, indent=2)
    out.write("\n")


def _cell(value: object) -> str:
    if isinstance(value, dict):
        value = "; ".join(f"{k}={v}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        value = "; ".join(map(str, value))
    text = str(value)
    # Titles come from feeds: a cell starting with = + - @ would run as a formula in a spreadsheet.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


# ---------------------------------------------------------------------------------------------------------
# Retention


def prune(store: Store, *, retention_days: int, now: datetime | None = None) -> int:
    """Delete stories none of whose items was first seen in the last ``retention_days``; returns the
    number of items removed.

    Kept: stories with an alert still queued (it would lose its item), and stories an open digest
    window still needs (``Store.digest_hold``). Whole stories go, never some of their items: a later
    report replies in the thread of the first, and a digest places a story by its first match. The
    search index follows through the items_fts triggers. Runs in small transactions, so polls and
    deliveries wait for the write lock only briefly.
    """
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, got {retention_days}")
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    hold = store.digests.digest_hold()
    if hold is not None and hold < cutoff:
        log.warning(
            "retention held back to %s by an open digest window (a digest not sent for %d days)",
            iso_z(hold),
            (now - hold).days,
        )
        cutoff = hold
    removed, after = 0, 0
    while True:
        with store.transaction():
            stories = store.history.prunable_stories(cutoff, after=after)
            if not stories:
                break
            removed += store.history.delete_stories(stories)
        after = stories[-1]
    log.info("retention pruned items=%d older_than=%s", removed, iso_z(cutoff))
    return removed
