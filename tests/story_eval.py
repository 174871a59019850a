"""Run a labeled story set (tests/data/stories/) through the real clustering path (the Store and
ingest's assign_story) and score it with bot.stories.labeled. Used by tests/test_stories.py and
bench/stories.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from bot.ingest.poll import assign_story
from bot.store import Store
from bot.stories import labeled
from bot.stories.decide import signals_of
from bot.stories.embed import embed
from bot.stories.fingerprint import fingerprint
from bot.stories.labeled import Labeled, Scores

STORIES = Path(__file__).parent / "data" / "stories"
LABELED = STORIES / "syndicated.toml"


def evaluate(
    store: Store,
    path: Path = LABELED,
    window: timedelta = timedelta(hours=72),
    *,
    rows: Sequence[Labeled] | None = None,
) -> Scores:
    """Every item of the set (or ``rows`` of it) clustered and indexed as a matched item would be."""
    truth: list[tuple[str, object, str]] = []
    for row in labeled.read(path) if rows is None else rows:
        item = labeled.item_of(row)
        fp = fingerprint(item.title, item.text)
        with store.transaction():
            predicted, decision = assign_story(store, fp, item.title, item.text, row.seen, window)
            item_id = store.items.add_item(item, story_id=predicted)
            signals = decision.signals or signals_of(item.title, item.text, embed)
            store.stories.add_fingerprint(item_id, predicted, row.seen, fp, signals)
            store.story_model.save_decision(item_id, predicted, decision)
        truth.append((row.story, predicted, item.title))
    return labeled.score(truth)
