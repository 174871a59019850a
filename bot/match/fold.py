"""Text folding for matching: case, accents, hyphen and apostrophe variants, entities, URL masking.

Query words and item text are folded alike, one original character to at most one folded character,
so match offsets map back to the original string exactly (see ``Field``). bot/history.py folds the
words it looks up in the full-text index with ``fold`` too: they must be the matcher's words.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable

_HYPHENS = frozenset("\u2010\u2011\u2012\u2013\u2212")  # hyphen, nb hyphen, figure dash, en dash, minus
_APOSTROPHES = frozenset("\u2019\u2018\u02bc")  # right/left single quotation mark, modifier apostrophe
_INVISIBLE = frozenset("\u00ad\u200b\u200c\u200d\u2060\ufeff")  # soft hyphen, zero-width characters
# Non-ASCII punctuation and symbols (“ ” « » — … emoji) all fold to this one ASCII control character.
# They only ever separate words, so which one it was does not matter, and typical Latin-script news
# then folds to pure ASCII, which takes the fast word splitter (see Field.tokens).
_SYMBOL = "\x01"
_IS_WORD_CHAR = re.compile(r"\w")


def base_char(char: str) -> str:
    """One character with accents, compatibility forms and typographic variants folded; case is kept.

    The result is at most one character, so match offsets map back to the original.
    """
    if char.isascii():
        return char
    if char in _HYPHENS:
        return "-"
    if char in _APOSTROPHES:
        return "'"
    if char in _INVISIBLE:
        return ""
    # NFKD splits "ó" into "o" + U+0301 and maps compatibility forms (fullwidth, NBSP) to plain ones;
    # dropping the combining marks then folds accents. A lone combining mark folds to "".
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if len(base) > 1:
        # Expansions ("ﬁ" -> "fi", "…" -> "...") would break the offset map, so keep the character.
        base = char
    if not base:
        return ""
    if base.isspace():
        return " "
    if not base.isascii() and not _IS_WORD_CHAR.match(base):
        return _SYMBOL
    return base


def fold_char(char: str) -> str:
    """``base_char`` plus case folding, still at most one character, and like ``base_char`` never a
    non-ASCII character that is not a word character (``spaced`` relies on that)."""
    base = base_char(char)
    if len(base) != 1 or base.isascii():
        return base.lower()
    folded = base.casefold()
    if len(folded) != 1:
        # "ß" casefolds to "ss": keep one character. Query words are folded the same way, so "straße"
        # finds "Straße" and "STRAßE" but not "strasse".
        lowered = base.lower()
        folded = lowered if len(lowered) == 1 else base
    # No code point's case folding turns a word character into something else today; this keeps the
    # promise should a future Unicode version disagree.
    return folded if folded.isascii() or _IS_WORD_CHAR.match(folded) else _SYMBOL


class FoldTable(dict[int, str]):
    """A ``str.translate`` table that folds each character the first time it is seen."""

    def __init__(self, fold: Callable[[str], str]):
        super().__init__()
        self.fold = fold

    def __missing__(self, code: int) -> str:
        folded = self.fold(chr(code))
        self[code] = folded
        return folded


FOLD = FoldTable(fold_char)
CASED = FoldTable(base_char)  # for =EXACT terms: same folding, case kept

# Entities left in feed text (double-escaped feeds: "child&amp;nbsp;abuse" arrives as "child&nbsp;abuse").
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")

SourceMap = list[int] | None  # folded index -> original index; None when they are the same


def fold_mapped(text: str, *, cased: bool = False) -> tuple[str, SourceMap]:
    """Fold ``text`` one character to at most one; decode leftover HTML entities to one character each."""
    if "&" in text and _ENTITY.search(text):
        return fold_slow(text, CASED if cased else FOLD)
    if text.isascii():
        return (text if cased else text.lower()), None
    # Fast path for the common case (accents, curly quotes, no dropped characters): str.lower() and one
    # str.replace per distinct non-ASCII character are C loops; str.translate with a dict is ~10x slower.
    # fold_char(c) == fold_char(c.lower()) and folding is idempotent (tests/test_query.py checks both
    # over the BMP), so replacing characters of the lowered text gives exactly the per-character result.
    out = text if cased else text.lower()
    if len(out) == len(text):
        table = CASED if cased else FOLD
        for char in set(_NON_ASCII.findall(out)):
            folded = table[ord(char)]
            if not folded:
                break  # a dropped character shifts offsets: take the slow path
            if folded != char:
                out = out.replace(char, folded)
        else:
            return out, None
    return fold_slow(text, CASED if cased else FOLD)


def fold_slow(text: str, table: FoldTable) -> tuple[str, SourceMap]:
    chars: list[str] = []
    source: list[int] = []

    def fold_segment(start: int, end: int) -> None:
        segment = text[start:end]
        folded = segment.translate(table)
        if len(folded) == len(segment):
            chars.append(folded)
            source.extend(range(start, end))
            return
        for index in range(start, end):
            if folded_char := table[ord(text[index])]:
                chars.append(folded_char)
                source.append(index)

    position = 0
    if "&" in text:
        for entity in _ENTITY.finditer(text):
            decoded = html.unescape(entity.group())
            if len(decoded) != 1:
                continue  # unknown entity: leave it as text
            fold_segment(position, entity.start())
            if folded_char := table[ord(decoded)]:
                chars.append(folded_char)
                source.append(entity.start())
            position = entity.end()
    fold_segment(position, len(text))
    folded = "".join(chars)
    # Equal lengths mean nothing was dropped or decoded, so every index maps to itself.
    return folded, (None if len(folded) == len(text) else source)


def fold(text: str) -> str:
    """``text`` folded as the matcher folds it (lower case, accents dropped, entities decoded)."""
    return fold_mapped(text)[0]


def has_alnum(text: str) -> bool:
    """Whether ``text`` has a letter or a digit: a query word without one is punctuation."""
    return any(char.isalnum() for char in text)


# URLs are masked with NUL: neither a word character (no term matches it) nor whitespace (no phrase
# spans across it). The lookbehinds keep "xhttp://" or "awww.x" from starting a URL mid-word. They sit
# after the first letter, not before the alternation, so that re scans for "h"/"w" in C and tries a
# match only there (twice as fast as trying every position).
_URL = re.compile(r"(?:h(?<![\w.]h)ttps?://|w(?<![\w.]w)ww\.)\S+")
_MASK = "\x00"
_MASKED_RUN = re.compile("\x00+")


def _mask_urls(folded: str) -> str:
    if "://" not in folded and "www." not in folded:  # cheap pre-check: most text has no URL
        return folded
    return _URL.sub(lambda m: _MASK * len(m.group()), folded)


# Word splitting, for the prefilter. Every non-ASCII character of folded text is a word character (see
# fold_char), and UTF-8 encodes those as bytes >= 0x80 only, so turning the ASCII non-word bytes into
# spaces splits exactly where \w+ would. bytes.translate is a plain C table lookup: even on ASCII text
# encode + translate + decode is ~3x faster than str.translate, and ~10x faster than re on other text.
_ASCII_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_UTF8_SPLIT = bytes(b if b >= 0x80 or chr(b) in _ASCII_WORD_CHARS else 0x20 for b in range(256))


def spaced(folded: str) -> str:
    """Folded text with every non-word character replaced by a space."""
    return folded.encode().translate(_UTF8_SPLIT).decode()


_NEAR_WORD = re.compile(r"\w+(?:'\w+)*")  # NEAR counts "UNICEF's" and "l'exploitation" as one word


class Field:
    """One searchable string (title, text or source name) and its folded, URL-masked copy.

    Folding maps each original character to zero or one character, never more (an entity counts as one
    character). When nothing was dropped the copy has the same length and offsets are shared; otherwise
    ``_source[i]`` is the original index of folded character ``i``.
    """

    __slots__ = ("_cased", "_folded", "_source", "_word_starts", "original", "unmasked")

    def __init__(self, original: str):
        self.original = original
        self.unmasked, self._source = fold_mapped(original)
        self._folded: str | None = None
        self._cased: str | None = None
        self._word_starts: list[int] | None = None

    @property
    def folded(self) -> str:
        """The folded copy with URLs masked, built on first use.

        The prefilter reads ``unmasked``: a URL starts and ends at a word boundary, so masking only
        removes whole words, and the prefilter may err on the side of "possible". Most items end there.
        """
        if self._folded is None:
            self._folded = _mask_urls(self.unmasked)
        return self._folded

    def tokens(self) -> list[str]:
        return spaced(self.folded).split()

    @property
    def cased(self) -> str:
        """The same folding with case kept, for =EXACT terms. Built on first use: exact terms are rare."""
        if self._cased is None:
            cased, _ = fold_mapped(self.original, cased=True)
            if _MASK in self.folded:  # same length and offsets as folded, so copy its URL mask
                pieces, position = [], 0
                for run in _MASKED_RUN.finditer(self.folded):
                    pieces += [cased[position : run.start()], run.group()]
                    position = run.end()
                cased = "".join([*pieces, cased[position:]])
            self._cased = cased
        return self._cased

    @property
    def word_starts(self) -> list[int]:
        """Folded offsets where NEAR's words start, ascending: the number of the word holding offset ``i``
        (or the last one starting before it) is ``bisect_right(word_starts, i) - 1``."""
        if self._word_starts is None:
            self._word_starts = [m.start() for m in _NEAR_WORD.finditer(self.folded)]
        return self._word_starts

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        if self._source is None:
            return start, end
        # The end maps to the next kept character, so combining marks dropped after the last matched
        # letter ("e" + U+0301) stay inside the span instead of being cut off.
        original_end = self._source[end] if end < len(self._source) else len(self.original)
        return self._source[start], original_end
