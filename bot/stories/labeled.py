"""Labeled story sets (the TOML format of tests/data/stories/): reading them, the split by week
into a fitting part and a held-out part, and scoring a clustering against them.

Used by `newsalert stories fit`, bench/story_model.py and tests/story_eval.py, so that the
figures the README, the tests and the fitted model's record print are computed one way.
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

import numpy as np

from bot.errors import ConfigError
from bot.ingest.normalize import normalize
from bot.model import Entry, Item, Source
from bot.stories.decide import decide, signals_of
from bot.stories.fingerprint import fingerprint
from bot.stories.index import Indexed, StoryIndex
from bot.stories.model import StoryModel
from bot.stories.signals import FEATURES, Scorer, candidate_features

HELD_OUT_EVERY = 3  # weeks whose ISO week number is a multiple of this are never fitted on


@dataclass(frozen=True)
class Labeled:
    """One labeled report, in the order a bot would see it."""

    seen: datetime
    story: str  # the true story's id
    week: str  # "2026-W06"
    entry: Entry
    source: Source


def held_out(week: str) -> bool:
    """The split: a whole week (every story in it, and its hard negatives) is in one part."""
    return int(week.split("-W")[1]) % HELD_OUT_EVERY == 0


def read(path: Path) -> list[Labeled]:
    """Every item of a labeled set, oldest first. A malformed file is a ConfigError naming it."""
    try:
        return _rows(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError, TypeError) as e:
        raise ConfigError(str(path), f"not a labeled story set: {e}") from None


def _rows(doc: dict) -> list[Labeled]:
    rows = []
    for story in doc.get("story", []):
        year, week = story["week"].split("-W")
        start = datetime.fromisocalendar(int(year), int(week), 1).replace(tzinfo=UTC)
        for n, item in enumerate(story["items"]):
            seen = start + timedelta(hours=float(item.get("hours", 0)))
            via = item.get("via", "")
            outlet = item["outlet"]
            host = outlet.replace(" ", "").lower()
            source = Source(name=via or outlet, url=f"https://{host}.example/feed")
            entry = Entry(
                guid=f"{story['id']}-{n}",
                link=f"https://{host}.example/{story['id']}/{n}",
                title=item["title"],
                summary=item.get("lead", ""),
                published=seen,
                outlet=outlet if via else "",
            )
            rows.append(Labeled(seen, story["id"], story["week"], entry, source))
    rows.sort(key=lambda r: (r.seen, r.entry.guid))
    return rows


def part(rows: Iterable[Labeled], *, held: bool) -> list[Labeled]:
    return [r for r in rows if held_out(r.week) == held]


@dataclass(frozen=True)
class Scores:
    """Pairwise and BCubed precision/recall of a clustering against the true stories."""

    precision: float
    recall: float
    bcubed_precision: float
    bcubed_recall: float
    true_pairs: int
    predicted_pairs: int
    stories: int
    items: int
    false_merges: list[tuple[str, str]]
    missed: list[tuple[str, str]]

    @property
    def bcubed_f1(self) -> float:
        p, r = self.bcubed_precision, self.bcubed_recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def line(self) -> str:
        return (
            f"{self.stories} stories, {self.items} items, {self.true_pairs} same-story pairs: pairwise "
            f"precision {self.precision:.3f}, recall {self.recall:.3f}; BCubed F1 {self.bcubed_f1:.3f}"
        )

    def figures(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "bcubed_f1": round(self.bcubed_f1, 4),
            "items": self.items,
            "stories": self.stories,
        }


def score(truth: Sequence[tuple[str, object, str]]) -> Scores:
    """``truth``: (true story, predicted story, title) per item."""
    true_pairs = predicted_pairs = both = 0
    false_merges, missed = [], []
    for (ta, pa, a), (tb, pb, b) in combinations(truth, 2):
        same_true, same_pred = ta == tb, pa == pb
        true_pairs += same_true
        predicted_pairs += same_pred
        both += same_true and same_pred
        if same_pred and not same_true:
            false_merges.append((a, b))
        elif same_true and not same_pred:
            missed.append((a, b))
    # BCubed: per item, the share of its predicted cluster that is its story, and the share of
    # its story that is in its predicted cluster; averaged over items.
    cells = Counter((t, p) for t, p, _ in truth)
    by_true = Counter(t for t, _, _ in truth)
    by_pred = Counter(p for _, p, _ in truth)
    n = len(truth) or 1
    bp = sum(cells[(t, p)] / by_pred[p] for t, p, _ in truth) / n
    br = sum(cells[(t, p)] / by_true[t] for t, p, _ in truth) / n
    return Scores(
        precision=both / predicted_pairs if predicted_pairs else 1.0,
        recall=both / true_pairs if true_pairs else 1.0,
        bcubed_precision=bp,
        bcubed_recall=br,
        true_pairs=true_pairs,
        predicted_pairs=predicted_pairs,
        stories=len(by_true),
        items=len(truth),
        false_merges=false_merges,
        missed=missed,
    )


Embed = Callable[[list[str]], np.ndarray]
WINDOW = timedelta(hours=72)


def item_of(row: Labeled) -> Item:
    return normalize(row.entry, row.source, row.seen)


def pairs(rows: Sequence[Labeled], embed: Embed, window: timedelta = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(features, same story?) of every item against every earlier one within the window, each
    scored as the decision would have seen it then (document frequencies so far): what is fitted on.
    """
    index = StoryIndex()
    seen_so_far: list[tuple[Labeled, Indexed]] = []
    features, labels = [], []
    for n, row in enumerate(rows):
        item = item_of(row)
        fp = fingerprint(item.title, item.text)
        signals = signals_of(item.title, item.text, embed)
        scorer = Scorer(fp, index.df, index.total)
        earlier = [(other_row, other) for other_row, other in seen_so_far if row.seen - other.seen <= window]
        others = [(other.fp, other.signals, other.seen) for _, other in earlier]
        features += candidate_features(scorer, signals, row.seen, others, index.df).tolist()
        labels += [float(other_row.story == row.story) for other_row, _ in earlier]
        entry = Indexed(n, n, row.seen, fp, signals)
        index.add(entry)
        seen_so_far.append((row, entry))
    return np.array(features).reshape(-1, len(FEATURES)), np.array(labels)


def cluster(rows: Sequence[Labeled], model: StoryModel, embed: Embed, window: timedelta = WINDOW) -> Scores:
    """Cluster ``rows`` in memory with the decision the bot runs (every item indexed), and score it."""
    index = StoryIndex()
    predicted: list[int] = []
    for n, row in enumerate(rows):
        item = item_of(row)
        fp = fingerprint(item.title, item.text)
        decision = decide(index, model, embed, fp, item.title, item.text, row.seen, row.seen - window)
        story = n if decision.story_id is None else decision.story_id
        signals = decision.signals or signals_of(item.title, item.text, embed)
        index.add(Indexed(n, story, row.seen, fp, signals))
        predicted.append(story)
        for other in decision.merge:
            moved = [i for i, s in enumerate(predicted) if s == other]
            index.move(moved, story)
            for i in moved:
                predicted[i] = story
    return score([(row.story, story, row.entry.title) for row, story in zip(rows, predicted, strict=True)])


# --- analysts' corrections, in the same format ----------------------------------------------------


@dataclass(frozen=True)
class LabelItem:
    """A copy of one item of a correction, enough to write it in the labeled-set format."""

    outlet: str
    via: str  # the aggregator source for a news-search copy, else ""
    title: str
    lead: str
    seen: str  # ISO time the bot first saw it


@dataclass(frozen=True)
class StoryLabel:
    id: int
    same: bool
    a: LabelItem
    b: LabelItem
    user_id: str
    created_at: str


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def labels_toml(labels: Sequence[StoryLabel]) -> str:
    """The corrections as a labeled set: a "same" pair is one story of two items; a "different"
    pair is two one-item stories that are each other's hard negative (tests/data/stories/README.md)."""
    out = ["# Analysts' story corrections (newsalert stories labels --export).", ""]
    for label in labels:
        first = min(label.a.seen, label.b.seen)
        start = datetime.fromisoformat(first)
        year, week, _ = start.isocalendar()
        groups = [[label.a, label.b]] if label.same else [[label.a], [label.b]]
        ids = [f"label-{label.id}" + ("" if label.same else f"-{k}") for k in "ab"[: len(groups)]]
        for n, (story_id, items) in enumerate(zip(ids, groups, strict=True)):
            out += [
                "[[story]]",
                f"id = {_quote(story_id)}",
                f'week = "{year}-W{week:02d}"',
                'topic = "other"',
            ]
            if not label.same:
                out.append(f"hard_negative_of = [{_quote(ids[1 - n])}]")
            out.append("")
            story_start = min(i.seen for i in items)
            for item in sorted(items, key=lambda i: i.seen):
                hours = (
                    datetime.fromisoformat(item.seen) - datetime.fromisoformat(story_start)
                ).total_seconds() / 3600
                out += [
                    "[[story.items]]",
                    f"outlet = {_quote(item.outlet)}",
                    f"title = {_quote(item.title)}",
                    f"lead = {_quote(item.lead)}",
                    f"hours = {hours:.2f}",
                    f"via = {_quote(item.via)}",
                    "",
                ]
    return "\n".join(out)


def from_labels(labels: Sequence[StoryLabel]) -> list[Labeled]:
    """The corrections as labeled rows, to fit on (via labels_toml, so they read as the files do)."""
    if not labels:
        return []
    doc = tomllib.loads(labels_toml(labels))
    return _rows(doc)
