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
from functools import cached_property, lru_cache

import snowballstemmer

LEAD_TOKENS = 40  # the lead's first words carry the event; the rest is background
CANDIDATE_TOKENS = 8  # rarest tokens used to look up candidates

# Prefixes that wires and desks add to a headline without changing the story.
_PREFIX = re.compile(
    r"^\s*(?:(?:update|updated|corrected|refile|rpt)\s*\d*|exclusive|breaking(?:\s+news)?|analysis|"
    r"watch|live|explainer|factbox|opinion|video|in pictures|just in|new)\s*[-:–—|]\s*",
    re.IGNORECASE,
)
_WORD = re.compile(r"\d+(?:[.,]\d+)*[mn]?b?n?|[^\W\d_]+")
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
yesterday tomorrow monday tuesday wednesday thursday friday saturday sunday mr mrs ms dr us
""".split()
)

_stemmer = snowballstemmer.stemmer("english")


@dataclass(frozen=True)
class Fingerprint:
    title: frozenset[str]
    lead: frozenset[str]

    @cached_property
    def tokens(self) -> frozenset[str]:
        return self.title | self.lead

    @cached_property
    def numbers(self) -> frozenset[str]:
        # Years say when, not what: "2025" in two different annual reports is no evidence.
        return frozenset(
            t for t in self.tokens if t[0].isdigit() and not (len(t) == 4 and t.startswith(("19", "20")))
        )


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


# Ways reporters write the same thing: folded to one token before comparing, so that "AI" and
# "artificial intelligence", or "CSAM" and "child sexual abuse images", count as shared words.
_I = re.IGNORECASE
_CANONICAL = [
    (re.compile(r"\bartificial[\s-]+intelligence\b", _I), " ai "),
    (
        re.compile(
            r"\b(?:child(?:ren)?(?:'s)?[\s-]+(?:sexual[\s-]+)?(?:abuse|exploitation)[\s-]+"
            r"(?:material|image|imagery|content|video|picture)s?|csam|csem|csea)\b",
            _I,
        ),
        " csam ",
    ),
    (re.compile(r"\bdeep[\s-]+fakes?\b", _I), " deepfake "),
    # Acronyms only in capitals: "US" the country, not "us"; "UN", not "un".
    (re.compile(r"\b(?:U\.S\.A?|USA|US)(?=\W|$)|\bUnited\s+States(?:\s+of\s+America)?\b"), " usa "),
    (re.compile(r"\b(?:U\.K\.|UK)(?=\W|$)|\b(?:United\s+Kingdom|Britain|British)\b"), " uk "),
    (re.compile(r"\bEU\b|\bEuropean\s+Union\b"), " eu "),
    (re.compile(r"\bUN\b|\bUnited\s+Nations\b"), " un "),
    (re.compile(r"(\d+(?:\.\d+)?)\s*(?:million|mln|m)\b", _I), r" \1m "),
    (re.compile(r"(\d+(?:\.\d+)?)\s*(?:billion|bln|bn)\b", _I), r" \1bn "),
    (re.compile(r"(?<=\d),(?=\d{3}\b)"), ""),
]


def canonical(text: str) -> str:
    for pattern, replacement in _CANONICAL:
        text = pattern.sub(replacement, text)
    return text


def tokens(text: str, limit: int | None = None) -> list[str]:
    out: list[str] = []
    for word in _WORD.findall(_fold(canonical(text))):
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


# Tuned on tests/data/stories/syndicated.toml and checked on independent.toml (precision must
# hold on both); tests/test_stories.py prints the figures. A score of 1.0 is the bar.
SAME_TEXT = 0.36  # weighted Dice over headline + lead words, for two items with leads
SAME_HEADLINE = 0.35  # weighted Dice of headlines, when one item is headline-only
HEADLINE_COVER = 0.55  # share of a headline-only item's words found in the story's words
NUMBER_CONFLICT = 0.6  # both cite figures, none in common: "35 years" vs "20 years" is another case


class _Weights(dict[str, float]):
    """Token weights (1.0 when unknown), and the weight of each token set, computed once.

    best_match() compares one item with ~30 others, so the same sums would otherwise be
    recomputed per pair; this is the clustering's inner loop.
    """

    def __init__(
        self, weights: Mapping[str, float] = (), *, df: Mapping[str, int] | None = None, total: int = 0
    ):
        super().__init__(weights)
        self.sums: dict[frozenset[str], float] = {}
        self.df, self.n = df, total

    def __missing__(self, token: str) -> float:
        # With document frequencies: the token's IDF, computed on first use; without: 1.0.
        if self.df is None:
            return 1.0
        weight = self[token] = idf(self.df.get(token, 0), self.n)
        return weight

    def total(self, tokens: frozenset[str]) -> float:
        found = self.sums.get(tokens)
        if found is None:
            found = self.sums[tokens] = sum(map(self.__getitem__, tokens))
        return found


def _weighted_dice(a: frozenset[str], b: frozenset[str], weight: _Weights) -> float:
    if not a or not b:
        return 0.0
    shared = sum(map(weight.__getitem__, a & b))
    return 2 * shared / (weight.total(a) + weight.total(b)) if shared else 0.0


def similarity(a: Fingerprint, b: Fingerprint, weight: Mapping[str, float]) -> float:
    """How strongly two items look like the same event; 1.0 or more means they are."""
    if not isinstance(weight, _Weights):
        weight = _Weights(weight)
    if not a.tokens & b.tokens:
        return 0.0
    if a.lead and b.lead:
        score = _weighted_dice(a.tokens, b.tokens, weight) / SAME_TEXT
    else:  # a news-search headline: only headlines compare like with like
        score = _weighted_dice(a.title, b.title, weight) / SAME_HEADLINE
    if a.numbers and b.numbers and not a.numbers & b.numbers:
        score *= NUMBER_CONFLICT
    return score


def headline_cover(
    headline: frozenset[str], story_words: frozenset[str], weight: Mapping[str, float]
) -> float:
    """For a headline-only item: how much of its headline the story's items already say (1.0 = enough)."""
    if len(headline) < 3:  # two words in common is coincidence
        return 0.0
    if not isinstance(weight, _Weights):
        weight = _Weights(weight)
    return sum(map(weight.__getitem__, headline & story_words)) / weight.total(headline) / HEADLINE_COVER


def candidate_tokens(fp: Fingerprint, df: Mapping[str, int]) -> list[str]:
    """The item's rarest tokens that some earlier item has: a near-duplicate shares some of them.

    Tokens no earlier item has (df 0) cannot find anything, and the commonest ones would
    return half the window, so the lookup uses the rarest of the rest.
    """
    seen_before = [t for t in fp.tokens if df.get(t, 0) > 0]
    return sorted(seen_before, key=lambda t: (df[t], t))[:CANDIDATE_TOKENS]


def best_match(
    fp: Fingerprint,
    candidates: Iterable[tuple[int, Fingerprint]],
    df: Mapping[str, int],
    total: int,
) -> tuple[int, float] | None:
    """(story id, score) of the story the item most looks like, if it clears the bar, else None."""
    weight = _Weights(df=df, total=total)
    best: dict[int, float] = {}
    words: dict[int, set[str]] = {}
    for story_id, other in candidates:
        best[story_id] = max(best.get(story_id, 0.0), similarity(fp, other, weight))
        if not fp.lead:
            words.setdefault(story_id, set()).update(other.tokens)
    if not fp.lead:
        # A headline-only copy often rewrites one outlet's headline with another's lead words.
        for story_id, story_words in words.items():
            best[story_id] = max(best[story_id], headline_cover(fp.title, frozenset(story_words), weight))
    story_id, score = max(best.items(), key=lambda kv: kv[1], default=(0, 0.0))
    return (story_id, score) if score >= 1.0 else None
