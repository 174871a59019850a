"""Compiling query words: one regex per distinct term or phrase (a leaf), and its prefilter triggers.

A ``Compiler`` shares one ``Leaf`` among every query compiled with it, so a term used by ten
watchlists is searched once per item. ``word_triggers`` says which text words every occurrence of a
query word begins with; the prefilter (bot/match/prefilter.py) and the full-text search
(bot/history.py) both narrow with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.match.fold import fold, fold_mapped, has_alnum
from bot.match.limits import MIN_WILDCARD_PREFIX
from bot.match.syntax import DEFAULT_FIELDS, FIELDS, Phrase, Term

_HYPHEN_GAP = r"(?:-|\s+)?"  # "deep-fake" also finds "deep fake" and "deepfake"
_ES_ENDINGS = ("s", "x", "z", "ch", "sh", "o")  # "matches", "boxes"; but "rap" must not find "rapes"
_VOWELS = frozenset("aeiou")
_PLAIN_WORD = re.compile(r"\w+")
# Frequent in news: a leaf triggered by these is a poor choice to decide whether an AND can match.
_COMMON_WORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or said says that the this to was "
    "were will with new year years people report government police online app apps image images video "
    "child children school women men ai data law court state world news after over".split()
)


def _word_parts(word: str, *, last: bool, exact: bool) -> tuple[list[str], str, str]:
    """Split a folded query word into (literal parts, tail suffix regex, form of the last part).

    ``form`` is "wild" (prefix), "ies" (consonant + y), "es", "s" or "" (no plural) and says which
    endings the last part takes; the regex and the prefilter triggers are both derived from it.
    """
    wildcard = word.endswith("*")
    parts = [part for part in word.removesuffix("*").split("-") if part]
    tail = parts[-1]
    if wildcard:
        return parts, r"\w*", "wild"
    if exact or not last or not tail[-1].isalpha():
        return parts, "", ""  # only a phrase's last word takes a plural; "2024" and =EXACT take none
    if len(tail) > 1 and tail[-1] == "y" and tail[-2] not in _VOWELS:
        parts[-1] = tail[:-1]
        return parts, "(?:y|ies)", "ies"
    if tail.endswith(_ES_ENDINGS):
        return parts, "(?:e?s)?", "es"
    return parts, "s?", "s"


def _word_regex(word: str, *, last: bool, exact: bool) -> tuple[str, str]:
    """(leading literal, rest of the regex) for one folded query word."""
    if not has_alnum(word):  # punctuation inside a phrase, matched as is
        return word, ""
    parts, suffix, _ = _word_parts(word, last=last, exact=exact)
    gap = "-" if exact else _HYPHEN_GAP  # an exact word is exact about its hyphens too
    rest = "".join(gap + re.escape(part) for part in parts[1:])
    # Possessive on any word ("children's agency"), included so the highlight covers "UNICEF's".
    return parts[0], rest + suffix + "(?:'s)?"


@dataclass(frozen=True)
class Triggers:
    """Necessary condition for a leaf: one of ``words`` is a word of the text, or one starts with one of
    ``prefixes``, or (when neither can be derived) ``substring`` occurs in the folded text."""

    words: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()
    substring: str = ""

    @property
    def cost(self) -> float:
        """Rough chance of firing on an unrelated item: short and common words fire often."""
        if self.substring:
            return 1.0

        def word_cost(word: str) -> float:
            return 1.0 if len(word) <= 2 or word in _COMMON_WORDS else 1.0 / (len(word) - 1)

        return sum(map(word_cost, self.words)) + 2 * sum(map(word_cost, self.prefixes))


def word_triggers(word: str, *, last: bool, exact: bool) -> Triggers | None:
    """The text words one of which every match of this folded query word begins with; None if unknown.

    The regex is ``part1 (gap part2 ...) suffix``, with gaps "-", whitespace or nothing: a match's first
    text word is part1, part1+part2, ..., or all parts joined plus one of the tail's endings.
    """
    if not has_alnum(word):
        return None
    parts, _, form = _word_parts(word, last=last, exact=exact)
    if not all(_PLAIN_WORD.fullmatch(part) for part in parts):
        return None  # "u.s.", "o'brien": the text's word split would not find them as one word
    if exact:
        # Gaps are always "-" and there is no plural: the first text word is part1 exactly, or, for a
        # one-part wildcard, a word starting with it.
        if len(parts) > 1 or form != "wild":
            return Triggers(words=frozenset(parts[:1]))
        return Triggers(prefixes=frozenset(parts)) if len(parts[0]) >= MIN_WILDCARD_PREFIX else None
    words = {"".join(parts[:k]) for k in range(1, len(parts))}
    joined = "".join(parts)
    if form == "wild":
        if len(joined) < MIN_WILDCARD_PREFIX:
            return None
        return Triggers(words=frozenset(words), prefixes=frozenset({joined}))
    endings = {"": ("",), "s": ("", "s"), "es": ("", "s", "es"), "ies": ("y", "ies")}[form]
    words.update(joined + ending for ending in endings)
    return Triggers(words=frozenset(words))


class Leaf:
    """One distinct term or phrase: its regex, the fields it searches and its prefilter triggers."""

    __slots__ = ("exact", "fields", "id", "literals", "regex", "triggers")

    def __init__(self, leaf_id: int, words: tuple[str, ...], *, exact: bool, fields: tuple[int, ...]):
        self.id = leaf_id
        self.exact = exact
        self.fields = fields
        lower = tuple(fold(word) for word in words)
        matched = tuple(fold_mapped(word, cased=True)[0] for word in words) if exact else lower
        pieces = [_word_regex(word, last=i == len(words) - 1, exact=exact) for i, word in enumerate(matched)]
        first, rest = pieces[0]
        # The leading literal comes first so that re's fast literal search skips to candidates; the
        # lookbehind after it then checks the word boundary before it ("csam" is not in "xcsam").
        # Unicode \w on both sides makes terms whole words: "ai" is not found in "said".
        pattern = re.escape(first) + rf"(?<!\w{re.escape(first)})" + rest
        pattern += "".join(r"\s+" + re.escape(literal) + regex for literal, regex in pieces[1:])
        self.regex = re.compile(pattern + r"(?!\w)")
        # Every match contains the lower-case form of each word's leading literal in the folded text, so a
        # field lacking one cannot match: a few C-level substring scans spare most regex runs. Longest
        # first, as long literals are the rare ones.
        last = len(lower) - 1
        literals = {_word_regex(word, last=i == last, exact=exact)[0] for i, word in enumerate(lower)}
        self.literals = tuple(sorted(literals, key=lambda literal: (-len(literal), literal)))
        candidates = [
            triggers
            for i, word in enumerate(lower)
            if (triggers := word_triggers(word, last=i == len(lower) - 1, exact=exact)) is not None
        ]
        if candidates:
            self.triggers = min(candidates, key=lambda t: t.cost)
        else:
            self.triggers = Triggers(substring=self.literals[0])


class Compiler:
    """Builds leaves, sharing one per distinct (regex, fields) across every query compiled with it."""

    def __init__(self) -> None:
        self.leaves: list[Leaf] = []
        self._by_key: dict[tuple[tuple[str, ...], bool, tuple[int, ...]], Leaf] = {}

    def leaf(self, node: Term | Phrase) -> Leaf:
        words = (node.word,) if isinstance(node, Term) else node.words
        exact = isinstance(node, Term) and node.exact
        fields = DEFAULT_FIELDS if node.field is None else (FIELDS.index(node.field),)
        # Query words that fold alike ("Deepfake", "deepfake") share a leaf; exact words keep their case.
        key_words = tuple(fold_mapped(w, cased=True)[0] if exact else fold(w) for w in words)
        key = (key_words, exact, fields)
        leaf = self._by_key.get(key)
        if leaf is None:
            leaf = Leaf(len(self.leaves), words, exact=exact, fields=fields)
            self.leaves.append(leaf)
            self._by_key[key] = leaf
        return leaf
