"""StoryIndex: the matched items of the story window in memory, looked up two ways: an inverted
index of rare tokens (copies share names and figures) and nearest vectors (paraphrases share
meaning, not words).

store/stories.py loads it from the fingerprints table and keeps it in step with what it writes,
so looking up a new item's candidates is a few dictionary reads and a few small array operations
instead of a query; every new item of a poll is looked up, indexed or not.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

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
# Nearest vectors in a large window: each vector is also kept as a 128-bit sketch (the signs of
# its projections on fixed random hyperplanes, whose Hamming distance estimates the angle), the
# SHORTLIST items of the window with the closest sketches are compared exactly, and the closest
# of those are returned. A full matrix product over a window of 5,000 vectors cost 0.3-5 ms per
# item (OpenBLAS starts threads past ~1,500 rows); the sketches cost a few microseconds per 1,000.
# Windows up to EXACT rows are compared in full (the labeled sets' windows are: same figures).
SKETCH_BITS = 128
SHORTLIST = 128  # of 6,000 synthetic vectors: 93% of the exact top 5 at cosine ~0.5 (64: 90%)
EXACT = 512
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
        # token -> the rows of the items that have it, oldest first. Rows, not item ids: a row
        # is where an item's id, time, vector and sketch are in the arrays below, so a lookup
        # counts and ranks its candidates with a few array operations instead of a dictionary
        # of thousands of ids.
        self._postings: dict[str, list[int]] = {}
        self._items: dict[int, Indexed] = {}
        self._stories: dict[int, list[int]] = {}  # story -> its items in the window, oldest first
        self._added = 0
        # The window's items, one row each in the order added.
        self._rows = 0
        self._ids = np.zeros(64, dtype=np.int64)
        self._vectors = np.zeros((64, DIM), dtype=np.float32)
        self._seen = np.zeros(64, dtype=np.float64)
        self._sketches = np.zeros((SKETCH_BITS // 64, 64), dtype=np.uint64)  # a row per 64 bits

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
        row = self._add_row(entry)
        postings = self._postings
        for token in entry.fp.tokens:
            if (posted := postings.get(token)) is None:
                postings[token] = [row]
            else:
                posted.append(row)
        if count:
            df = self.df
            for token in entry.fp.tokens:
                df[token] = df.get(token, 0) + 1
            self.total += 1

    def _add_row(self, entry: Indexed) -> int:
        row = self._rows
        if row == len(self._seen):  # grow by doubling: appends stay cheap
            self._resize(2 * row)
        self._ids[row] = entry.item_id
        self._vectors[row] = entry.signals.vector
        self._seen[row] = entry.seen.timestamp()
        self._sketches[:, row] = sketch(entry.signals.vector)
        self._rows = row + 1
        return row

    def _resize(self, size: int, keep: np.ndarray | None = None) -> None:
        """Arrays of ``size`` rows holding the current rows (those ``keep`` selects, if given)."""
        n = self._rows
        chosen = slice(0, n) if keep is None else keep
        ids, vectors, seen = self._ids[:n][chosen], self._vectors[:n][chosen], self._seen[:n][chosen]
        sketches = self._sketches[:, :n][:, chosen]
        k = len(ids)
        self._ids = np.zeros(size, dtype=np.int64)
        self._vectors = np.zeros((size, DIM), dtype=np.float32)
        self._seen = np.zeros(size, dtype=np.float64)
        self._sketches = np.zeros((SKETCH_BITS // 64, size), dtype=np.uint64)
        self._ids[:k], self._vectors[:k], self._seen[:k], self._sketches[:, :k] = ids, vectors, seen, sketches
        self._rows = k

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
        start, seen = since.timestamp(), self._seen
        postings, posted = self._postings, []
        for token in candidate_tokens(fp, self.df, self.total):
            recent = postings.get(token, [])[-POSTINGS_PER_TOKEN:]
            if recent and seen[recent[0]] < start:  # some have left the window (oldest first)
                recent = recent[bisect_left(recent, start, key=seen.__getitem__) :]
            posted += recent
        if not posted:
            return []
        rows = np.array(posted, dtype=np.int64)
        # How many of the tokens each row shares (a row is in a token's postings once), then the
        # rows that share the most, the most recent (the highest id) first. Only the rows that
        # can make the cut are sorted: it is read off how many rows share each number of tokens
        # (at most CANDIDATE_TOKENS), as most rows share one.
        shared = np.bincount(rows)
        found = np.flatnonzero(shared)
        counts = shared[found]
        if len(found) > limit:
            how_many = np.bincount(counts)[::-1].cumsum()  # rows sharing at least max, max-1, ...
            cut = len(how_many) - 1 - int(np.argmax(how_many >= limit))
            chosen = counts >= cut
            found, counts = found[chosen], counts[chosen]
        ids = self._ids[found]
        ranked = ids[np.lexsort((ids, counts))[::-1][:limit]]
        items = self._items
        return [items[i] for i in ranked.tolist()]

    def nearest(self, vector: np.ndarray, since: datetime, limit: int = NEAREST) -> list[Indexed]:
        """The items seen since ``since`` closest to ``vector`` (cosine >= NEAREST_FLOOR), closest first."""
        n = self._rows
        if not n or not vector.any():
            return []
        gone = self._seen[:n] < since.timestamp()
        if n <= EXACT:
            rows = np.arange(n)
        else:
            # One 64-bit word at a time: XOR against a (words, 1) column broadcasts several
            # times slower than against a scalar.
            distance = sum(
                np.bitwise_count(words[:n] ^ word)
                for words, word in zip(self._sketches, sketch(vector), strict=True)
            )
            distance[gone] = SKETCH_BITS + 1
            rows = np.argpartition(distance, SHORTLIST)[:SHORTLIST]
        cosines = self._vectors[rows] @ vector
        cosines[gone[rows]] = -1.0
        k = len(rows)
        top = np.argpartition(cosines, k - limit)[k - limit :] if k > limit else np.arange(k)
        top = top[np.argsort(-cosines[top], kind="stable")]
        ids = self._ids[rows[top]].tolist()
        return [self._items[i] for i, t in zip(ids, top, strict=True) if cosines[t] >= NEAREST_FLOOR]

    def story_items(self, story_id: int) -> list[Indexed]:
        """The story's items in the window (the last STORY_ITEMS of them)."""
        return [self._items[i] for i in self._stories.get(story_id, [])[-STORY_ITEMS:] if i in self._items]

    def _forget_before(self, since: datetime) -> None:
        # Dropping what left the window keeps memory flat in a long-running bot. The postings are
        # rebuilt, so it runs at most once per FORGET_EVERY items added.
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
        # The rows are the items in the order added, so the kept rows are the kept items in the
        # same order: the arrays are compacted (no vector is sketched again) and the postings
        # rebuilt with the new row numbers.
        keep = self._seen[: self._rows] >= since.timestamp()
        self._resize(max(64, 1 << (len(kept) * 2 - 1).bit_length()) if kept else 64, keep)
        postings: dict[str, list[int]] = {}
        for row, entry in enumerate(kept.values()):
            for token in entry.fp.tokens:
                if (posted := postings.get(token)) is None:
                    postings[token] = [row]
                else:
                    posted.append(row)
        self._postings = postings


_PLANES = np.random.default_rng(14).standard_normal((SKETCH_BITS, DIM)).astype(np.float32)


def sketch(vector: np.ndarray) -> np.ndarray:
    """The signs of a vector's projections on SKETCH_BITS fixed random hyperplanes, packed in
    uint64s: the share of differing bits between two sketches estimates their angle over pi."""
    return np.packbits(_PLANES @ vector > 0).view(np.uint64)
