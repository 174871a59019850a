"""The syntax tree of a watchlist query: what bot.match.parser builds and everything after it reads.

Nodes are frozen values. ``Term`` and ``Phrase`` are the leaves; ``Not``, ``And``, ``Or`` and ``Near``
combine them. The language itself is described in bot/match/query.py and in README.md.
"""

from __future__ import annotations

from dataclasses import dataclass

FIELDS = ("title", "text", "source")  # the index of a name here is its field number everywhere
DEFAULT_FIELDS = (0, 1)  # title + text; the source name is searched only when asked for


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


def children(node: Node) -> tuple[Node, ...]:
    """The operands of ``node``; none for a term or a phrase."""
    if isinstance(node, Not):
        return (node.operand,)
    if isinstance(node, And | Or | Near):
        return node.operands
    return ()
