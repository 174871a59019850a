"""The story decision: does a new item report the event of a story in the window, and which one.

Candidates come from the window index (rare tokens, and for matched items nearest vectors too);
each is scored by the fitted model, a story by its best-scoring item, and the item joins the
best story if that score clears the model's threshold. No I/O here: the caller stores the
item, its signals and the Decision (its score and parts are what `story ID --why` shows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from bot.stories.embed import DIM, says_something
from bot.stories.fingerprint import Fingerprint, clean_headline
from bot.stories.index import Indexed, StoryIndex
from bot.stories.model import StoryModel
from bot.stories.signals import FEATURES, Scorer, Signals, candidate_features, read_signals

Embed = Callable[[list[str]], np.ndarray]


def _common() -> frozenset[str]:
    from bot.stories.embed import embedder

    return embedder().common_words


SEMANTIC = FEATURES.index("semantic")


@dataclass(frozen=True)
class Match:
    """The best item of one candidate story, and how it scored."""

    item_id: int
    story_id: int
    probability: float
    parts: dict[str, float]  # each feature's share of the logit (model.parts)
    features: dict[str, float]


@dataclass(frozen=True)
class Decision:
    story_id: int | None  # the story joined; None: a story of its own
    best: Match | None = None  # what put it there (or the best story it did not clear)
    rejected: Match | None = None  # the best other story, not joined
    signals: Signals | None = None  # computed when a candidate needed them (else not yet)
    compared: int = 0  # candidate items scored
    # Stories of one headline-only copy that the item is just as surely the story of: it bridges
    # them, so they are one story (the demo's UNICEF study: a news-search headline that fell just
    # short of the story, then a report that matches both). Only such stories: bridging any
    # two stories cost the held-out independent weeks 0.14 of precision.
    merge: tuple[int, ...] = ()


UNMATCHED_COPY = 1.0  # see decide(): an unmatched item must look like a copy before it is scored


def embedding_text(title: str, text: str) -> str:
    """What is embedded: the headline, and the lead's first sentences when there is one; nothing
    (the zero vector) when that is not words enough to mean anything (embed.says_something)."""
    headline = clean_headline(title)
    embedded = f"{headline}. {text[:400]}" if text else headline
    return embedded if says_something(embedded) else ""


def signals_of(title: str, text: str, embed: Embed) -> Signals:
    return read_signals(title, text, embed([embedding_text(title, text)])[0], _common())


def decide(
    index: StoryIndex,
    model: StoryModel,
    embed: Embed,
    fp: Fingerprint,
    title: str,
    text: str,
    seen: datetime,
    since: datetime,
    *,
    signals: Signals | None = None,
    indexed: bool = True,
) -> Decision:
    """The story the item belongs to, if any, and the scores that say so.

    ``indexed``: the item will be added to the index (it matched a watchlist), so its signals
    are computed anyway and its nearest vectors are looked up too. An item that is not indexed
    is compared only with the items that share its rare tokens, and embedded only when one of
    them could clear the threshold even with a perfect semantic score: most items of a poll
    are about nothing a watched story is about, and cost no embedding.
    """
    if not len(index):
        return Decision(None, signals=signals)
    candidates = index.candidates(fp, since)
    scorer = Scorer(fp, index.df, index.total)
    if signals is None and not indexed:
        if not candidates:
            return Decision(None)
        # An item no watchlist matched joins a watched story only as a copy of it, on words: the
        # lexical score that folded syndicated copies before the fitted model (1.0 is that bar).
        # Independent write-ups of a story nobody watches need no thread, and sparing most of a
        # first poll's items the names, figures and vectors keeps the poll as fast as before.
        if max(scorer.similarity(c.fp) for c in candidates) < UNMATCHED_COPY:
            return Decision(None)
        # The entities and figures without the vector decide whether the vector is needed, and
        # are kept if it is (reading them twice was a sixth of a first poll's story work).
        blank = read_signals(title, text, np.zeros(DIM, dtype=np.float32), _common())
        if not _may_clear(model, scorer, blank, seen, candidates, index):
            return Decision(None)
        signals = replace(blank, vector=embed([embedding_text(title, text)])[0])
    if signals is None:
        signals = signals_of(title, text, embed)
    if indexed or not candidates:
        known = {c.item_id for c in candidates}
        candidates += [c for c in index.nearest(signals.vector, since) if c.item_id not in known]
    # A story scores as its best item: its copies are compared one by one, and one close report
    # is enough (labeled sets: the mean over a story's items, or max and mean blended, lost
    # more recall on syndicated copies than they gained precision on independent ones).
    # The features of every candidate, then their probabilities in one product; a Match (its
    # parts and rounded features) is built only for the two that the Decision keeps.
    others = [(o.fp, o.signals, o.seen) for o in candidates]
    rows = candidate_features(scorer, signals, seen, others, index.df)
    best: dict[int, tuple[float, int]] = {}  # story -> (probability, candidate)
    for k, p in enumerate(model.probabilities(rows).tolist() if candidates else ()):
        story = candidates[k].story_id
        if story not in best or p > best[story][0]:
            best[story] = (p, k)
    ranked = sorted(best.values(), key=lambda pk: pk[0], reverse=True)

    def match(pk: tuple[float, int] | None) -> Match | None:
        return None if pk is None else _match(model, candidates[pk[1]], pk[0], rows[pk[1]])

    top = ranked[0] if ranked else None
    if top is not None and top[0] >= model.threshold:
        bridged = tuple(
            candidates[k].story_id
            for p, k in ranked[1:]
            if p >= model.threshold and _lone_headline(index, candidates[k].story_id)
        )
        rejected = next((pk for pk in ranked[1:] if pk[0] < model.threshold), None)
        return Decision(
            candidates[top[1]].story_id, match(top), match(rejected), signals, len(candidates), bridged
        )
    return Decision(None, None, match(top), signals, len(candidates))


def _lone_headline(index: StoryIndex, story_id: int) -> bool:
    """A story of one headline-only copy: too little text to have joined on its own."""
    items = index.story_items(story_id)
    return len(items) == 1 and items[0].signals.headline_only


def _match(model: StoryModel, other: Indexed, p: float, x: np.ndarray) -> Match:
    features = {n: round(v, 3) for n, v in zip(FEATURES, x.tolist(), strict=True)}
    return Match(other.item_id, other.story_id, round(p, 4), model.parts(x), features)


def _may_clear(
    model: StoryModel,
    scorer: Scorer,
    blank: Signals,
    seen: datetime,
    candidates: list[Indexed],
    index: StoryIndex,
) -> bool:
    """Whether some candidate could clear the threshold whatever the vectors say (a cosine is at
    most 1): ``blank``, the signals without the vector, are cheap, the vector is not."""
    semantic_max = abs(model.weights[SEMANTIC])
    bar = model.threshold_logit
    rows = candidate_features(scorer, blank, seen, [(o.fp, o.signals, o.seen) for o in candidates], index.df)
    return any(model.logit(x) + semantic_max >= bar for x in rows)


def describe(match: Match | None) -> str:
    """One line of `story ID --why`: the score and each feature's share of it."""
    if match is None:
        return "no candidate"
    parts = ", ".join(
        f"{name} {match.features[name]:g} ({share:+.2f})" for name, share in match.parts.items()
    )
    return f"P(same) {match.probability:.3f} vs item {match.item_id} (story {match.story_id}): {parts}"
