"""Trying a query before using it: `newsalert query test` and `newsalert query backtest`.

``backtest`` runs a query over the items already stored (the history the bot has seen) and says what
it would have alerted; given the watchlist's current query too, it says what the edit changes. The
formatting here is plain text for a terminal: matched words are shown in [brackets].
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.match.query import Query
from bot.model import Item, Span
from bot.store import Store

MARK_START, MARK_END = "[", "]"
SNIPPET_WIDTH = 160  # characters of text shown around the first match


@dataclass(frozen=True)
class Hit:
    item_id: int
    story: int  # items of one story count once (see Store.items_first_seen_since)
    item: Item
    spans: tuple[Span, ...]


@dataclass
class Run:
    """What one query matched in the history, newest first."""

    query: str
    hits: list[Hit] = field(default_factory=list)

    @property
    def items(self) -> int:
        return len(self.hits)

    @property
    def stories(self) -> int:
        return len({hit.story for hit in self.hits})


@dataclass
class Backtest:
    since: datetime
    scanned: int  # items in the window
    seconds: float  # matching time, all queries
    candidate: Run
    current: Run | None = None  # the watchlist's configured query, when comparing
    watchlist: str | None = None

    @property
    def newly_matched(self) -> list[Hit]:
        if self.current is None:
            return []
        before = {hit.item_id for hit in self.current.hits}
        return [hit for hit in self.candidate.hits if hit.item_id not in before]

    @property
    def no_longer_matched(self) -> list[Hit]:
        if self.current is None:
            return []
        after = {hit.item_id for hit in self.candidate.hits}
        return [hit for hit in self.current.hits if hit.item_id not in after]


def backtest(
    store: Store,
    query: Query,
    since: datetime,
    *,
    current: Query | None = None,
    watchlist: str | None = None,
) -> Backtest:
    """Match ``query`` (and ``current``, to compare) against every item first seen since ``since``."""
    candidate = Run(query.text)
    baseline = Run(current.text) if current is not None else None
    scanned, seconds = 0, 0.0
    for item_id, story, item in store.items.items_first_seen_since(since):
        scanned += 1
        started = time.perf_counter()
        spans = query.match(item.title, item.text, source=item.source)
        before = current.match(item.title, item.text, source=item.source) if current is not None else None
        seconds += time.perf_counter() - started
        if spans is not None:
            candidate.hits.append(Hit(item_id, story, item, tuple(spans)))
        if baseline is not None and before is not None:
            baseline.hits.append(Hit(item_id, story, item, tuple(before)))
    for run in (candidate, baseline):
        if run is not None:  # newest news first; first_seen ties within one poll
            run.hits.sort(key=lambda hit: (hit.item.published, hit.item_id), reverse=True)
    return Backtest(since, scanned, seconds, candidate, baseline, watchlist)


# ---------------------------------------------------------------------------------------------------------
# Plain-text output


def highlight(
    text: str, spans: Sequence[Span], field_name: str, start: int = 0, end: int | None = None
) -> str:
    """``text[start:end]`` with the spans of ``field_name`` in brackets; overlapping spans merge."""
    end = len(text) if end is None else end
    ranges: list[list[int]] = []
    for span in sorted((s for s in spans if s.field == field_name), key=lambda s: (s.start, s.end)):
        lo, hi = max(span.start, start), min(span.end, end)
        if lo >= hi:
            continue
        if ranges and lo <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], hi)
        else:
            ranges.append([lo, hi])
    out, position = [], start
    for lo, hi in ranges:
        out += [text[position:lo], MARK_START, text[lo:hi], MARK_END]
        position = hi
    out.append(text[position:end])
    return "".join(out)


def snippet(text: str, spans: Sequence[Span], width: int = SNIPPET_WIDTH) -> str:
    """A window of ``text`` around its first matched span, highlighted; "" when nothing matched there."""
    text_spans = sorted((s for s in spans if s.field == "text"), key=lambda s: s.start)
    if not text_spans:
        return ""
    first = text_spans[0]
    start = max(0, first.start - width // 3)
    end = min(len(text), max(start + width, first.end))
    if start > 0:  # start on a word, not in the middle of one
        space = text.find(" ", start, first.start)
        start = space + 1 if space >= 0 else start
    if end < len(text):
        space = text.rfind(" ", first.end, end)
        end = space if space >= 0 else end
    body = " ".join(highlight(text, text_spans, "text", start, end).split())
    return ("…" if start > 0 else "") + body + ("…" if end < len(text) else "")


def _count(count: int, word: str) -> str:
    plural = word[:-1] + "ies" if word.endswith("y") else word + "s"
    return f"{count:,} {word if count == 1 else plural}"


def _items_in_stories(items: int, stories: int) -> str:
    return f"{_count(items, 'item')} in {_count(stories, 'story')}"


def format_hit(hit: Hit) -> list[str]:
    item = hit.item
    where = item.source + (f" / {item.outlet}" if item.outlet and item.outlet != item.source else "")
    lines = [
        f"  {item.published:%Y-%m-%d %H:%M}  {where}",
        f"    {highlight(item.title, hit.spans, 'title')}",
    ]
    if text := snippet(item.text, hit.spans):
        lines.append(f"    {text}")
    return lines


def _hit_list(title: str, hits: list[Hit], top: int) -> list[str]:
    lines = [f"{title}: {_items_in_stories(len(hits), len({hit.story for hit in hits}))}"]
    for hit in hits[:top]:
        lines += format_hit(hit)
    if len(hits) > top:
        lines.append(f"  … and {len(hits) - top:,} more")
    return lines


def format_backtest(result: Backtest, *, database: str, window: str, top: int = 10) -> str:
    rate = f", {result.scanned / result.seconds:,.0f} items/s" if result.seconds > 0 else ""
    lines = [
        f"query: {' '.join(result.candidate.query.split())}",
        f"history: {_count(result.scanned, 'item')} first seen since {result.since:%Y-%m-%d %H:%M} UTC "
        f"(last {window}) in {database}; matched in {result.seconds:.2f} s{rate}",
    ]
    if result.scanned == 0:
        lines.append("nothing stored in that window: run `newsalert poll --once` (or widen --since)")
    lines.append("")
    lines += _hit_list("would have alerted", result.candidate.hits, top)
    if result.current is not None:
        label = f'watchlist "{result.watchlist}"' if result.watchlist else "the current query"
        lines += [
            "",
            f"compared with {label} as configured: {' '.join(result.current.query.split())}",
            f"it would have alerted {_items_in_stories(result.current.items, result.current.stories)}",
        ]
        lines += _hit_list("newly matched", result.newly_matched, top)
        lines += _hit_list("no longer matched", result.no_longer_matched, top)
    return "\n".join(lines)


def format_test(query: Query, title: str, text: str, spans: list[Span] | None) -> str:
    """What `newsalert query test` prints: the verdict, each span, and the highlighted fields."""
    if spans is None:
        return f"no match: {' '.join(query.text.split())}"
    lines = [f"match: {' '.join(query.text.split())}"]
    if not spans:
        lines.append("  (no words to highlight: it matched through NOT or source: only)")
    fields = {"title": title, "text": text}
    for span in spans:
        matched = fields[span.field][span.start : span.end]
        lines.append(f"  {span.field:5} {span.start:>5}-{span.end:<5} {matched!r} for {span.term!r}")
    for name, value in fields.items():
        if value:
            lines.append(f"{name}: {highlight(value, spans, name)}")
    return "\n".join(lines)
