"""An item's fingerprint: the stemmed content words of its headline and of its lead, with the
spellings and synonyms reporters vary folded together, and the rarest of them to look it up by.

Fingerprints are computed for every item of a poll (in the prepare pool), so this is the cheap
part of the story decision; signals.py, embed.py and model.py do the rest for the few items
that need it.
"""

from __future__ import annotations

import heapq
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

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
