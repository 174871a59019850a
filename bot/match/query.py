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
- At most limits.MAX_QUERY_LENGTH characters, MAX_TERMS terms, MAX_DEPTH levels deep, words of at most
  MAX_WORD_LENGTH characters and NEAR/n up to MAX_NEAR_DISTANCE (bot/match/limits.py).

Title and text are searched as two separate fields: a phrase never runs from the title into the text.
Matching runs on a folded copy of each field in which every original character became at most one
character, so match offsets map back to the original string exactly (bot/match/fold.py).

This module is the public face of the package: the syntax tree comes from bot/match/parser.py, terms
become regexes in bot/match/compile.py, and bot/match/evaluate.py runs them on an item. Speed: a
:class:`Matcher` compiles every watchlist once into shared leaves (one regex per distinct term or
phrase). For each item one regex scan over the folded words finds the "trigger" words, which say which
leaves *could* occur (bot/match/prefilter.py); only watchlists with such a leaf are evaluated, and
only those leaves run their regex. Most news items contain none of the trigger words, so most items
cost a fold and that one scan.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.errors import QueryError
from bot.match.compile import Compiler, Leaf
from bot.match.evaluate import Build, Document, Hit
from bot.match.parser import parse
from bot.match.prefilter import Index
from bot.match.syntax import DEFAULT_FIELDS, FIELDS, And, Near, Node, Not, Or, Phrase, Term
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


class Query:
    """A compiled query. Build it with :func:`compile_query`."""

    def __init__(self, text: str, ast: Node, compiler: Compiler | None = None):
        self.text = text
        self.ast = ast
        self._compiler = compiler or Compiler()
        build = Build(self._compiler, [])
        self._evaluate, self._need = build.evaluate(ast, False)
        # A term repeated in the query is reported once; its first spelling names it.
        positive: dict[int, tuple[Leaf, str]] = {}
        for leaf, term in build.positive:
            positive.setdefault(leaf.id, (leaf, term))
        self._positive = tuple(positive.values())
        self._index: Index | None = None

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
            self._index = Index(self._compiler.leaves)
        return self._match(Document(title, text, source, self._index))

    def _match(self, document: Document) -> list[Span] | None:
        if not self._evaluate(document):
            return None
        # Every positive term that occurs is reported, even one in an OR branch that did not decide the
        # match: the reader sees all the words the watchlist cares about.
        spans: dict[Hit, Span] = {}
        for leaf, term in self._positive:
            for hit in document.hits(leaf):
                if hit[0] in DEFAULT_FIELDS and hit not in spans:
                    spans[hit] = document.span(hit, term)
        return sorted(spans.values(), key=lambda span: (span.field != "title", span.start, span.end))


def compile_query(query: str, *, watchlist: str | None = None) -> Query:
    """Parse ``query`` once. Raises QueryError (labelled with ``watchlist`` when given) if it is invalid."""
    return _compile(query, watchlist, None)


def _compile(query: str, watchlist: str | None, compiler: Compiler | None) -> Query:
    try:
        ast = parse(query)
    except QueryError as error:
        if watchlist is None:
            raise
        raise error.for_watchlist(watchlist) from None
    return Query(query, ast, compiler)


class Matcher:
    """Every watchlist compiled once; :meth:`match` reports the ones an item matches."""

    def __init__(self, watchlists: Mapping[str, str]):
        compiler = Compiler()  # shared: a term used by ten watchlists is searched once per item
        # _compile labels the error, so the first bad watchlist is named in the message.
        self._queries = [(name, _compile(query, name, compiler)) for name, query in watchlists.items()]
        self._index = Index(compiler.leaves)
        # Which watchlists to evaluate when a leaf may occur; those with no need (NOT-only) always are.
        self._always = frozenset(i for i, (_, query) in enumerate(self._queries) if query._need is None)
        self._by_leaf: dict[int, list[int]] = {}
        for i, (_, query) in enumerate(self._queries):
            for leaf_id in query._need or ():
                self._by_leaf.setdefault(leaf_id, []).append(i)

    def match(self, title: str, text: str, *, source: str = "") -> dict[str, list[Span]]:
        """Matched watchlists only, in input order, each with its spans (see :meth:`Query.match`)."""
        document = Document(title, text, source, self._index)  # folded once, shared by every watchlist
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
