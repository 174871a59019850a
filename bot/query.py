"""The watchlist query language (version 1): parse a query once, then match it against many items.

Language summary:

- ``deepfake``: a whole word, any case, accents folded (``explotacion`` finds "explotación"). It also
  finds its simple plural ("deepfakes", "matches", "agencies") and possessive ("UNICEF's", "UNICEF’s").
- ``"undress app"``: consecutive words separated only by whitespace; the last word may be plural.
- ``nudif*``: trailing wildcard, at least 3 letters or digits before the ``*``. Also per phrase word.
- ``deep-fake``: finds "deep-fake", "deep fake" and "deepfake" (text hyphens may be U+2010..U+2013).
- ``a OR b``, ``a AND b``, ``a b`` (implicit AND), ``NOT a``, ``-a``, parentheses.
  Precedence NOT > AND > OR. Operators count only in UPPERCASE; ``or`` is an ordinary word.
- Words inside URLs (``http://``, ``https://``, ``www.`` runs) are never matched.

Title and text are searched as two separate fields: a phrase never runs from the title into the text.
Matching runs on a folded copy of each field in which every original character became at most one
character, so match offsets map back to the original string exactly (see ``_Field``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from bot.errors import QueryError
from bot.model import Span

__all__ = ["And", "Matcher", "Node", "Not", "Or", "Phrase", "Query", "Term", "compile_query"]

MIN_WILDCARD_PREFIX = 3  # "ab*" would flood a channel; 3 letters is still broad but deliberate

# ---------------------------------------------------------------------------------------------------------
# Syntax tree


@dataclass(frozen=True)
class Term:
    word: str  # as written in the query, e.g. "Deep-Fake*"
    position: int


@dataclass(frozen=True)
class Phrase:
    words: tuple[str, ...]  # as written, split on whitespace
    position: int  # of the opening quote

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


Node = Term | Phrase | Not | And | Or

# ---------------------------------------------------------------------------------------------------------
# Tokenizer and parser


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "phrase", "(", ")", "AND", "OR", "NOT" (also for "-"), "end"
    text: str  # source text; a phrase's content without the quotes
    position: int


_OPERATORS = frozenset({"AND", "OR", "NOT"})
_WORD_STOP = frozenset('()"')
_STARTS_OPERAND = frozenset({"word", "phrase", "(", "NOT"})


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
        else:
            end = i
            while end < n and not query[end].isspace() and query[end] not in _WORD_STOP:
                end += 1
            word = query[i:end]
            tokens.append(_Token(word if word in _OPERATORS else "word", word, i))
            i = end
    tokens.append(_Token("end", "", len(query.rstrip())))
    return tokens


class _Parser:
    """Recursive descent over the grammar::

    query   := or END
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*      -- adjacent operands are an implicit AND
    unary   := ("NOT" | "-") unary | primary
    primary := WORD | PHRASE | "(" or ")"
    """

    def __init__(self, query: str):
        self.query = query
        self.tokens = _tokenize(query)
        self.index = 0

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
        operands = [self.parse_unary()]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.advance()
            elif kind not in _STARTS_OPERAND:
                break
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_unary(self) -> Node:
        if self.peek().kind == "NOT":
            self.advance()
            return Not(self.parse_unary())
        return self.parse_primary()

    def parse_primary(self) -> Node:
        token = self.advance()
        if token.kind == "word":
            _check_word(token.text, token.position, self.query, in_phrase=False)
            return Term(token.text, token.position)
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
        """An operand was due but ``token`` ("OR", "AND", ")" or the end) came instead."""
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
        return Phrase(tuple(word for word, _ in found), token.position)


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
# Folding: case, accents, hyphen and apostrophe variants


_HYPHENS = frozenset("\u2010\u2011\u2012\u2013")  # hyphen, non-breaking hyphen, figure dash, en dash
_APOSTROPHES = frozenset("\u2019\u02bc")  # right single quotation mark, modifier letter apostrophe
_INVISIBLE = frozenset("\u00ad")  # soft hyphen: feeds put it inside words


def _fold_char(char: str) -> str:
    """One character, folded to at most one character so match offsets map back to the original."""
    if char in _HYPHENS:
        return "-"
    if char in _APOSTROPHES:
        return "'"
    if char in _INVISIBLE:
        return ""
    # NFKD splits "ó" into "o" + U+0301 and maps compatibility forms (fullwidth, NBSP) to plain ones;
    # dropping the combining marks then folds accents. A lone combining mark folds to "".
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    folded = base.casefold()
    if len(folded) <= 1:
        return folded
    # Expansions ("ß" -> "ss", "ﬁ" -> "fi", "…" -> "...") would break the offset map, so keep one character.
    # Query words are folded the same way, so "straße" finds "Straße" and "STRAßE" but not "strasse".
    lowered = char.lower()
    return lowered if len(lowered) == 1 else char


class _FoldTable(dict[int, str]):
    """A ``str.translate`` table that folds each character the first time it is seen."""

    def __missing__(self, code: int) -> str:
        folded = _fold_char(chr(code))
        self[code] = folded
        return folded


_FOLD = _FoldTable()


def _fold(text: str) -> str:
    return text.lower() if text.isascii() else text.translate(_FOLD)


# URLs are masked with NUL: neither a word character (no term matches it) nor whitespace (no phrase
# spans across it). The lookbehind keeps "xhttp://" or "awww.x" from starting a URL mid-word.
_URL = re.compile(r"(?<![\w.])(?:https?://|www\.)\S+")
_MASK = "\x00"


def _mask_urls(folded: str) -> str:
    if "://" not in folded and "www." not in folded:  # cheap pre-check: most text has no URL
        return folded
    return _URL.sub(lambda m: _MASK * len(m.group()), folded)


class _Field:
    """One searchable string (title or text) and its folded, URL-masked copy.

    Folding maps each original character to zero or one character, never more. When nothing was dropped
    the copy has the same length and offsets are shared; otherwise ``_source[i]`` is the original index
    of folded character ``i``.
    """

    __slots__ = ("_source", "folded", "name", "original")

    def __init__(self, name: str, original: str):
        self.name = name
        self.original = original
        folded = _fold(original)
        self._source: list[int] | None = None
        if len(folded) != len(original):
            self._source = [i for i, char in enumerate(original) if _FOLD[ord(char)]]
        self.folded = _mask_urls(folded)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        if self._source is None:
            return start, end
        # The end maps to the next kept character, so combining marks dropped after the last matched
        # letter ("e" + U+0301) stay inside the span instead of being cut off.
        original_end = self._source[end] if end < len(self._source) else len(self.original)
        return self._source[start], original_end


_Hit = tuple[str, int, int]  # field name, start, end in the original string


class _Document:
    """One item being matched; caches each pattern's hits so watchlists sharing a term search once."""

    __slots__ = ("_hits", "fields")

    def __init__(self, title: str, text: str):
        self.fields = (_Field("title", title), _Field("text", text))
        self._hits: dict[re.Pattern[str], list[_Hit]] = {}

    def find(self, regex: re.Pattern[str], literal: str) -> list[_Hit]:
        hits = self._hits.get(regex)
        if hits is None:
            hits = []
            for field in self.fields:
                # Every match contains ``literal``; a substring test is far cheaper than the regex.
                if literal in field.folded:
                    for m in regex.finditer(field.folded):
                        hits.append((field.name, *field.original_span(m.start(), m.end())))
            self._hits[regex] = hits
        return hits


# ---------------------------------------------------------------------------------------------------------
# Compiling terms and phrases to regular expressions


_HYPHEN_GAP = r"(?:-|\s+)?"  # "deep-fake" also finds "deep fake" and "deepfake"
_ES_ENDINGS = ("s", "x", "z", "ch", "sh", "o")  # "matches", "boxes"; but "rap" must not find "rapes"
_VOWELS = frozenset("aeiou")


def _word_regex(word: str, *, last: bool) -> tuple[str, list[str]]:
    """Regex for one folded query word, and the literal pieces every match of it contains."""
    if not _has_alnum(word):  # punctuation inside a phrase, matched as is
        return re.escape(word), [word]
    wildcard = word.endswith("*")
    parts = [part for part in word.removesuffix("*").split("-") if part]
    literals = list(parts)
    *head, tail = parts
    if wildcard:
        tail_regex = re.escape(tail) + r"\w*"
    elif not last or not tail[-1].isalpha():
        tail_regex = re.escape(tail)  # only a phrase's last word takes a plural; "2024" takes none
    elif len(tail) > 1 and tail[-1] == "y" and tail[-2] not in _VOWELS:
        tail_regex = re.escape(tail[:-1]) + "(?:y|ies)"
        literals[-1] = tail[:-1]
    elif tail.endswith(_ES_ENDINGS):
        tail_regex = re.escape(tail) + "(?:e?s)?"
    else:
        tail_regex = re.escape(tail) + "s?"
    # Possessive on any word ("children's agency"), included so the highlight covers "UNICEF's".
    tail_regex += "(?:'s)?"
    return _HYPHEN_GAP.join([*map(re.escape, head), tail_regex]), literals


@lru_cache(maxsize=4096)
def _leaf_regex(words: tuple[str, ...]) -> tuple[re.Pattern[str], str]:
    """The compiled regex for folded phrase words (one word for a term), and its longest literal."""
    pieces: list[str] = []
    literals: list[str] = []
    for i, word in enumerate(words):
        regex, word_literals = _word_regex(word, last=i == len(words) - 1)
        pieces.append(regex)
        literals.extend(word_literals)
    # Unicode \w on both sides makes terms whole words: "ai" is not found in "said", nor "csam" in "csample".
    return re.compile(r"(?<!\w)" + r"\s+".join(pieces) + r"(?!\w)"), max(literals, key=len)


@dataclass(frozen=True)
class _Leaf:
    term: str  # reported in Span.term
    regex: re.Pattern[str]
    literal: str

    def occurs(self, document: _Document) -> bool:
        return bool(document.find(self.regex, self.literal))


_Evaluate = Callable[[_Document], bool]


def _build(node: Node, negated: bool, positive: list[_Leaf]) -> _Evaluate:
    """Turn the tree into nested closures (cheaper per call than walking it) and list the positive leaves.

    A leaf under an odd number of NOTs is negative: its occurrences are the reason *not* to match, so they
    are never reported as spans.
    """
    if isinstance(node, Term | Phrase):
        words = (node.word,) if isinstance(node, Term) else node.words
        term = node.word if isinstance(node, Term) else node.text
        leaf = _Leaf(term, *_leaf_regex(tuple(_fold(word) for word in words)))
        if not negated:
            positive.append(leaf)
        return leaf.occurs
    if isinstance(node, Not):
        inner = _build(node.operand, not negated, positive)
        return lambda document: not inner(document)
    operands = tuple(_build(operand, negated, positive) for operand in node.operands)
    if isinstance(node, And):
        return lambda document: all(operand(document) for operand in operands)
    return lambda document: any(operand(document) for operand in operands)


# ---------------------------------------------------------------------------------------------------------
# Public interface


class Query:
    """A compiled query. Build it with :func:`compile_query`."""

    def __init__(self, text: str, ast: Node):
        self.text = text
        self.ast = ast
        positive: list[_Leaf] = []
        self._evaluate = _build(ast, False, positive)
        self._positive = tuple(dict.fromkeys(positive))  # a term repeated in the query is reported once

    def __repr__(self) -> str:
        return f"Query({self.text!r})"

    def match(self, title: str, text: str) -> list[Span] | None:
        """None when the query does not match; otherwise the spans of every positive term occurrence.

        Spans index the original ``title`` / ``text``; they are sorted (title first, then by offset) and
        may overlap when two terms cover the same words. The list is empty for a query that matches only
        through NOT.
        """
        return self._match(_Document(title, text))

    def _match(self, document: _Document) -> list[Span] | None:
        if not self._evaluate(document):
            return None
        # Every positive term that occurs is reported, even one in an OR branch that did not decide the
        # match: the reader sees all the words the watchlist cares about.
        spans: dict[_Hit, Span] = {}
        for leaf in self._positive:
            for hit in document.find(leaf.regex, leaf.literal):
                spans.setdefault(hit, Span(*hit, leaf.term))
        return sorted(spans.values(), key=lambda span: (span.field != "title", span.start, span.end))


def compile_query(query: str, *, watchlist: str | None = None) -> Query:
    """Parse ``query`` once. Raises QueryError (labelled with ``watchlist`` when given) if it is invalid."""
    try:
        ast = _Parser(query).parse()
    except QueryError as error:
        if watchlist is None:
            raise
        raise error.for_watchlist(watchlist) from None
    return Query(query, ast)


class Matcher:
    """Every watchlist compiled once; :meth:`match` reports the ones an item matches."""

    def __init__(self, watchlists: Mapping[str, str]):
        # compile_query labels the error, so the first bad watchlist is named in the message.
        self._queries = [(name, compile_query(query, watchlist=name)) for name, query in watchlists.items()]

    def match(self, title: str, text: str) -> dict[str, list[Span]]:
        """Matched watchlists only, in input order, each with its spans (see :meth:`Query.match`)."""
        document = _Document(title, text)  # folded once, shared by every watchlist
        matched: dict[str, list[Span]] = {}
        for name, query in self._queries:
            spans = query._match(document)
            if spans is not None:
                matched[name] = spans
        return matched
