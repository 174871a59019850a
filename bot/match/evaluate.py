"""Evaluating a compiled query on one item: the item's folded fields and the tree turned into closures.

A ``Document`` folds an item once and caches each leaf's hits, so watchlists sharing a term search
once. ``Build`` turns a syntax tree into nested closures over a document (cheaper per call than
walking the tree) and works out which leaves a match needs, for the prefilter.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from bot.match import near
from bot.match.compile import Compiler, Leaf
from bot.match.fold import Field
from bot.match.near import FIELD_STRIDE, Interval
from bot.match.prefilter import Index
from bot.match.syntax import FIELDS, And, Near, Node, Not, Or, Phrase, Term
from bot.model import Span

Hit = tuple[int, int, int]  # field number, start, end in the folded string


class Document:
    """One item being matched; caches each leaf's hits so watchlists sharing a term search once."""

    __slots__ = ("_bounds", "_hits", "_occurrences", "fields", "possible")

    def __init__(self, title: str, text: str, source: str, index: Index | None):
        self.fields = (Field(title), Field(text), Field(source))
        # None (no index) means "any leaf may occur": the reference behaviour the prefilter must match.
        self.possible = index.possible(self.fields) if index is not None else None
        self._hits: dict[int, list[Hit]] = {}
        self._occurrences: dict[int, list[Interval]] = {}
        self._bounds: dict[int, tuple[list[int], list[int]]] = {}

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

    def occurrences(self, leaf: Leaf) -> list[Interval]:
        """The leaf's hits as word intervals for NEAR (bot/match/near.py), sorted: fields in order, and
        a regex's matches in a field do not overlap."""
        found = self._occurrences.get(leaf.id)
        if found is None:
            found = []
            for number, start, end in self.hits(leaf):
                words, base = self.fields[number].word_starts, number * FIELD_STRIDE - 1  # see Field
                found.append((base + bisect_right(words, start), base + bisect_right(words, end - 1)))
            self._occurrences[leaf.id] = found
        return found

    def bounds(self, leaf: Leaf) -> tuple[list[int], list[int]]:
        """(first words, last words) of the leaf's occurrences, each ascending as the occurrences are."""
        found = self._bounds.get(leaf.id)
        if found is None:
            occurrences = self.occurrences(leaf)
            found = [first for first, _ in occurrences], [last for _, last in occurrences]
            self._bounds[leaf.id] = found
        return found

    def span(self, hit: Hit, term: str) -> Span:
        number, start, end = hit
        return Span(FIELDS[number], *self.fields[number].original_span(start, end), term)


Evaluate = Callable[[Document], bool]
Need = frozenset[int] | None  # leaf ids one of which must be possible for a match; None = no such set
_Bounds = Callable[[Document], tuple[list[int], list[int]]]  # (first words, last words), each sorted
_Intervals = Callable[[Document], list[Interval]]


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
        """Nested closures and the leaves a match needs.

        A leaf under an odd number of NOTs is negative: its occurrences are the reason *not* to match, so
        they are never reported as spans. Recursion is bounded by limits.MAX_DEPTH, which the parser checks.
        """
        if isinstance(node, Term | Phrase):
            leaf = self.leaf(node, negated)
            return (lambda document: bool(document.hits(leaf))), frozenset({leaf.id})
        if isinstance(node, Not):
            inner, _ = self.evaluate(node.operand, not negated)
            return (lambda document: not inner(document)), None
        if isinstance(node, Near):
            return self.near(node, negated)
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

    def needs(self, node: Node) -> frozenset[int]:
        """The leaves a NEAR operand needs: a NEAR needs both sides, so either side's set will do."""
        if isinstance(node, Term | Phrase):
            return frozenset({self.compiler.leaf(node).id})
        if isinstance(node, Or):
            return frozenset().union(*(self.needs(operand) for operand in node.operands))
        assert isinstance(node, Near)  # the parser admits nothing else under a NEAR
        return min((self.needs(operand) for operand in node.operands), key=self.need_cost)

    def near(self, node: Near, negated: bool) -> tuple[Evaluate, Need]:
        """A NEAR whose consumer asks only whether it holds (see bot/match/near.py)."""
        (left, right), distance = (self.bounds(operand, negated) for operand in node.operands), node.distance

        def holds(document: Document) -> bool:
            left_starts, left_ends = left(document)
            if not left_ends:
                return False
            right_starts, right_ends = right(document)
            return near.touches(left_ends, right_starts, distance) or near.touches(
                right_ends, left_starts, distance
            )

        return holds, self.needs(node)

    def bounds(self, node: Node, negated: bool) -> _Bounds:
        """First and last words of a NEAR operand's occurrences (a NEAR's: of its hulls)."""
        if isinstance(node, Near):
            (left, right), distance = (self.intervals(o, negated) for o in node.operands), node.distance

            def near_bounds(document: Document) -> tuple[list[int], list[int]]:
                lefts = left(document)
                return near.hull_bounds(lefts, right(document), distance) if lefts else ([], [])

            return near_bounds
        if isinstance(node, Term | Phrase):
            leaf = self.leaf(node, negated)
            return lambda document: document.bounds(leaf)
        assert isinstance(node, Or)  # the parser admits nothing else under a NEAR
        parts = tuple(self.bounds(operand, negated) for operand in node.operands)

        def union(document: Document) -> tuple[list[int], list[int]]:
            found = [part(document) for part in parts]
            return sorted([s for starts, _ in found for s in starts]), sorted(
                [e for _, ends in found for e in ends]
            )

        return union

    def intervals(self, node: Node, negated: bool) -> _Intervals:
        """Word intervals of a NEAR operand: a term, a phrase, an OR group of them, or another NEAR."""
        if isinstance(node, Term | Phrase):
            leaf = self.leaf(node, negated)
            return lambda document: document.occurrences(leaf)
        if isinstance(node, Or):
            parts = tuple(self.intervals(operand, negated) for operand in node.operands)
            # Repeats (two leaves matching the same words) cost a little and change no answer.
            return lambda document: [i for part in parts for i in part(document)]
        assert isinstance(node, Near)  # the parser admits nothing else under a NEAR
        (left, right), distance = (self.intervals(o, negated) for o in node.operands), node.distance

        def hulls(document: Document) -> list[Interval]:
            lefts = left(document)
            return near.hulls(lefts, right(document), distance) if lefts else []

        return hulls
