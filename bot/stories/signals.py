"""The evidence that two items report one event: named entities, figures, weighted word overlap,
the time between them and whether one is a headline-only copy (the vectors are in embed.py).

Each is a number per pair of items (`pair_features`, or `candidate_features` for all of a new
item's candidates at once), which the fitted model (model.py) weighs.
Entities and figures are read from the original text with light rules (capitalised names,
acronyms, app names; counts, amounts and percentages with their units), not a tagger: they are
looked at only for matched items and their candidates, so they must be cheap, not perfect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from bot.stories.fingerprint import Fingerprint, idf, tokens

# --- entities ------------------------------------------------------------------------------------

# A word that starts with a capital (names, places, organisations, "CrushAI"), or has one
# inside ("eSafety", "iPhone"). Apostrophes: "Meta's" is Meta.
_CAPITALISED = re.compile(r"(?<![\w'’])(?:[A-Z][\w&’'.-]*\w|[a-z]+[A-Z]\w*|[A-Z])")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\"“‘(]\s*|\s[-–—|]\s)$")
_SPAN_GAP = re.compile(r"^\s+(?:(?:of|de|for|and|the|&)\s+)?$")
TITLE_CASE = 0.6  # a headline with this share of its longer words capitalised is Title Case


def _is_acronym_or_camel(word: str) -> bool:
    return sum(c.isupper() for c in word) >= 2 or (not word[0].isupper() and any(c.isupper() for c in word))


def _capitalised(text: str, common: frozenset[str], *, title_case: bool) -> tuple[list[str], set[str]]:
    """Runs of capitalised words ("National Center for Missing", "Joy Timeline HK"), and the
    words that are capitalised only because they start a sentence (or a Title Case headline)."""
    spans: list[str] = []
    starts: set[str] = set()
    current: list[str] = []
    last_end = -1
    for match in _CAPITALISED.finditer(text):
        # "AI-generated": only the capitalised parts of a hyphenated word name something.
        word = "-".join(p for p in match.group().rstrip("'’.").split("-") if p != p.lower())
        if word.endswith(("'s", "’s")):
            word = word[:-2]
        if not word:
            continue
        weak = not _is_acronym_or_camel(word) and word.lower() in common
        if weak and (title_case or _starts_sentence(text, match.start())):
            starts.add(word)
            if current:
                spans.append(" ".join(current))
            current, last_end = [], -1
            continue
        if current and last_end >= 0 and _SPAN_GAP.match(text[last_end : match.start()]):
            current.append(word)
        else:
            if current:
                spans.append(" ".join(current))
            current = [word]
        last_end = match.end()
    if current:
        spans.append(" ".join(current))
    return spans, starts


def _starts_sentence(text: str, at: int) -> bool:
    """Whether ``text[:at]`` ends a sentence (_SENTENCE_START), read from its last characters:
    searching the whole of it for each word made reading a long lead quadratic. The pattern
    needs at most four characters and any whitespace before its end, so the last eight decide
    unless they are all whitespace."""
    tail = text[max(0, at - 8) : at]
    if at > 8 and not tail.strip():
        tail = text[:at]
    return _SENTENCE_START.search(tail) is not None


def _title_case(title: str) -> bool:
    words = [w for w in re.findall(r"[^\W\d_]+", title) if len(w) > 3]
    return len(words) >= 3 and sum(w[0].isupper() for w in words) >= TITLE_CASE * len(words)


def entities(title: str, text: str, common: frozenset[str] = frozenset()) -> frozenset[str]:
    """The tokens (fingerprint.tokens: folded, stemmed, synonyms unified) of the names an item cites.

    A capitalised word that starts a sentence (or is in a Title Case headline) is a name when
    it is not a ``common`` word ("Europol", "Kentucky"), when it is capitalised elsewhere in
    the item too, or when it starts both the headline and the lead ("Meta sues..." / "Meta on
    Thursday..."): a headline's subject is its lead's.
    """
    title_spans, title_starts = _capitalised(title, common, title_case=_title_case(title))
    lead_spans, lead_starts = _capitalised(text[:600], common, title_case=False)
    spans = title_spans + lead_spans
    named = {w for span in spans for w in span.split()}
    first = title.split()[:1], text.split()[:1]
    spans += [
        w for w in title_starts | lead_starts if w in named or (w,) == tuple(first[0]) == tuple(first[1])
    ]
    found: set[str] = set()
    for span in spans:
        found.update(tokens(span))
    return frozenset(t for t in found if not t[0].isdigit())


# --- figures -------------------------------------------------------------------------------------

_SCALE = {"t": 1e3, "k": 1e3, "m": 1e6, "b": 1e9}  # by first letter: thousand, k, million, mln, m, bn...
_WORDS = dict(
    zip(
        "two three four five six seven eight nine ten eleven twelve dozen thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty thirty forty fifty hundred".split(),
        [*range(2, 13), 12, *range(13, 21), 30, 40, 50, 100],
        strict=True,
    )
)
_FIGURE = re.compile(
    r"(?<![\w.,])(?:(?:A|US|C)?[$£€]\s?)?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|"
    + "|".join(_WORDS)
    + r")(?:\s*(thousand|million|mln|billion|bln|bn|[kmb]n?\b|m\b))?"
    + r"(\s*(?:%|per\s?cent\b|percent\b))?(?![\w])",
    re.IGNORECASE,
)
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
_MONTH = re.compile(rf"\b{_MONTHS}\.?\s*$|^\s*{_MONTHS}\b", re.IGNORECASE)
ROUNDED = 1000  # from here on, reporters round: "more than 33,000" is the 33,400 of another
AGREE = 0.12  # relative difference within which two figures are one ("1.8 million", "almost two million")


@dataclass(frozen=True, order=True)
class Figure:
    value: float
    percent: bool = False

    def __str__(self) -> str:
        return f"{self.value:g}{'%' if self.percent else ''}"

    @classmethod
    def parse(cls, text: str) -> Figure:
        return cls(float(text.rstrip("%")), text.endswith("%"))


def figures(title: str, text: str) -> frozenset[Figure]:
    """Counts, amounts and percentages: "1.2 million" = "1.2m" = "1,200,000"; years and dates are not."""
    found: set[Figure] = set()
    for part in (title, text[:600]):
        for match in _FIGURE.finditer(part):
            number, scale, percent = match.groups()
            word = _WORDS.get(number.lower())
            if word is not None:
                value = float(word)
            else:
                value = float(number.replace(",", ""))
                plain = scale is None and percent is None and "," not in number and "." not in number
                if plain and len(number) == 4 and number.startswith(("19", "20")):
                    continue  # a year says when, not what
                before, after = (
                    part[max(0, match.start() - 12) : match.start()],
                    part[match.end() : match.end() + 12],
                )
                if plain and value <= 31 and (_MONTH.search(before) or _MONTH.match(after)):
                    continue  # "Feb 5", "5 February"
            if scale:
                value *= _SCALE[scale[0].lower()]
            if value < 2 and not percent:
                continue  # "one", "1": no evidence
            found.add(Figure(value, percent is not None))
    return frozenset(found)


def _agree(a: Figure, b: Figure) -> bool:
    if a.percent != b.percent:
        return False
    if a.value < ROUNDED or b.value < ROUNDED:  # "27 years" and "32 years" are two cases
        return a.value == b.value
    return abs(a.value - b.value) <= AGREE * max(a.value, b.value)


# --- the weighted word overlap (today's lexical score) ---------------------------------------------

# Tuned on tests/data/stories/syndicated.toml when this score decided alone; it is now one
# feature of the fitted model, still scaled so that 1.0 is where syndicated copies begin.
SAME_TEXT = 0.36  # weighted Dice over headline + lead words, for two items with leads
SAME_HEADLINE = 0.35  # weighted Dice of headlines, when one item is headline-only


class Scorer:
    """The lexical similarity of one new item to many others, with IDF weights.

    The weights are the IDF of the new item's own tokens; any other token (a candidate's words
    the new item lacks) weighs as the rarest: a candidate that says much more than the new item
    is less likely the same story. So each token set's weight is its size times the rarest
    weight, less how much lighter than that its tokens shared with the new item are
    (``lighter``): per candidate, one set intersection and a sum over it.
    """

    def __init__(self, fp: Fingerprint, df: Mapping[str, int], total: int):
        self.fp = fp
        self.total = total
        self.rarest = rarest = idf(0, total)
        self.lighter = {t: rarest - idf(n, total) if (n := df.get(t, 0)) else 0.0 for t in fp.tokens}
        self.whole = self.weight(fp.tokens)
        self.whole_title = self.weight(fp.title)
        self._entity_weights: dict[str, float] = {}

    def weight(self, tokens: frozenset[str]) -> float:
        """The weight of some of the new item's tokens."""
        return len(tokens) * self.rarest - sum(map(self.lighter.__getitem__, tokens))

    def similarity(self, other: Fingerprint) -> float:
        fp, rarest, lighter = self.fp, self.rarest, self.lighter.__getitem__
        common = fp.tokens & other.tokens
        if not common:
            return 0.0
        if fp.lead and other.lead:
            less = sum(map(lighter, common))
            shared, theirs = len(common) * rarest - less, len(other.tokens) * rarest - less
            return 2 * shared / (self.whole + theirs) / SAME_TEXT
        common = fp.title & other.title  # a news-search headline: only headlines compare like with like
        if not common:
            return 0.0
        theirs = len(other.title) * rarest - sum(map(lighter, other.title & fp.tokens))
        return 2 * self.weight(common) / (self.whole_title + theirs) / SAME_HEADLINE

    def entity_weight(self, words: frozenset[str], df: Mapping[str, int]) -> float:
        """The IDF weight of some entities (df does not change while one new item is compared)."""
        weights, total = self._entity_weights, 0.0
        for w in words:
            if (found := weights.get(w)) is None:
                found = weights[w] = idf(df.get(w, 0), self.total)
            total += found
        return total

    def entity_agreement(
        self,
        mine: frozenset[str],
        theirs: frozenset[str],
        df: Mapping[str, int],
        mine_weight: float | None = None,
    ) -> float:
        """IDF-weighted Dice of two items' entities: sharing "Europol" and "Kidflix" is evidence,
        sharing only the "UK" of every UK story much less. ``mine_weight``: entity_weight(mine),
        the same for every candidate of one new item."""
        shared = mine & theirs
        if not shared:
            return 0.0
        if mine_weight is None:
            mine_weight = self.entity_weight(mine, df)
        return 2 * self.entity_weight(shared, df) / (mine_weight + self.entity_weight(theirs, df))


# --- one pair ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signals:
    """What the decision reads of one item besides its tokens (stored with its fingerprint)."""

    entities: frozenset[str]
    figures: frozenset[Figure]
    vector: np.ndarray  # unit length (embed.py); all zeros when it says nothing
    headline_only: bool


def read_signals(title: str, text: str, vector: np.ndarray, common: frozenset[str] = frozenset()) -> Signals:
    return Signals(entities(title, text, common), figures(title, text), vector, not text)


FEATURES = (
    "semantic",
    "entities",
    "entities_conflict",
    "figures_agree",
    "figures_conflict",
    "lexical",
    "hours",
    "aggregator",
)
LEXICAL_CAP = 3.0  # past three times the syndication bar a copy is a copy; the rest says nothing
HOURS_CAP = 72.0


def pair_features(
    scorer: Scorer,
    mine: Signals,
    seen: datetime,
    other_fp: Fingerprint,
    other: Signals,
    other_seen: datetime,
    df: Mapping[str, int],
) -> np.ndarray:
    """The FEATURES of the new item (``scorer.fp``, ``mine``) against an earlier one: the row of
    candidate_features for one candidate, so that one definition serves `story ID --why` too."""
    return candidate_features(scorer, mine, seen, [(other_fp, other, other_seen)], df)[0]


def candidate_features(
    scorer: Scorer,
    mine: Signals,
    seen: datetime,
    others: Sequence[tuple[Fingerprint, Signals, datetime]],
    df: Mapping[str, int],
) -> np.ndarray:
    """The FEATURES of the new item against each earlier one of ``others`` (fingerprint, signals,
    time), a row each: what the new item's side of a pair costs is paid once, and the rows make
    one array instead of one per candidate.

    The cosine stays one dot per candidate: a matrix-vector product of the candidates' float32
    vectors sums in another order (it changed the last bit of most cosines, measured), and the
    decisions must not depend on how many candidates were scored together.
    """
    vector, entities, figures, headline_only = mine.vector, mine.entities, mine.figures, mine.headline_only
    mine_weight = scorer.entity_weight(entities, df) if entities else 0.0
    similarity, agreement = scorer.similarity, scorer.entity_agreement
    rows = []
    # Copies of one story cite the same figures: each set of them is compared with the new item's once.
    agreed: dict[frozenset[Figure], bool] = {}
    for other_fp, other, other_seen in others:
        both = bool(figures and other.figures)
        if not both:
            agree = False
        elif (agree := agreed.get(other.figures)) is None:
            # A figure both cite agrees with itself: the pairs are compared only when none is shared.
            agree = agreed[other.figures] = not figures.isdisjoint(other.figures) or any(
                _agree(a, b) for a in figures for b in other.figures
            )
        conflict = both and not agree
        hours = min(abs((seen - other_seen).total_seconds()) / 3600, HOURS_CAP)
        entity = agreement(entities, other.entities, df, mine_weight)
        rows.append(
            [
                float(vector.dot(other.vector)),  # the same BLAS dot as @, without matmul's overhead
                entity,
                float(bool(entities and other.entities) and not entity),  # "Ohio man" / "Phoenix man"
                float(agree),
                float(conflict),
                min(similarity(other_fp), LEXICAL_CAP),
                hours / 24,
                float(headline_only or other.headline_only),
            ]
        )
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
