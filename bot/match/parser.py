"""The watchlist query language: parse a query once, then match it against many items.

Language summary (README.md, "Watchlist queries", has the user documentation and examples):

- ``deepfake``: a whole word, any case, accents folded (``explotacion`` finds "explotación"). It also
  finds its simple plural ("deepfakes", "matches", "agencies") and possessive ("UNICEF's", "UNICEF’s").
- ``"undress app"``: consecutive words separated only by whitespace; the last word may be plural.
- ``nudif*``: trailing wildcard, at least 3 letters or digits before the ``*``. Also per phrase word.
- ``deep-fake``: finds "deep-fake", "deep fake" and "deepfake" (text hyphens may be U+2010..U+2013, U+2212).
- ``=CSAM``: case-sensitive exact word: "CSAM" (and "CSAM's"), not "csam", not "CSAMs".
- ``title:x``, ``text:x``, ``source:x``: field scope for the next term, phrase or group; the default
  scope is title + text. ``source`` is the source name the caller passes to ``match``.
- ``a NEAR/5 b``: both within 5 words of each other, either order (at most 5 other words between).
- ``a OR b``, ``a AND b``, ``a b`` (implicit AND), ``NOT a``, ``-a``, parentheses.
  Precedence NOT > NEAR > AND > OR. Operators count only in UPPERCASE; ``or`` is an ordinary word.
- Words inside URLs (``http://``, ``https://``, ``www.`` runs) are never matched.

Title and text are searched as two separate fields: a phrase never runs from the title into the text.
Matching runs on a folded copy of each field in which every original character became at most one
character, so match offsets map back to the original string exactly (see ``_Field``).

Speed: a :class:`Matcher` compiles every watchlist once into shared leaves (one regex per distinct
term or phrase). For each item one regex scan over the folded words finds the "trigger" words, which
say which leaves *could* occur (see ``_Index``); only watchlists with such a leaf are evaluated, and
only those leaves run their regex. Most news items contain none of the trigger words, so most items
cost a fold and that one scan.
"""

from __future__ import annotations

import html
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot.errors import QueryError
from bot.model import Span

__all__ = [
    "FIELDS",
    "And",
    "Matcher",
    "Near",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "Query",
    "Term",
    "compile_query",
]

MIN_WILDCARD_PREFIX = 3  # "ab*" would flood a channel; 3 letters is still broad but deliberate
FIELDS = ("title", "text", "source")  # the index of a name here is its field number below
_DEFAULT_FIELDS = (0, 1)  # title + text; the source name is searched only when asked for
_MAX_NEAR = 1000

# ---------------------------------------------------------------------------------------------------------
# Syntax tree


@dataclass(frozen=True)
class Term:
    word: str  # as written in the query without a leading "=", e.g. "Deep-Fake*"
    position: int
    field: str | None = None  # "title", "text" or "source"; None = title + text
    exact: bool = False  # written "=WORD": case-sensitive, no plural

    @property
    def text(self) -> str:
        return f"={self.word}" if self.exact else self.word


@dataclass(frozen=True)
class Phrase:
    words: tuple[str, ...]  # as written, split on whitespace
    position: int  # of the opening quote
    field: str | None = None

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Near:
    operands: tuple[Node, Node]  # terms, phrases, OR groups of them, or another Near
    distance: int  # at most this many other words between the two


Node = Term | Phrase | Not | And | Or | Near

# ---------------------------------------------------------------------------------------------------------
# Tokenizer and parser


@dataclass(frozen=True)
class _Token:
    # "word", "exact", "phrase", "field", "(", ")", "AND", "OR", "NOT" (also for "-"), "NEAR", "end"
    kind: str
    text: str  # source text; a phrase's content without the quotes; a field's name with its ":"
    position: int
    distance: int = 0  # NEAR/n only


_OPERATORS = frozenset({"AND", "OR", "NOT"})
_WORD_STOP = frozenset('()"')
_STARTS_OPERAND = frozenset({"word", "exact", "phrase", "field", "(", "NOT"})
_FIELD_PREFIX = re.compile(r"([^\W\d_]+):")  # letters then ":" at the start of a word
_NEAR_OPERATOR = re.compile(r"NEAR/(\d{1,4})")


def _word_end(query: str, start: int) -> int:
    end = start
    while end < len(query) and not query[end].isspace() and query[end] not in _WORD_STOP:
        end += 1
    return end


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(_Token(char, char, i))
            i += 1
        elif char == '"':
            close = query.find('"', i + 1)
            if close < 0:
                raise QueryError("unterminated quote", i, query=query)
            tokens.append(_Token("phrase", query[i + 1 : close], i))
            i = close + 1
        elif char == "-":
            # A word never starts with "-" (hyphens inside words are consumed below), so a leading "-" is
            # the NOT shorthand. It must touch its operand: "a - b" is more likely a typo than a negation.
            if i + 1 == n or query[i + 1].isspace() or query[i + 1] == ")":
                raise QueryError('"-" must be followed directly by a term', i, query=query)
            tokens.append(_Token("NOT", "-", i))
            i += 1
        elif char == "=":
            # Only single words can be exact: a case-sensitive phrase has not been asked for, and "= x" is
            # more likely a typo than a request.
            end = _word_end(query, i + 1)
            if end == i + 1 or query[i + 1] in "=-":
                raise QueryError('"=" must be followed directly by a word', i, query=query)
            tokens.append(_Token("exact", query[i + 1 : end], i))
            i = end
        elif field := _FIELD_PREFIX.match(query, i):
            name = field.group(1)
            if name.lower() not in FIELDS:
                # A typo such as "titel:" must not silently become a search for the word "titel:x".
                raise QueryError(
                    f'unknown field "{name}:" (fields are title:, text: and source:; '
                    "put the word in quotes to search for it)",
                    i,
                    query=query,
                )
            after = field.end()
            if after == n or query[after].isspace() or query[after] == ")":
                raise QueryError(f'expected a term, phrase or "(" directly after "{name}:"', i, query=query)
            tokens.append(_Token("field", f"{name.lower()}:", i))
            i = after
        else:
            end = _word_end(query, i)
            word = query[i:end]
            if word == "NEAR" or word.startswith("NEAR/"):
                near = _NEAR_OPERATOR.fullmatch(word)
                if near is None:
                    raise QueryError(
                        "NEAR needs a distance in words, such as NEAR/5 (at most 4 digits)", i, query=query
                    )
                tokens.append(_Token("NEAR", word, i, int(near.group(1))))
            else:
                tokens.append(_Token(word if word in _OPERATORS else "word", word, i))
            i = end
    tokens.append(_Token("end", "", len(query.rstrip())))
    return tokens


class _Parser:
    """Recursive descent over the grammar::

    query   := or END
    or      := and ("OR" and)*
    and     := near (["AND"] near)*        -- adjacent operands are an implicit AND
    near    := unary ("NEAR/n" unary)*     -- operands: terms, phrases, OR groups of them
    unary   := ("NOT" | "-") unary | FIELD ":" unary | primary
    primary := WORD | "=" WORD | PHRASE | "(" or ")"
    """

    def __init__(self, query: str):
        self.query = query
        self.tokens = _tokenize(query)
        self.index = 0
        self.scope: _Token | None = None  # the field: token in force, if any

    def error(self, problem: str, position: int) -> QueryError:
        return QueryError(problem, position, query=self.query)

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error("empty query", 0)
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":  # parse_or stops only at ")" or the end
            raise self.error('unexpected ")"', token.position)
        return node

    def parse_or(self) -> Node:
        operands = [self.parse_and()]
        while self.peek().kind == "OR":
            self.advance()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Node:
        operands = [self.parse_near()]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.advance()
            elif kind not in _STARTS_OPERAND:
                break
            operands.append(self.parse_near())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_near(self) -> Node:
        start = self.peek().position
        left = self.parse_unary()
        while self.peek().kind == "NEAR":
            operator = self.advance()
            self.check_positional(left, operator, start)
            start = self.peek().position
            right = self.parse_unary()
            self.check_positional(right, operator, start)
            left = Near((left, right), operator.distance)
        return left

    def check_positional(self, node: Node, operator: _Token, position: int) -> None:
        """NEAR compares word positions, which only terms and phrases have (NOT x has none)."""
        if isinstance(node, Not | And):
            what = "NOT" if isinstance(node, Not) else "AND (two terms side by side are an AND)"
            problem = f"{operator.text} works on terms, phrases and OR groups, not on {what}"
            raise self.error(problem, position)
        if isinstance(node, Or):
            for operand in node.operands:
                self.check_positional(operand, operator, position)

    def parse_unary(self) -> Node:
        token = self.peek()
        if token.kind == "NOT":
            self.advance()
            return Not(self.parse_unary())
        if token.kind == "field":
            self.advance()
            if self.scope is not None:
                raise self.error(f'"{token.text}" cannot be used inside "{self.scope.text}"', token.position)
            self.scope = token
            try:
                return self.parse_unary()
            finally:
                self.scope = None
        return self.parse_primary()

    @property
    def field(self) -> str | None:
        return self.scope.text[:-1] if self.scope else None

    def parse_primary(self) -> Node:
        token = self.advance()
        if token.kind == "word":
            _check_word(token.text, token.position, self.query, in_phrase=False)
            return Term(token.text, token.position, self.field)
        if token.kind == "exact":
            _check_word(token.text, token.position + 1, self.query, in_phrase=False)
            return Term(token.text, token.position, self.field, exact=True)
        if token.kind == "phrase":
            return self.phrase(token)
        if token.kind == "(":
            inner = self.parse_or()
            close = self.peek()
            if close.kind != ")":
                raise self.error('expected ")"', close.position)
            self.advance()
            return inner
        raise self.missing_operand(token)

    def missing_operand(self, token: _Token) -> QueryError:
        """An operand was due but ``token`` ("OR", "AND", "NEAR/n", ")" or the end) came instead."""
        # When token is "end", advance() did not move, so the token before it is at index - 1.
        before = self.index - 1 if token.kind == "end" else self.index - 2
        previous = self.tokens[before] if before >= 0 else None
        if previous is None:
            return self.error(f'expected a term before "{token.text}"', token.position)
        if previous.kind == "(" and token.kind == ")":
            return self.error("empty parentheses", previous.position)
        if token.kind == "end":
            return self.error(f'expected a term after "{previous.text}"', previous.position)
        if previous.kind == "(":
            return self.error(f'expected a term before "{token.text}"', token.position)
        return self.error(f'expected a term after "{previous.text}", found "{token.text}"', token.position)

    def phrase(self, token: _Token) -> Phrase:
        start = token.position + 1  # the content starts after the opening quote
        found = [(m.group(), start + m.start()) for m in re.finditer(r"\S+", token.text)]
        if not found:
            raise self.error("empty phrase", token.position)
        for word, position in found:
            _check_word(word, position, self.query, in_phrase=True)
        if not any(_has_alnum(word) for word, _ in found):
            raise self.error("a phrase needs at least one letter or digit", token.position)
        return Phrase(tuple(word for word, _ in found), token.position, self.field)


def _has_alnum(text: str) -> bool:
    return any(char.isalnum() for char in text)


def _check_word(word: str, position: int, query: str, *, in_phrase: bool) -> None:
    star = word.find("*")
    if star >= 0 and star != len(word) - 1:
        raise QueryError('"*" is only allowed at the end of a word', position + star, query=query)
    if star >= 0:
        if sum(char.isalnum() for char in _fold(word)) < MIN_WILDCARD_PREFIX:
            raise QueryError(
                f'wildcard is too broad: put at least {MIN_WILDCARD_PREFIX} letters or digits before "*"',
                position,
                query=query,
            )
    elif not in_phrase and not _has_alnum(word):
        # Phrases may hold punctuation words ("Tom & Jerry"); a lone "&" term would match nothing useful.
        raise QueryError("a term needs at least one letter or digit", position, query=query)


# ---------------------------------------------------------------------------------------------------------
# Folding: case, accents, hyphen and apostrophe variants, entities


_HYPHENS = frozenset("\u2010\u2011\u2012\u2013\u2212")  # hyphen, nb hyphen, figure dash, en dash, minus
_APOSTROPHES = frozenset("\u2019\u2018\u02bc")  # right/left single quotation mark, modifier apostrophe
_INVISIBLE = frozenset("\u00ad\u200b\u200c\u200d\u2060\ufeff")  # soft hyphen, zero-width characters
# Non-ASCII punctuation and symbols (“ ” « » — … emoji) all fold to this one ASCII control character.
# They only ever separate words, so which one it was does not matter, and typical Latin-script news
# then folds to pure ASCII, which takes the fast word splitter (see _Field.tokens).
_SYMBOL = "\x01"
_IS_WORD_CHAR = re.compile(r"\w")


def _base_char(char: str) -> str:
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


def _fold_char(char: str) -> str:
    """``_base_char`` plus case folding, still at most one character, and like ``_base_char`` never a
    non-ASCII character that is not a word character (``_spaced`` relies on that)."""
    base = _base_char(char)
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


class _FoldTable(dict[int, str]):
    """A ``str.translate`` table that folds each character the first time it is seen."""

    def __init__(self, fold: Callable[[str], str]):
        super().__init__()
        self.fold = fold

    def __missing__(self, code: int) -> str:
        folded = self.fold(chr(code))
        self[code] = folded
        return folded


_FOLD = _FoldTable(_fold_char)
_CASED = _FoldTable(_base_char)  # for =EXACT terms: same folding, case kept

# Entities left in feed text (double-escaped feeds: "child&amp;nbsp;abuse" arrives as "child&nbsp;abuse").
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")

_SourceMap = list[int] | None  # folded index -> original index; None when they are the same


def _fold_mapped(text: str, *, cased: bool = False) -> tuple[str, _SourceMap]:
    """Fold ``text`` one character to at most one; decode leftover HTML entities to one character each."""
    if "&" in text and _ENTITY.search(text):
        return _fold_slow(text, _CASED if cased else _FOLD)
    if text.isascii():
        return (text if cased else text.lower()), None
    # Fast path for the common case (accents, curly quotes, no dropped characters): str.lower() and one
    # str.replace per distinct non-ASCII character are C loops; str.translate with a dict is ~10x slower.
    # _fold_char(c) == _fold_char(c.lower()) and folding is idempotent (tests/test_query.py checks both
    # over the BMP), so replacing characters of the lowered text gives exactly the per-character result.
    out = text if cased else text.lower()
    if len(out) == len(text):
        table = _CASED if cased else _FOLD
        for char in set(_NON_ASCII.findall(out)):
            folded = table[ord(char)]
            if not folded:
                break  # a dropped character shifts offsets: take the slow path
            if folded != char:
                out = out.replace(char, folded)
        else:
            return out, None
    return _fold_slow(text, _CASED if cased else _FOLD)


def _fold_slow(text: str, table: _FoldTable) -> tuple[str, _SourceMap]:
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


def _fold(text: str) -> str:
    return _fold_mapped(text)[0]


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
# _fold_char), and UTF-8 encodes those as bytes >= 0x80 only, so turning the ASCII non-word bytes into
# spaces splits exactly where \w+ would. bytes.translate is a plain C table lookup: even on ASCII text
# encode + translate + decode is ~3x faster than str.translate, and ~10x faster than re on other text.
_ASCII_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_UTF8_SPLIT = bytes(b if b >= 0x80 or chr(b) in _ASCII_WORD_CHARS else 0x20 for b in range(256))


def _spaced(folded: str) -> str:
    """Folded text with every non-word character replaced by a space."""
    return folded.encode().translate(_UTF8_SPLIT).decode()


_NEAR_WORD = re.compile(r"\w+(?:'\w+)*")  # NEAR counts "UNICEF's" and "l'exploitation" as one word


class _Field:
    """One searchable string (title, text or source name) and its folded, URL-masked copy.

    Folding maps each original character to zero or one character, never more (an entity counts as one
    character). When nothing was dropped the copy has the same length and offsets are shared; otherwise
    ``_source[i]`` is the original index of folded character ``i``.
    """

    __slots__ = ("_cased", "_folded", "_source", "_word_starts", "original", "unmasked")

    def __init__(self, original: str):
        self.original = original
        self.unmasked, self._source = _fold_mapped(original)
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
        return _spaced(self.folded).split()

    @property
    def cased(self) -> str:
        """The same folding with case kept, for =EXACT terms. Built on first use: exact terms are rare."""
        if self._cased is None:
            cased, _ = _fold_mapped(self.original, cased=True)
            if _MASK in self.folded:  # same length and offsets as folded, so copy its URL mask
                pieces, position = [], 0
                for run in _MASKED_RUN.finditer(self.folded):
                    pieces += [cased[position : run.start()], run.group()]
                    position = run.end()
                cased = "".join([*pieces, cased[position:]])
            self._cased = cased
        return self._cased

    def word_index(self, offset: int) -> int:
        """Number of the word that contains (or last started before) folded ``offset``; for NEAR."""
        if self._word_starts is None:
            self._word_starts = [m.start() for m in _NEAR_WORD.finditer(self.folded)]
        return bisect_right(self._word_starts, offset) - 1

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        if self._source is None:
            return start, end
        # The end maps to the next kept character, so combining marks dropped after the last matched
        # letter ("e" + U+0301) stay inside the span instead of being cut off.
        original_end = self._source[end] if end < len(self._source) else len(self.original)
        return self._source[start], original_end


# ---------------------------------------------------------------------------------------------------------
# Leaves: one compiled regex per distinct term or phrase, plus the words that must occur for it to match


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
    if not _has_alnum(word):  # punctuation inside a phrase, matched as is
        return word, ""
    parts, suffix, _ = _word_parts(word, last=last, exact=exact)
    gap = "-" if exact else _HYPHEN_GAP  # an exact word is exact about its hyphens too
    rest = "".join(gap + re.escape(part) for part in parts[1:])
    # Possessive on any word ("children's agency"), included so the highlight covers "UNICEF's".
    return parts[0], rest + suffix + "(?:'s)?"


@dataclass(frozen=True)
class _Triggers:
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


def _word_triggers(word: str, *, last: bool, exact: bool) -> _Triggers | None:
    """The text words one of which every match of this folded query word begins with; None if unknown.

    The regex is ``part1 (gap part2 ...) suffix``, with gaps "-", whitespace or nothing: a match's first
    text word is part1, part1+part2, ..., or all parts joined plus one of the tail's endings.
    """
    if not _has_alnum(word):
        return None
    parts, _, form = _word_parts(word, last=last, exact=exact)
    if not all(_PLAIN_WORD.fullmatch(part) for part in parts):
        return None  # "u.s.", "o'brien": the text's word split would not find them as one word
    if exact:
        # Gaps are always "-" and there is no plural: the first text word is part1 exactly, or, for a
        # one-part wildcard, a word starting with it.
        if len(parts) > 1 or form != "wild":
            return _Triggers(words=frozenset(parts[:1]))
        return _Triggers(prefixes=frozenset(parts)) if len(parts[0]) >= MIN_WILDCARD_PREFIX else None
    words = {"".join(parts[:k]) for k in range(1, len(parts))}
    joined = "".join(parts)
    if form == "wild":
        if len(joined) < MIN_WILDCARD_PREFIX:
            return None
        return _Triggers(words=frozenset(words), prefixes=frozenset({joined}))
    endings = {"": ("",), "s": ("", "s"), "es": ("", "s", "es"), "ies": ("y", "ies")}[form]
    words.update(joined + ending for ending in endings)
    return _Triggers(words=frozenset(words))


class _Leaf:
    """One distinct term or phrase: its regex, the fields it searches and its prefilter triggers."""

    __slots__ = ("exact", "fields", "id", "literals", "regex", "triggers")

    def __init__(self, leaf_id: int, words: tuple[str, ...], *, exact: bool, fields: tuple[int, ...]):
        self.id = leaf_id
        self.exact = exact
        self.fields = fields
        lower = tuple(_fold(word) for word in words)
        matched = tuple(_fold_mapped(word, cased=True)[0] for word in words) if exact else lower
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
            if (triggers := _word_triggers(word, last=i == len(lower) - 1, exact=exact)) is not None
        ]
        if candidates:
            self.triggers = min(candidates, key=lambda t: t.cost)
        else:
            self.triggers = _Triggers(substring=self.literals[0])


class _Compiler:
    """Builds leaves, sharing one per distinct (regex, fields) across every query compiled with it."""

    def __init__(self) -> None:
        self.leaves: list[_Leaf] = []
        self._by_key: dict[tuple[tuple[str, ...], bool, tuple[int, ...]], _Leaf] = {}

    def leaf(self, node: Term | Phrase) -> _Leaf:
        words = (node.word,) if isinstance(node, Term) else node.words
        exact = isinstance(node, Term) and node.exact
        fields = _DEFAULT_FIELDS if node.field is None else (FIELDS.index(node.field),)
        # Query words that fold alike ("Deepfake", "deepfake") share a leaf; exact words keep their case.
        key_words = tuple(_fold_mapped(w, cased=True)[0] if exact else _fold(w) for w in words)
        key = (key_words, exact, fields)
        leaf = self._by_key.get(key)
        if leaf is None:
            leaf = _Leaf(len(self.leaves), words, exact=exact, fields=fields)
            self.leaves.append(leaf)
            self._by_key[key] = leaf
        return leaf


_Trie = dict[str, "_Trie"]
# Trie keys for "a trigger word ends here" and "any word continuing from here": never characters of a
# trigger, which are all word characters.
_WORD_END = ""
_STEM_END = "*"


def _trie_regex(words: Iterable[str], stems: Iterable[str]) -> re.Pattern[str]:
    """A regex for " WORD " or " STEM..." in space-separated words; group 1 is the whole text word.

    re tries alternatives one by one, so common beginnings are factored out: at each text word it then
    compares about one letter per distinct first letter instead of one per trigger.
    """
    trie: _Trie = {}
    for key, end in sorted([(word, _WORD_END) for word in words] + [(stem, _STEM_END) for stem in stems]):
        node = trie
        for char in key:
            node = node.setdefault(char, {})
        node[end] = {}

    def pattern(node: _Trie) -> str:
        if _STEM_END in node:
            return ""  # any continuation, including the longer trigger words below this node
        alternatives = [re.escape(char) + pattern(child) for char, child in node.items() if char != _WORD_END]
        if _WORD_END in node:
            alternatives.append("(?= )")
        return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"

    return re.compile(rf" ({pattern(trie)}\w*)")


class _Index:
    """Trigger words of many leaves, found in an item by one regex scan over its words.

    Splitting an item into words costs a string object per word, and nearly every word triggers
    nothing. Instead a trie regex of the trigger words and of the first 3 characters of each wildcard
    prefix runs over the words joined by spaces and stops only at a word that may trigger. A stop at a
    prefix's first 3 characters is not yet a trigger ("china" for child*), so such a word is checked
    against the prefixes once and the answer remembered: news vocabulary is finite.
    """

    MAX_LEARNED = 200_000  # words remembered per kind before starting over (bounds memory)

    def __init__(self, leaves: Sequence[_Leaf]):
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

    def possible(self, fields: Sequence[_Field]) -> set[int]:
        """Ids of the leaves that may occur in ``fields``; every other leaf certainly does not."""
        found: set[int] = set()
        if self.candidates is not None:
            if len(self.inert) + len(self.triggering) > self.MAX_LEARNED:
                self._reset()
            # Padded so that every word, the first included, has a space before and after it.
            words = f" {_spaced(' '.join([field.unmasked for field in fields]))} "
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


_Hit = tuple[int, int, int]  # field number, start, end in the folded string
_Occurrence = tuple[int, int, int]  # field number, first word, last word


class _Document:
    """One item being matched; caches each leaf's hits so watchlists sharing a term search once."""

    __slots__ = ("_hits", "_occurrences", "fields", "possible")

    def __init__(self, title: str, text: str, source: str, index: _Index | None):
        self.fields = (_Field(title), _Field(text), _Field(source))
        # None (no index) means "any leaf may occur": the reference behaviour the prefilter must match.
        self.possible = index.possible(self.fields) if index is not None else None
        self._hits: dict[int, list[_Hit]] = {}
        self._occurrences: dict[int, list[_Occurrence]] = {}

    def hits(self, leaf: _Leaf) -> list[_Hit]:
        hits = self._hits.get(leaf.id)
        if hits is None:
            hits = []
            if self.possible is None or leaf.id in self.possible:
                for number in leaf.fields:
                    field = self.fields[number]
                    # Unmasked: the URL mask and, for exact terms, the cased copy are built only if needed.
                    if all(literal in field.unmasked for literal in leaf.literals):
                        haystack = field.cased if leaf.exact else field.folded
                        hits.extend((number, m.start(), m.end()) for m in leaf.regex.finditer(haystack))
            self._hits[leaf.id] = hits
        return hits

    def occurrences(self, leaf: _Leaf) -> list[_Occurrence]:
        found = self._occurrences.get(leaf.id)
        if found is None:
            found = []
            for number, start, end in self.hits(leaf):
                field = self.fields[number]
                found.append((number, field.word_index(start), field.word_index(end - 1)))
            self._occurrences[leaf.id] = found
        return found

    def span(self, hit: _Hit, term: str) -> Span:
        number, start, end = hit
        return Span(FIELDS[number], *self.fields[number].original_span(start, end), term)


# ---------------------------------------------------------------------------------------------------------
# Compiling the tree to closures


_Evaluate = Callable[[_Document], bool]
_Positions = Callable[[_Document], list[_Occurrence]]
_Need = frozenset[int] | None  # leaf ids one of which must be possible for a match; None = no such set


@dataclass
class _Build:
    compiler: _Compiler
    positive: list[tuple[_Leaf, str]]  # (leaf, term as written) for span reporting

    def leaf(self, node: Term | Phrase, negated: bool) -> _Leaf:
        leaf = self.compiler.leaf(node)
        if not negated:
            self.positive.append((leaf, node.text))
        return leaf

    def evaluate(self, node: Node, negated: bool) -> tuple[_Evaluate, _Need]:
        """Nested closures (cheaper per call than walking the tree) and the leaves a match needs.

        A leaf under an odd number of NOTs is negative: its occurrences are the reason *not* to match, so
        they are never reported as spans.
        """
        if isinstance(node, Term | Phrase):
            leaf = self.leaf(node, negated)
            return (lambda document: bool(document.hits(leaf))), frozenset({leaf.id})
        if isinstance(node, Not):
            inner, _ = self.evaluate(node.operand, not negated)
            return (lambda document: not inner(document)), None
        if isinstance(node, Near):
            positions, need = self.positions(node, negated)
            return (lambda document: bool(positions(document))), need
        built = [self.evaluate(operand, negated) for operand in node.operands]
        operands = tuple(evaluate for evaluate, _ in built)
        needs = [need for _, need in built]
        if isinstance(node, And):
            known = [need for need in needs if need is not None]
            # Any one operand's need is enough for the whole AND: take the one least likely to fire.
            need = min(known, key=self.need_cost) if known else None
            return (lambda document: all(operand(document) for operand in operands)), need
        need = None if None in needs else frozenset().union(*needs)
        return (lambda document: any(operand(document) for operand in operands)), need

    def need_cost(self, need: frozenset[int]) -> float:
        return sum(self.compiler.leaves[leaf_id].triggers.cost for leaf_id in need)

    def positions(self, node: Node, negated: bool) -> tuple[_Positions, _Need]:
        """Word positions of a NEAR operand: a term, a phrase, an OR group of them, or another NEAR."""
        if isinstance(node, Term | Phrase):
            leaf = self.leaf(node, negated)
            return (lambda document: document.occurrences(leaf)), frozenset({leaf.id})
        if isinstance(node, Or):
            built = [self.positions(operand, negated) for operand in node.operands]
            parts = tuple(positions for positions, _ in built)
            need = frozenset().union(*(need for _, need in built if need is not None))
            return (lambda document: [o for part in parts for o in part(document)]), need
        assert isinstance(node, Near)  # the parser admits nothing else here
        (left, left_need), (right, right_need) = (self.positions(o, negated) for o in node.operands)
        distance = node.distance
        assert left_need is not None and right_need is not None

        def near(document: _Document) -> list[_Occurrence]:
            found: list[_Occurrence] = []
            lefts = left(document)
            if not lefts:
                return found
            for field_a, first_a, last_a in lefts:
                for field_b, first_b, last_b in right(document):
                    if field_a != field_b:
                        continue
                    if first_b > last_a:
                        gap = first_b - last_a - 1
                    elif first_a > last_b:
                        gap = first_a - last_b - 1
                    else:
                        continue  # the same words: "x NEAR/3 x" needs two distinct occurrences
                    if gap <= distance:
                        found.append((field_a, min(first_a, first_b), max(last_a, last_b)))
            return found

        return near, min((left_need, right_need), key=self.need_cost)


# ---------------------------------------------------------------------------------------------------------
# Public interface


class Query:
    """A compiled query. Build it with :func:`compile_query`."""

    def __init__(self, text: str, ast: Node, compiler: _Compiler | None = None):
        self.text = text
        self.ast = ast
        self._compiler = compiler or _Compiler()
        build = _Build(self._compiler, [])
        self._evaluate, self._need = build.evaluate(ast, False)
        # A term repeated in the query is reported once; its first spelling names it.
        positive: dict[int, tuple[_Leaf, str]] = {}
        for leaf, term in build.positive:
            positive.setdefault(leaf.id, (leaf, term))
        self._positive = tuple(positive.values())
        self._index: _Index | None = None

    def __repr__(self) -> str:
        return f"Query({self.text!r})"

    def match(self, title: str, text: str, *, source: str = "") -> list[Span] | None:
        """None when the query does not match; otherwise the spans of every positive term occurrence.

        ``source`` is the item's source name, searched only by ``source:`` terms. Spans index the original
        ``title`` / ``text`` (never the source); they are sorted (title first, then by offset) and may
        overlap when two terms cover the same words. The list is empty for a query that matches only
        through NOT or ``source:``.
        """
        if self._index is None:
            self._index = _Index(self._compiler.leaves)
        return self._match(_Document(title, text, source, self._index))

    def _match(self, document: _Document) -> list[Span] | None:
        if not self._evaluate(document):
            return None
        # Every positive term that occurs is reported, even one in an OR branch that did not decide the
        # match: the reader sees all the words the watchlist cares about.
        spans: dict[_Hit, Span] = {}
        for leaf, term in self._positive:
            for hit in document.hits(leaf):
                if hit[0] in _DEFAULT_FIELDS and hit not in spans:
                    spans[hit] = document.span(hit, term)
        return sorted(spans.values(), key=lambda span: (span.field != "title", span.start, span.end))


def compile_query(query: str, *, watchlist: str | None = None) -> Query:
    """Parse ``query`` once. Raises QueryError (labelled with ``watchlist`` when given) if it is invalid."""
    return _compile(query, watchlist, None)


def _compile(query: str, watchlist: str | None, compiler: _Compiler | None) -> Query:
    try:
        ast = _Parser(query).parse()
    except QueryError as error:
        if watchlist is None:
            raise
        raise error.for_watchlist(watchlist) from None
    return Query(query, ast, compiler)


class Matcher:
    """Every watchlist compiled once; :meth:`match` reports the ones an item matches."""

    def __init__(self, watchlists: Mapping[str, str]):
        compiler = _Compiler()  # shared: a term used by ten watchlists is searched once per item
        # _compile labels the error, so the first bad watchlist is named in the message.
        self._queries = [(name, _compile(query, name, compiler)) for name, query in watchlists.items()]
        self._index = _Index(compiler.leaves)
        # Which watchlists to evaluate when a leaf may occur; those with no need (NOT-only) always are.
        self._always = frozenset(i for i, (_, query) in enumerate(self._queries) if query._need is None)
        self._by_leaf: dict[int, list[int]] = {}
        for i, (_, query) in enumerate(self._queries):
            for leaf_id in query._need or ():
                self._by_leaf.setdefault(leaf_id, []).append(i)

    def match(self, title: str, text: str, *, source: str = "") -> dict[str, list[Span]]:
        """Matched watchlists only, in input order, each with its spans (see :meth:`Query.match`)."""
        document = _Document(title, text, source, self._index)  # folded once, shared by every watchlist
        candidates = set(self._always)
        by_leaf = self._by_leaf
        for leaf_id in document.possible or ():
            if watchlists := by_leaf.get(leaf_id):
                candidates.update(watchlists)
        matched: dict[str, list[Span]] = {}
        for i in sorted(candidates):
            name, query = self._queries[i]
            spans = query._match(document)
            if spans is not None:
                matched[name] = spans
        return matched
