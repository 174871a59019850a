"""Stories: near-duplicate and syndicated coverage of one event, folded together.

A wire story appears on dozens of sites within hours, each with its own URL and a slightly
different headline. Each item is reduced to a *fingerprint* (stemmed content words of the
headline and of the lead), and joins the story of the most similar recent item when the
similarity clears a threshold tuned on the labeled set in tests/data/stories/.

Similarity is IDF-weighted: sharing "UNICEF" and "1.2 million" says far more than sharing
"children" and "online", which every item on these watchlists shares. The candidates come
from an inverted index of the item's rarest tokens over the time window (kept in SQLite by
store.py), so clustering never scans history and costs the same at 10k or 10M items.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

LEAD_TOKENS = 40  # the lead's first words carry the event; the rest is background
CANDIDATE_TOKENS = 8  # rarest tokens used to look up candidates
THRESHOLD = 0.5  # tuned on tests/data/stories (see tests/test_stories.py for the figures)

# Prefixes that wires and desks add to a headline without changing the story.
_PREFIX = re.compile(
    r"^\s*(?:(?:update|updated|corrected|refile|rpt)\s*\d*|exclusive|breaking(?:\s+news)?|analysis|"
    r"watch|live|explainer|factbox|opinion|video|in pictures|just in|new)\s*[-:–—|]\s*",
    re.IGNORECASE,
)
_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
_BRITISH = ((re.compile(r"is(e|es|ed|ing|ation|ations)$"), r"iz\1"), (re.compile(r"our$"), "or"))

# Function words and newsroom filler: they say nothing about which event a headline reports.
STOPWORDS = frozenset(
    """
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has
have having he her here hers him his how i if in into is it its itself just me more most my no nor
not now of off on once only or other our out over own same she should so some such than that the
their them then there these they this those through to too under until up very was we were what
when where which while who whom why will with would you your says said say saying told tells tell
new news report reports reported amid over after latest update updates via according week today
yesterday tomorrow monday tuesday wednesday thursday friday saturday sunday mr mrs ms dr us its
""".split()
)

_stemmer = snowballstemmer.stemmer("english")


@dataclass(frozen=True)
class Fingerprint:
    title: frozenset[str]
    lead: frozenset[str]

    @property
    def tokens(self) -> frozenset[str]:
        return self.title | self.lead


def clean_headline(title: str) -> str:
    """The headline without desk prefixes ("UPDATE 2-", "EXCLUSIVE:")."""
    previous = None
    while previous != title:
        previous, title = title, _PREFIX.sub("", title, count=1)
    return title


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    for pattern, replacement in _BRITISH:
        word = pattern.sub(replacement, word)
    return _stemmer.stemWord(word)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokens(text: str, limit: int | None = None) -> list[str]:
    out: list[str] = []
    for word in _WORD.findall(_fold(text)):
        if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        out.append(word if word[0].isdigit() else _stem(word))
        if limit is not None and len(out) >= limit:
            break
    return out


def fingerprint(title: str, text: str) -> Fingerprint:
    return Fingerprint(frozenset(tokens(clean_headline(title))), frozenset(tokens(text, LEAD_TOKENS)))


def idf(df: int, total: int) -> float:
    """Smoothed inverse document frequency: a token in every item weighs ~1, a unique one ~log(N)."""
    return math.log((total + 1) / (df + 1)) + 1.0


def _weighted_dice(a: frozenset[str], b: frozenset[str], weight: Mapping[str, float]) -> float:
    if not a or not b:
        return 0.0
    shared = sum(weight.get(t, 1.0) for t in a & b)
    return 2 * shared / (sum(weight.get(t, 1.0) for t in a) + sum(weight.get(t, 1.0) for t in b))


def _weighted_containment(a: frozenset[str], b: frozenset[str], weight: Mapping[str, float]) -> float:
    """How much of the shorter set is in the longer: a terse wire headline inside a long one."""
    if not a or not b:
        return 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    if len(small) < 4:  # three words in common is coincidence, not containment
        return 0.0
    return sum(weight.get(t, 1.0) for t in small & large) / sum(weight.get(t, 1.0) for t in small)


def similarity(a: Fingerprint, b: Fingerprint, weight: Mapping[str, float]) -> float:
    """0..1: how likely two items report the same event."""
    title = max(
        _weighted_dice(a.title, b.title, weight), 0.9 * _weighted_containment(a.title, b.title, weight)
    )
    if a.lead and b.lead:
        lead = _weighted_dice(a.lead, b.lead, weight)
        everything = _weighted_dice(a.tokens, b.tokens, weight)
        return max(title * 0.6 + lead * 0.4, everything, title * 0.9)
    # Headline-only items (news-search aggregators) have nothing else to go on; their headline
    # is compared with the other item's headline and lead, since a rewritten headline often
    # keeps the lead's words.
    other = b if not b.lead else a
    only = a if other is b else b
    return max(title, _weighted_dice(only.title, other.tokens, weight) * 0.9)


def candidate_tokens(fp: Fingerprint, df: Mapping[str, int]) -> list[str]:
    """The rarest tokens of an item: any near-duplicate shares at least one of them."""
    return sorted(fp.tokens, key=lambda t: (df.get(t, 0), t))[:CANDIDATE_TOKENS]


def best_match(
    fp: Fingerprint,
    candidates: Iterable[tuple[int, Fingerprint]],
    df: Mapping[str, int],
    total: int,
) -> tuple[int, float] | None:
    """(story id, score) of the most similar candidate at or above THRESHOLD, else None."""
    weight = {t: idf(df.get(t, 0), total) for t in fp.tokens}
    best: tuple[int, float] | None = None
    for story_id, other in candidates:
        for t in other.tokens - weight.keys():
            weight[t] = idf(df.get(t, 0), total)
        score = similarity(fp, other, weight)
        if score >= THRESHOLD and (best is None or score > best[1]):
            best = (story_id, score)
    return best
