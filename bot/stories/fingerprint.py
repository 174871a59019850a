"""Stories: near-duplicate and syndicated coverage of one event, folded together.

A wire story appears on dozens of sites within hours, each with its own URL and a slightly
different headline. Each item is reduced to a *fingerprint* (stemmed content words of the
headline and of the lead), and joins the story of the most similar recent item when the
similarity clears a threshold tuned on the labeled set in tests/data/stories/.

Similarity is IDF-weighted: sharing "UNICEF" and "1.2 million" says far more than sharing
"children" and "online", which every item on these watchlists shares. The candidates come
from an inverted index of the item's rarest tokens over the time window (StoryIndex, in memory;
store.py keeps the fingerprints and the document frequencies in SQLite), so clustering never
scans history and costs the same at 10k or 10M items.
"""

from __future__ import annotations

import heapq
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from operator import itemgetter

import snowballstemmer

LEAD_TOKENS = 40  # the lead's first words carry the event; the rest is background
CANDIDATE_TOKENS = 8  # rarest tokens used to look up candidates
COMMON_SHARE = 0.2  # a token in more than this share of the indexed items finds no candidates

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
    while match := _PREFIX.match(title):
        title = title[match.end() :]
    return title


def _stem(word: str) -> str:
    for pattern, replacement in _BRITISH:
        word = pattern.sub(replacement, word)
    return _stemmer.stemWord(word)


# Word -> its token, or "" for a word that is dropped (a stem is never empty). A first poll
# tokenizes tens of thousands of items, and stemming is pure Python unless PyStemmer is
# installed; a plain dict is cheaper than lru_cache, and clearing it when full keeps it bounded.
_TOKENS: dict[str, str] = {}
_TOKENS_MAX = 1 << 17


def _token(word: str) -> str:
    if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
        token = ""
    else:
        token = word if word[0].isdigit() else _stem(word)
    if len(_TOKENS) >= _TOKENS_MAX:
        _TOKENS.clear()
    _TOKENS[word] = token
    return token


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _fold(text: str) -> str:
    folded = text.casefold()
    if folded.isascii():  # NFKD changes no ASCII character, and most news text is ASCII
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    # One str.replace per distinct combining mark: a per-character loop in Python was the
    # costliest step of a fingerprint.
    for char in set(_NON_ASCII.findall(decomposed)):
        if unicodedata.combining(char):
            decomposed = decomposed.replace(char, "")
    return decomposed


# Ways reporters write the same thing: folded to one token before comparing, so that "AI" and
# "artificial intelligence", or "CSAM" and "child sexual abuse images", count as shared words.
#
# Most texts match none of the patterns, and a substring test is much cheaper than a regex scan,
# so each pattern comes with strings it cannot match without (None: it needs a digit). They are looked for
# in the case-folded text when the pattern ignores case, and contain no "i": such a pattern's "i"
# also matches "ı", and "İ", which case-folds to two characters ("K" and "ſ", the only other
# non-ASCII matches of ASCII letters, case-fold to "k" and "s").
_I = re.IGNORECASE
_CANONICAL: list[tuple[re.Pattern[str], str, tuple[str, ...] | None]] = [
    (re.compile(r"\bartificial[\s-]+intelligence\b", _I), " ai ", ("ntell",)),
    (
        re.compile(
            r"\b(?:child(?:ren)?(?:'s)?[\s-]+(?:sexual[\s-]+)?(?:abuse|exploitation)[\s-]+"
            r"(?:material|image|imagery|content|video|picture)s?|csam|csem|csea)\b",
            _I,
        ),
        " csam ",
        ("abuse", "xplo", "csam", "csem", "csea"),
    ),
    (re.compile(r"\bdeep[\s-]+fakes?\b", _I), " deepfake ", ("deep",)),
    # Acronyms only in capitals: "US" the country, not "us"; "UN", not "un".
    (
        re.compile(r"\b(?:U\.S\.A?|USA|US)(?=\W|$)|\bUnited\s+States(?:\s+of\s+America)?\b"),
        " usa ",
        ("US", "U.S.", "United"),
    ),
    (
        re.compile(r"\b(?:U\.K\.|UK)(?=\W|$)|\b(?:United\s+Kingdom|Britain|British)\b"),
        " uk ",
        ("UK", "U.K.", "United", "Brit"),
    ),
    (re.compile(r"\bEU\b|\bEuropean\s+Union\b"), " eu ", ("EU", "European")),
    (re.compile(r"\bUN\b|\bUnited\s+Nations\b"), " un ", ("UN", "United")),
    (re.compile(r"(\d+(?:\.\d+)?)\s*(?:million|mln|m)\b", _I), r" \1m ", None),
    (re.compile(r"(\d+(?:\.\d+)?)\s*(?:billion|bln|bn)\b", _I), r" \1bn ", None),
    (re.compile(r"(?<=\d),(?=\d{3}\b)"), "", None),
]
_DIGIT = re.compile(r"\d")
_IGNORECASE = int(re.IGNORECASE)  # "&" with the RegexFlag itself goes through the enum module


def canonical(text: str) -> str:
    folded = text.casefold()
    # Replacements add no digit that was not there already.
    has_digit = _DIGIT.search(text) is not None
    for pattern, replacement, needs in _CANONICAL:
        if needs is None:
            if not has_digit:
                continue
        else:
            haystack = folded if pattern.flags & _IGNORECASE else text
            if not any(part in haystack for part in needs):
                continue
        text, count = pattern.subn(replacement, text)
        if count:
            folded = text.casefold()
    return text


# A limited number of tokens comes from the first sentences, so a long text (a full article) is
# tokenized a piece at a time until there are enough. A piece ends at a full stop that follows a
# lower-case letter and precedes a space: no pattern in _CANONICAL and no _WORD runs across it,
# and replacements leave it alone, so the pieces give the same tokens as the whole text.
_PIECE = 600
_PIECE_END = re.compile(r"[a-z]\.(?= )")


def _pieces(text: str) -> Iterable[str]:
    start = 0
    while end := _PIECE_END.search(text, start + _PIECE):
        yield text[start : end.end()]
        start = end.end()
    yield text[start:]


def tokens(text: str, limit: int | None = None) -> list[str]:
    out: list[str] = []
    for piece in (text,) if limit is None else _pieces(text):
        for word in _WORD.findall(_fold(canonical(piece))):
            token = _TOKENS.get(word)
            if token is None:
                token = _token(word)
            if token:
                out.append(token)
                if limit is not None and len(out) >= limit:
                    return out
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


def similarity(a: Fingerprint, b: Fingerprint, df: Mapping[str, int], total: int) -> float:
    """How strongly two items look like the same event; 1.0 or more means they are.

    ``df`` and ``total``: the document frequencies and the N of the IDF weights (with none,
    every word weighs the same).
    """
    return _Scorer(a, df, total).similarity(b)


class _Scorer:
    """The similarity of one new item to many others, and a headline's cover, with IDF weights.

    The weights are the IDF of the new item's own tokens; any other token (a candidate's words
    the new item lacks) weighs as the rarest, which is what the thresholds were tuned with: a
    candidate that says much more than the new item is less likely the same story. So each
    token set's weight is its size times the rarest weight, less how much lighter than that its
    tokens shared with the new item are (``lighter``): per candidate, one set intersection and a
    sum over it, instead of a lookup per word. This is the clustering's inner loop.
    """

    def __init__(self, fp: Fingerprint, df: Mapping[str, int], total: int):
        self.fp = fp
        self.rarest = rarest = idf(0, total)
        self.lighter = {t: rarest - idf(n, total) if (n := df.get(t, 0)) else 0.0 for t in fp.tokens}
        self.whole = self.weight(fp.tokens)
        self.whole_title = self.weight(fp.title)

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
            score = 2 * shared / (self.whole + theirs) / SAME_TEXT
        else:  # a news-search headline: only headlines compare like with like
            common = fp.title & other.title
            if not common:
                return 0.0
            theirs = len(other.title) * rarest - sum(map(lighter, other.title & fp.tokens))
            score = 2 * self.weight(common) / (self.whole_title + theirs) / SAME_HEADLINE
        if fp.numbers and other.numbers and not fp.numbers & other.numbers:
            score *= NUMBER_CONFLICT
        return score

    def headline_cover(self, story_words: frozenset[str]) -> float:
        if len(self.fp.title) < 3:  # two words in common is coincidence
            return 0.0
        return self.weight(self.fp.title & story_words) / self.whole_title / HEADLINE_COVER


def candidate_tokens(fp: Fingerprint, df: Mapping[str, int], total: int | None = None) -> list[str]:
    """The item's rarest tokens that some earlier item has: a near-duplicate shares some of them.

    Tokens no earlier item has (df 0) cannot find anything, and the commonest ones would
    return half the window, so the lookup uses the rarest of the rest. Given ``total``, tokens
    in more than COMMON_SHARE of the items are not used at all: an item that shares only such
    words with the index has no copy in it (on both labeled sets, the same precision and recall
    as without the limit), and looking its candidates up would be most of a poll's clustering.
    """
    most = math.inf if total is None else max(3, COMMON_SHARE * total)
    rarest = heapq.nsmallest(CANDIDATE_TOKENS, [(n, t) for t in fp.tokens if 0 < (n := df.get(t, 0)) <= most])
    return [t for _, t in rarest]


def best_match(
    fp: Fingerprint,
    candidates: Iterable[tuple[int, Fingerprint]],
    df: Mapping[str, int],
    total: int,
) -> tuple[int, float] | None:
    """(story id, score) of the story the item most looks like, if it clears the bar, else None.

    ``df``: document frequencies (of fp's tokens; others are not used), ``total``: the N of IDF.
    """
    return _best_of(_Scorer(fp, df, total), candidates)


def _best_of(scorer: _Scorer, candidates: Iterable[tuple[int, Fingerprint]]) -> tuple[int, float] | None:
    fp = scorer.fp
    best: dict[int, float] = {}
    words: dict[int, set[str]] = {}
    for story_id, other in candidates:
        best[story_id] = max(best.get(story_id, 0.0), scorer.similarity(other))
        if not fp.lead:
            words.setdefault(story_id, set()).update(other.tokens)
    if not fp.lead:
        # A headline-only copy often rewrites one outlet's headline with another's lead words.
        for story_id, story_words in words.items():
            best[story_id] = max(best[story_id], scorer.headline_cover(frozenset(story_words)))
    story_id, score = max(best.items(), key=lambda kv: kv[1], default=(0, 0.0))
    return (story_id, score) if score >= 1.0 else None


POSTINGS_PER_TOKEN = 200  # candidate lookup: the most recent items per token
# Items compared in full with a new one, those sharing the most of its rarest tokens. On both
# labeled sets, 10 gives the same precision and recall as 30 (5 loses some): a copy of a story
# shares its names and figures, so it ranks near the top.
CANDIDATES = 10


class StoryIndex:
    """The fingerprints of the items seen within the story window, and an inverted index of them.

    Kept in memory (store.py loads it from the fingerprints table and keeps it in step with what
    it writes): looking up a new item's candidates is then a few dictionary reads instead of a
    query, which matters because every new item of a poll is looked up, indexed or not.

    Items are added in the order they are seen, so each token's postings are oldest first.
    ``df`` and ``total`` are the document frequencies of the IDF weights, over every indexed item
    ever (not only the window): a token's rarity is a property of the language of the news.
    """

    def __init__(self, df: Mapping[str, int] | None = None, total: int = 0):
        self.df: dict[str, int] = dict(df or {})
        self.total = total
        self._postings: dict[str, list[int]] = {}
        self._prints: dict[int, tuple[int, datetime, Fingerprint]] = {}
        self._added = 0  # since the last look for items that left the window

    def __len__(self) -> int:
        return len(self._prints)

    def add(
        self, item_id: int, story_id: int, seen: datetime, fp: Fingerprint, *, count: bool = True
    ) -> None:
        """Index an item; ``count`` adds it to the document frequencies (False when loading)."""
        self._prints[item_id] = (story_id, seen, fp)
        self._added += 1
        for token in fp.tokens:
            self._postings.setdefault(token, []).append(item_id)
            if count:
                self.df[token] = self.df.get(token, 0) + 1
        if count:
            self.total += 1

    def candidates(
        self, fp: Fingerprint, since: datetime, limit: int = CANDIDATES
    ) -> list[tuple[int, Fingerprint]]:
        """(story id, fingerprint) of the items seen since ``since`` sharing most of fp's rare tokens.

        Each token contributes its most recent postings only: a token shared by thousands of
        items would otherwise make every lookup scan them all. Syndicated copies are recent.
        """
        self._forget_before(since)
        prints = self._prints
        shared: Counter[int] = Counter()
        for token in candidate_tokens(fp, self.df, self.total):
            recent = self._postings.get(token, [])[-POSTINGS_PER_TOKEN:]
            if recent and prints[recent[0]][1] < since:  # some have left the window
                recent = [i for i in recent if prints[i][1] >= since]
            shared.update(recent)
        # Most shared tokens first, then the most recent (the highest id). Most of the items
        # share one token: sorting only those that can make the cut is what keeps this cheap.
        counted: Iterable[tuple[int, int]] = shared.items()
        if len(shared) > limit:
            cut = sorted(shared.values(), reverse=True)[limit - 1]
            counted = [(i, n) for i, n in counted if n >= cut]
        ranked = sorted(counted, key=itemgetter(1, 0), reverse=True)[:limit]
        return [(prints[i][0], prints[i][2]) for i, _ in ranked]

    def find(self, fp: Fingerprint, since: datetime) -> tuple[int, float] | None:
        """(story id, score) of the story seen since ``since`` that the item belongs to, if any."""
        if not self._prints:
            return None
        scorer = _Scorer(fp, self.df, self.total)
        if not self._may_match(scorer):
            return None
        return _best_of(scorer, self.candidates(fp, since))

    def _may_match(self, scorer: _Scorer) -> bool:
        """False when no indexed item can be similar enough, whatever it says: a cheap test that
        spares the items about nothing any indexed story is about the full comparison.

        A weighted Dice of S / (W(a) + W(b)) * 2 can only reach the bar T when the weight S of
        the words a shares with b is at least T / (2 - T) of a's weight W(a), since W(b) >= S;
        and a can only share the words that some indexed item has. The same holds for the
        headline comparisons (SAME_HEADLINE, HEADLINE_COVER is stricter) over the headline.
        """
        indexed = self._postings  # every token of an item still in memory (a superset: sound)
        fp = scorer.fp

        def shared_enough(tokens: frozenset[str], whole: float, bar: float) -> bool:
            shared = scorer.weight(frozenset(t for t in tokens if t in indexed))
            # The margin keeps rounding from ever deciding what the exact comparison would not.
            return whole > 0 and shared >= bar / (2 - bar) * whole * 0.999

        if fp.lead and shared_enough(fp.tokens, scorer.whole, SAME_TEXT):
            return True
        return shared_enough(fp.title, scorer.whole_title, min(SAME_HEADLINE, HEADLINE_COVER))

    def _forget_before(self, since: datetime) -> None:
        # Dropping what left the window keeps memory flat in a long-running bot. It is a full
        # rebuild, so it runs at most once per thousand items added.
        if self._added < 1000:
            return
        self._added = 0
        kept = {i: p for i, p in self._prints.items() if p[1] >= since}
        if len(kept) == len(self._prints):
            return
        self._prints = kept
        self._postings = {}
        for item_id, (_, _, fp) in kept.items():
            for token in fp.tokens:
                self._postings.setdefault(token, []).append(item_id)
