"""StoryIndex: the matched items of the story window in memory, looked up two ways: an inverted
index of rare tokens (copies share names and figures) and nearest vectors (paraphrases share
meaning, not words).

store/stories.py loads it from the fingerprints table and keeps it in step with what it writes,
so looking up a new item's candidates is a few dictionary reads and one matrix product instead
of a query; every new item of a poll is looked up, indexed or not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter

import numpy as np

from bot.stories.embed import DIM
from bot.stories.fingerprint import Fingerprint, candidate_tokens
from bot.stories.signals import Signals

POSTINGS_PER_TOKEN = 200  # candidate lookup: the most recent items per token
# Items compared in full with a new one, those sharing the most of its rarest tokens. On both
# labeled sets, 10 gives the same precision and recall as 30 (5 loses some): a copy of a story
# shares its names and figures, so it ranks near the top.
CANDIDATES = 10
NEAREST = 5  # and the items whose vectors are closest, for paraphrases that share few rare words
NEAREST_FLOOR = 0.3  # below, another subject: 80% of same-story pairs of the fitting weeks are above 0.3
STORY_ITEMS = 20  # a story's items compared with a new one, at most (the most recent)
FORGET_EVERY = 1000  # items added between looks for items that left the window


@dataclass(frozen=True)
class Indexed:
    """One matched item of the window, as the decision compares it."""

    item_id: int
    story_id: int
    seen: datetime
    fp: Fingerprint
    signals: Signals


class StoryIndex:
    """The fingerprints and signals of the items seen within the story window.

    Items are added in the order they are seen, so each token's postings are oldest first.
    ``df`` and ``total`` are the document frequencies of the IDF weights, over every indexed item
    ever (not only the window): a token's rarity is a property of the language of the news.
    """

    def __init__(self, df: Mapping[str, int] | None = None, total: int = 0):
        self.df: dict[str, int] = dict(df or {})
        self.total = total
        self._postings: dict[str, list[int]] = {}
        self._items: dict[int, Indexed] = {}
        self._stories: dict[int, list[int]] = {}  # story -> its items in the window, oldest first
        self._added = 0
        # The window's vectors, one row per item in the order added (row -> item id in _rows).
        self._vectors = np.zeros((64, DIM), dtype=np.float32)
        self._seen = np.zeros(64, dtype=np.float64)
        self._rows: list[int] = []

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: int) -> bool:
        return item_id in self._items

    def get(self, item_id: int) -> Indexed | None:
        return self._items.get(item_id)

    def add(self, entry: Indexed, *, count: bool = True) -> None:
        """Index an item; ``count`` adds it to the document frequencies (False when loading)."""
        self._items[entry.item_id] = entry
        self._stories.setdefault(entry.story_id, []).append(entry.item_id)
        self._added += 1
        for token in entry.fp.tokens:
            self._postings.setdefault(token, []).append(entry.item_id)
            if count:
                self.df[token] = self.df.get(token, 0) + 1
        if count:
            self.total += 1
        self._add_row(entry)

    def _add_row(self, entry: Indexed) -> None:
        row = len(self._rows)
        if row == len(self._seen):  # grow by doubling: appends stay cheap
            self._vectors = np.vstack([self._vectors, np.zeros_like(self._vectors)])
            self._seen = np.concatenate([self._seen, np.zeros_like(self._seen)])
        self._vectors[row] = entry.signals.vector
        self._seen[row] = entry.seen.timestamp()
        self._rows.append(entry.item_id)

    def move(self, item_ids: Iterable[int], story_id: int) -> None:
        """Items now belong to another story (a split or a merge)."""
        for item_id in item_ids:
            if (entry := self._items.get(item_id)) is not None:
                self._stories[entry.story_id].remove(item_id)
                self._items[item_id] = Indexed(item_id, story_id, entry.seen, entry.fp, entry.signals)
                self._stories.setdefault(story_id, []).append(item_id)

    def candidates(self, fp: Fingerprint, since: datetime, limit: int = CANDIDATES) -> list[Indexed]:
        """The items seen since ``since`` sharing most of fp's rare tokens.

        Each token contributes its most recent postings only: a token shared by thousands of
        items would otherwise make every lookup scan them all. Copies are recent.
        """
        self._forget_before(since)
        items = self._items
        shared: Counter[int] = Counter()
        for token in candidate_tokens(fp, self.df, self.total):
            recent = self._postings.get(token, [])[-POSTINGS_PER_TOKEN:]
            if recent and items[recent[0]].seen < since:  # some have left the window
                recent = [i for i in recent if items[i].seen >= since]
            shared.update(recent)
        # Most shared tokens first, then the most recent (the highest id). Most of the items
        # share one token: sorting only those that can make the cut is what keeps this cheap.
        counted: Iterable[tuple[int, int]] = shared.items()
        if len(shared) > limit:
            cut = sorted(shared.values(), reverse=True)[limit - 1]
            counted = [(i, n) for i, n in counted if n >= cut]
        ranked = sorted(counted, key=itemgetter(1, 0), reverse=True)[:limit]
        return [items[i] for i, _ in ranked]

    def nearest(self, vector: np.ndarray, since: datetime, limit: int = NEAREST) -> list[Indexed]:
        """The items seen since ``since`` closest to ``vector`` (cosine >= NEAREST_FLOOR), closest first."""
        n = len(self._rows)
        if not n or not vector.any():
            return []
        cosines = self._vectors[:n] @ vector
        cosines[self._seen[:n] < since.timestamp()] = -1.0
        top = np.argpartition(cosines, n - limit)[n - limit :] if n > limit else np.arange(n)
        top = top[np.argsort(-cosines[top])]
        return [self._items[self._rows[r]] for r in top if cosines[r] >= NEAREST_FLOOR]

    def story_items(self, story_id: int) -> list[Indexed]:
        """The story's items in the window (the last STORY_ITEMS of them)."""
        return [self._items[i] for i in self._stories.get(story_id, [])[-STORY_ITEMS:] if i in self._items]

    def _forget_before(self, since: datetime) -> None:
        # Dropping what left the window keeps memory flat in a long-running bot. It is a full
        # rebuild, so it runs at most once per FORGET_EVERY items added.
        if self._added < FORGET_EVERY:
            return
        self._added = 0
        kept = {i: e for i, e in self._items.items() if e.seen >= since}
        if len(kept) == len(self._items):
            return
        self._items = kept
        self._stories = {}
        for item_id, entry in kept.items():
            self._stories.setdefault(entry.story_id, []).append(item_id)
        self._postings = {}
        self._rows = []
        size = max(64, 1 << (len(kept) * 2 - 1).bit_length()) if kept else 64
        self._vectors = np.zeros((size, DIM), dtype=np.float32)
        self._seen = np.zeros(size, dtype=np.float64)
        for item_id, entry in kept.items():
            for token in entry.fp.tokens:
                self._postings.setdefault(token, []).append(item_id)
            self._add_row(entry)
