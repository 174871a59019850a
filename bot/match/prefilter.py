"""The prefilter: which leaves of many watchlists could occur in an item, found by one regex scan.

Most news items contain none of the trigger words (bot/match/compile.py, ``Triggers``), so for most
items matching costs a fold and this one scan; only the leaves it names run their regexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from bot.match.compile import Leaf
from bot.match.fold import Field, spaced
from bot.match.limits import MIN_WILDCARD_PREFIX

_Trie = dict[str, "_Trie"]
# Trie keys for "a trigger word ends here" and "any word continuing from here": never characters of a
# trigger, which are all word characters.
_WORD_END = ""
_STEM_END = "*"


def _trie_regex(words: Iterable[str], stems: Iterable[str]) -> re.Pattern[str]:
    """A regex for " WORD " or " STEM..." in space-separated words; group 1 is the whole text word.

    re tries alternatives one by one, so common beginnings are factored out: at each text word it then
    compares about one letter per distinct first letter instead of one per trigger. The trie is as deep
    as the longest trigger word, so it is turned into a pattern without recursion, deepest nodes first.
    """
    trie: _Trie = {}
    for key, end in sorted([(word, _WORD_END) for word in words] + [(stem, _STEM_END) for stem in stems]):
        node = trie
        for char in key:
            node = node.setdefault(char, {})
        node[end] = {}
    below: list[_Trie] = []  # every node whose pattern depends on its children, parents before children
    stack = [trie]
    while stack:
        node = stack.pop()
        if _STEM_END not in node:
            below.append(node)
            stack.extend(child for char, child in node.items() if char != _WORD_END)
    patterns: dict[int, str] = {}  # id(node) -> its pattern
    for node in reversed(below):
        # A stem ends here: any continuation matches, including the longer trigger words below it.
        alternatives = [
            re.escape(char) + patterns.get(id(child), "") for char, child in node.items() if char != _WORD_END
        ]
        if _WORD_END in node:
            alternatives.append("(?= )")
        patterns[id(node)] = alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"
    return re.compile(rf" ({patterns.get(id(trie), '')}\w*)")


class Index:
    """Trigger words of many leaves, found in an item by one regex scan over its words.

    Splitting an item into words costs a string object per word, and nearly every word triggers
    nothing. Instead a trie regex of the trigger words and of the first 3 characters of each wildcard
    prefix runs over the words joined by spaces and stops only at a word that may trigger. A stop at a
    prefix's first 3 characters is not yet a trigger ("china" for child*), so such a word is checked
    against the prefixes once and the answer remembered: news vocabulary is finite.
    """

    MAX_LEARNED = 200_000  # words remembered per kind before starting over (bounds memory)

    def __init__(self, leaves: Sequence[Leaf]):
        words: dict[str, list[int]] = {}
        self.prefixes: dict[str, list[tuple[str, int]]] = {}
        self.substrings: list[tuple[str, int]] = []
        for leaf in leaves:
            triggers = leaf.triggers
            for word in triggers.words:
                words.setdefault(word, []).append(leaf.id)
            for prefix in triggers.prefixes:  # keyed by the first 3 characters; every prefix has 3+
                self.prefixes.setdefault(prefix[:MIN_WILDCARD_PREFIX], []).append((prefix, leaf.id))
            if triggers.substring:
                self.substrings.append((triggers.substring, leaf.id))
        self.base = {word: tuple(ids) for word, ids in words.items()}
        self.candidates = _trie_regex(self.base, self.prefixes) if self.base or self.prefixes else None
        self._reset()

    def _reset(self) -> None:
        # New objects rather than clear(): a concurrent reader keeps a consistent (old) view.
        self.leaves_of: dict[str, tuple[int, ...]] = {}  # word -> every leaf id it triggers
        self.triggering: set[str] = set()
        self.inert: set[str] = set()  # words known to trigger nothing
        for word in self.base:  # a trigger word may also start with a prefix ("nudify" and nudif*)
            self.learn(word)

    def learn(self, word: str) -> tuple[int, ...]:
        ids = list(self.base.get(word, ()))
        for prefix, leaf_id in self.prefixes.get(word[:MIN_WILDCARD_PREFIX], ()):
            if word.startswith(prefix):
                ids.append(leaf_id)
        if ids:
            self.leaves_of[word] = tuple(ids)
            self.triggering.add(word)
        else:
            self.inert.add(word)
        return tuple(ids)

    def possible(self, fields: Sequence[Field]) -> set[int]:
        """Ids of the leaves that may occur in ``fields``; every other leaf certainly does not."""
        found: set[int] = set()
        if self.candidates is not None:
            if len(self.inert) + len(self.triggering) > self.MAX_LEARNED:
                self._reset()
            # Padded so that every word, the first included, has a space before and after it.
            words = f" {spaced(' '.join([field.unmasked for field in fields]))} "
            leaves_of, inert = self.leaves_of, self.inert
            for word in self.candidates.findall(words):
                ids = leaves_of.get(word)
                if ids is None and word not in inert:
                    ids = self.learn(word)
                if ids:
                    found.update(ids)
        if self.substrings:
            folded = "\n".join(field.unmasked for field in fields)
            for substring, leaf_id in self.substrings:
                if substring in folded:
                    found.add(leaf_id)
        return found
