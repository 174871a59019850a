"""The size limits every watchlist query is held to, wherever it comes from (config, Slack, CLI).

The parser (bot/match/parser.py) checks them while it reads a query, so no entry point can skip them,
and everything after the parser may recurse over the tree and build regexes without further checks.
README.md ("Watchlist queries", "Limits") documents them for users.
"""

from __future__ import annotations

# The longest real watchlists seen (config/newsalert.toml, bench/match_corpus.py) are under 600
# characters, 20 terms and 3 levels deep, with NEAR distances up to 10; each limit leaves room for
# ten times that or more, while keeping every query cheap to compile and to match.
MAX_QUERY_LENGTH = 10_000  # characters, the whole query
MAX_WORD_LENGTH = 100  # characters of one word, a term or a phrase word ("Kinderpornografie" has 17)
MAX_TERMS = 500  # terms and phrases in one query
MAX_DEPTH = 32  # levels of parentheses, NOT and NEAR (and AND/OR nested inside them)
MAX_NEAR_DISTANCE = 100  # words in NEAR/n: about a paragraph
MIN_WILDCARD_PREFIX = 3  # "ab*" would flood a channel; 3 letters is still broad but deliberate
