"""Evaluating a compiled query on one item: the item's folded fields and the tree turned into closures.

A ``Document`` folds an item once and caches each leaf's hits, so watchlists sharing a term search
once. ``Build`` turns a syntax tree into nested closures over a document (cheaper per call than
walking the tree) and works out which leaves a match needs, for the prefilter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.match.compile import Compiler, Leaf
from bot.match.fold import Field
from bot.match.prefilter import Index
from bot.match.syntax import FIELDS, And, Near, Node, Not, Or, Phrase, Term
from bot.model import Span

Hit = tuple[int, int, int]  # field number, start, end in the folded string
Occurrence = tuple[int, int, int]  # field number, first word, last word


class Document:
    """One item being matched; caches each leaf's hits so watchlists sharing a term search once."""

    __slots__ = ("_hits", "_occurrences", "fields", "possible")

    def __init__(self, title: str, text: str, source: str, index: Index | None):
        self.fields = (Field(title), Field(text), Field(source))
        # None (no index) means "any leaf may occur": the reference behaviour the prefilter must match.
        self.possible = index.possible(self.fields) if index is not None else None
        self._hits: dict[int, list[Hit]] = {}
        self._occurrences: dict[int, list[Occurrence]] = {}

    def hits(self, leaf: Leaf) -> list[Hit]:
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

    def occurrences(self, leaf: Leaf) -> list[Occurrence]:
        found = self._occurrences.get(leaf.id)
        if found is None:
            found = []
            for number, start, end in self.hits(leaf):
                field = self.fields[number]
                found.append((number, field.word_index(start), field.word_index(end - 1)))
            self._occurrences[leaf.id] = found
        return found

    def span(self, hit: Hit, term: str) -> Span:
        number, start, end = hit
        return Span(FIELDS[number], *self.fields[number].original_span(start, end), term)


Evaluate = Callable[[Document], bool]
Need = frozenset[int] | None  # leaf ids one of which must be possible for a match; None = no such set
_Positions = Callable[[Document], list[Occurrence]]


@dataclass
class Build:
    """Compiles one syntax tree; ``positive`` collects the (leaf, term as written) pairs spans report."""

    compiler: Compiler
    positive: list[tuple[Leaf, str]]

    def leaf(self, node: Term | Phrase, negated: bool) -> Leaf:
        leaf = self.compiler.leaf(node)
        if not negated:
            self.positive.append((leaf, node.text))
        return leaf

    def evaluate(self, node: Node, negated: bool) -> tuple[Evaluate, Need]:
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

    def positions(self, node: Node, negated: bool) -> tuple[_Positions, Need]:
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

        def near(document: Document) -> list[Occurrence]:
            found: list[Occurrence] = []
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
