"""Search on PostgreSQL: each item's words as a tsvector (GIN-indexed), and the FTS5 expression of
bot.history turned into the tsquery that finds the same candidates.

The lexemes are the matcher's own words (folded and split by bot.match.fold), not what a PostgreSQL
text search configuration would make of the text: the candidates are then exactly the items that
have the words bot.history requires, and the matcher confirms each, as on SQLite. Title words have
weight A and text words B, so that title: and text: search one field. A word too long for a lexeme
is left out and its item listed in items_fts_fallback (a candidate for every search).
"""

from __future__ import annotations

import re

from bot.match.fold import fold, spaced

WORDS_SQL = "CAST(? AS tsvector)"
MAX_LEXEME = 2046  # bytes: PostgreSQL's limit for one lexeme
_WEIGHTS = {"title": "A", "text": "B"}


def _words(text: str) -> set[str]:
    return set(spaced(fold(text)).split())


def _quote(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def search_words(title: str, text: str) -> tuple[str]:
    """The tsvector literal of an item (one parameter for WORDS_SQL)."""
    title_words, text_words = _words(title), _words(text)
    parts = []
    for word in sorted(title_words | text_words):
        if len(word.encode()) > MAX_LEXEME:
            continue
        positions = ",".join(
            p for p, inside in (("1A", word in title_words), ("2B", word in text_words)) if inside
        )
        parts.append(f"{_quote(word)}:{positions}")
    return (" ".join(parts),)


def needs_fallback(title: str, text: str) -> bool:
    """An item with a word no lexeme can hold: search must hand it to the matcher every time."""
    return any(len(w.encode()) > MAX_LEXEME for w in _words(title) | _words(text))


# What bot.history writes: "word", "prefix"*, AND, OR, parentheses, and {field} : ( … ).
_TOKEN = re.compile(r'\s+|"((?:[^"]|"")*)"(\*?)|\{(\w+)\}\s*:\s*\(|\(|\)|AND\b|OR\b')


def tsquery(fts5: str) -> str:
    """The tsquery text matching what the FTS5 expression ``fts5`` matches (ValueError on other syntax)."""
    out: list[str] = []
    scopes: list[tuple[int, str]] = []  # (paren depth where a field's scope ends, its weight)
    depth = 0
    position = 0
    while position < len(fts5):
        m = _TOKEN.match(fts5, position)
        if m is None:
            raise ValueError(f"not an FTS5 expression bot.history writes: {fts5!r}")
        position = m.end()
        token = m.group(0)
        if token.isspace():
            continue
        if m.group(1) is not None:
            word = m.group(1).replace('""', '"')
            weight = scopes[-1][1] if scopes else ""
            star = "*" if m.group(2) else ""
            out.append(f"{_quote(word)}:{star}{weight}" if star or weight else _quote(word))
        elif m.group(3) is not None:
            if m.group(3) not in _WEIGHTS:
                raise ValueError(f"no such field in the search index: {m.group(3)}")
            depth += 1
            scopes.append((depth, _WEIGHTS[m.group(3)]))
            out.append("(")
        elif token == "(":
            depth += 1
            out.append("(")
        elif token == ")":
            if scopes and scopes[-1][0] == depth:
                scopes.pop()
            depth -= 1
            out.append(")")
        else:
            out.append(" & " if token == "AND" else " | ")
    return "".join(out)
