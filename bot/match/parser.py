"""Reading a watchlist query: the tokenizer and a recursive-descent parser that build the syntax tree.

The parser is also where every size limit of bot/match/limits.py is checked, before it recurses, so
no query from any entry point can reach the compiler (or a RecursionError) without passing them.
Errors are QueryError with the 0-based position of the offending character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.errors import QueryError
from bot.match.fold import fold, has_alnum
from bot.match.limits import (
    MAX_DEPTH,
    MAX_NEAR_DISTANCE,
    MAX_QUERY_LENGTH,
    MAX_TERMS,
    MAX_WORD_LENGTH,
    MIN_WILDCARD_PREFIX,
)
from bot.match.syntax import FIELDS, And, Near, Node, Not, Or, Phrase, Term, children


def parse(query: str) -> Node:
    """The syntax tree of ``query``; raises QueryError (without a watchlist name) if it is invalid."""
    return _Parser(query).parse()


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
_NEAR_OPERATOR = re.compile(r"NEAR/(\d+)")


def _word_end(query: str, start: int) -> int:
    end = start
    while end < len(query) and not query[end].isspace() and query[end] not in _WORD_STOP:
        end += 1
    return end


def _tokenize(query: str) -> list[_Token]:
    if len(query) > MAX_QUERY_LENGTH:
        problem = f"query is too long: {len(query):,} characters, at most {MAX_QUERY_LENGTH:,}"
        raise QueryError(problem, MAX_QUERY_LENGTH, query=query)
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
                    raise QueryError("NEAR needs a distance in words, such as NEAR/5", i, query=query)
                digits = near.group(1).lstrip("0") or "0"  # int() refuses thousands of digits: check first
                if len(digits) > len(str(MAX_NEAR_DISTANCE)) or int(digits) > MAX_NEAR_DISTANCE:
                    problem = f"NEAR distance is too large: at most NEAR/{MAX_NEAR_DISTANCE}"
                    raise QueryError(problem, i, query=query)
                tokens.append(_Token("NEAR", word, i, int(digits)))
            else:
                tokens.append(_Token(word if word in _OPERATORS else "word", word, i))
            i = end
    tokens.append(_Token("end", "", len(query.rstrip())))
    return tokens


class _Parser:
    """Recursive descent over the grammar (NOT and "(" recurse; each first checks the depth)::

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
        self.open = 0  # parentheses and NOTs being parsed: the recursion depth to bound
        self.depths: dict[int, int] = {}  # id(node) -> depth of its subtree (a leaf's is 0)
        self.terms = 0

    def error(self, problem: str, position: int) -> QueryError:
        return QueryError(problem, position, query=self.query)

    def too_deep(self, position: int) -> QueryError:
        return self.error(f"query is nested too deeply: at most {MAX_DEPTH} levels", position)

    def enter(self, token: _Token) -> None:
        """About to recurse for ``token`` (a "(" or a NOT); leave() when done."""
        self.open += 1
        if self.open > MAX_DEPTH:
            raise self.too_deep(token.position)

    def leave(self) -> None:
        self.open -= 1

    def nested(self, node: Node, position: int) -> Node:
        """``node`` with its depth recorded; everything after the parser recurses over the tree."""
        depth = 1 + max(self.depths.get(id(child), 0) for child in children(node))
        if depth > MAX_DEPTH:
            raise self.too_deep(position)
        self.depths[id(node)] = depth
        return node

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
        position = self.peek().position
        while self.peek().kind == "OR":
            self.advance()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else self.nested(Or(tuple(operands)), position)

    def parse_and(self) -> Node:
        operands = [self.parse_near()]
        position = self.peek().position
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.advance()
            elif kind not in _STARTS_OPERAND:
                break
            operands.append(self.parse_near())
        return operands[0] if len(operands) == 1 else self.nested(And(tuple(operands)), position)

    def parse_near(self) -> Node:
        start = self.peek().position
        left = self.parse_unary()
        while self.peek().kind == "NEAR":
            operator = self.advance()
            self.check_positional(left, operator, start)
            start = self.peek().position
            right = self.parse_unary()
            self.check_positional(right, operator, start)
            left = self.nested(Near((left, right), operator.distance), operator.position)
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
            self.enter(token)
            operand = self.parse_unary()
            self.leave()
            return self.nested(Not(operand), token.position)
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
        if token.kind in ("word", "exact", "phrase"):
            self.terms += 1
            if self.terms > MAX_TERMS:
                raise self.error(f"too many terms: at most {MAX_TERMS} terms and phrases", token.position)
        if token.kind == "word":
            _check_word(token.text, token.position, self.query, in_phrase=False)
            return Term(token.text, token.position, self.field)
        if token.kind == "exact":
            _check_word(token.text, token.position + 1, self.query, in_phrase=False)
            return Term(token.text, token.position, self.field, exact=True)
        if token.kind == "phrase":
            return self.phrase(token)
        if token.kind == "(":
            self.enter(token)
            inner = self.parse_or()
            close = self.peek()
            if close.kind != ")":
                raise self.error('expected ")"', close.position)
            self.advance()
            self.leave()
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
        if not any(has_alnum(word) for word, _ in found):
            raise self.error("a phrase needs at least one letter or digit", token.position)
        return Phrase(tuple(word for word, _ in found), token.position, self.field)


def _check_word(word: str, position: int, query: str, *, in_phrase: bool) -> None:
    if len(word) > MAX_WORD_LENGTH:
        problem = f"word is too long: {len(word):,} characters, at most {MAX_WORD_LENGTH}"
        raise QueryError(problem, position, query=query)
    star = word.find("*")
    if star >= 0 and star != len(word) - 1:
        raise QueryError('"*" is only allowed at the end of a word', position + star, query=query)
    if star >= 0:
        if sum(char.isalnum() for char in fold(word)) < MIN_WILDCARD_PREFIX:
            raise QueryError(
                f'wildcard is too broad: put at least {MIN_WILDCARD_PREFIX} letters or digits before "*"',
                position,
                query=query,
            )
    elif not in_phrase and not has_alnum(word):
        # Phrases may hold punctuation words ("Tom & Jerry"); a lone "&" term would match nothing useful.
        raise QueryError("a term needs at least one letter or digit", position, query=query)
