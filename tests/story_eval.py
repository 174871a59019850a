"""Run the labeled story set (tests/data/stories/labeled.toml) through the real clustering path
and measure pairwise precision and recall. Used by tests/test_stories.py and bench/stories.py."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

from bot.ingest.normalize import normalize
from bot.ingest.poll import assign_story
from bot.model import Entry, Source
from bot.store import Store
from bot.stories.fingerprint import fingerprint

LABELED = Path(__file__).parent / "data" / "stories" / "syndicated.toml"


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    true_pairs: int
    predicted_pairs: int
    stories: int
    items: int
    false_merges: list[tuple[str, str]]
    missed: list[tuple[str, str]]


def labeled_entries(path: Path = LABELED) -> list[tuple[datetime, str, Entry, Source]]:
    """(time, true story id, entry, source) in the order a bot would see them."""
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    rows = []
    for story in doc["story"]:
        year, week = story["week"].split("-W")
        start = datetime.fromisocalendar(int(year), int(week), 1).replace(tzinfo=UTC)
        for n, item in enumerate(story["items"]):
            seen = start + timedelta(hours=float(item.get("hours", 0)))
            via = item.get("via", "")
            outlet = item["outlet"]
            source = Source(name=via or outlet, url=f"https://{outlet.replace(' ', '').lower()}.example/feed")
            entry = Entry(
                guid=f"{story['id']}-{n}",
                link=f"https://{outlet.replace(' ', '').lower()}.example/{story['id']}/{n}",
                title=item["title"],
                summary=item.get("lead", ""),
                published=seen,
                outlet=outlet if via else "",
            )
            rows.append((seen, story["id"], entry, source))
    rows.sort(key=lambda r: (r[0], r[2].guid))
    return rows


def evaluate(store: Store, path: Path = LABELED, window: timedelta = timedelta(hours=72)) -> Scores:
    truth: list[tuple[str, int, str]] = []  # (true story, predicted story, title)
    for seen, story_id, entry, source in labeled_entries(path):
        item = normalize(entry, source, seen)
        fp = fingerprint(item.title, item.text)
        predicted = assign_story(store, fp, seen, window)
        item_id = store.items.add_item(item, story_id=predicted)
        store.stories.add_fingerprint(item_id, predicted, seen, fp)
        truth.append((story_id, predicted, item.title))
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
    return Scores(
        precision=both / predicted_pairs if predicted_pairs else 1.0,
        recall=both / true_pairs if true_pairs else 1.0,
        true_pairs=true_pairs,
        predicted_pairs=predicted_pairs,
        stories=len({t for t, _, _ in truth}),
        items=len(truth),
        false_merges=false_merges,
        missed=missed,
    )
