"""The public face of the watchlist query language, whose code now lives in bot/match/parser.py.

A one-commit step so that `git log --follow bot/match/parser.py` keeps query.py's history: the next
commit splits parser.py into modules and makes this module the real facade.
"""

from bot.match.parser import (  # noqa: F401 - re-exported for every importer of bot.match.query
    _FOLD,
    FIELDS,
    And,
    Matcher,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Query,
    Term,
    _base_char,
    _Document,
    _Field,
    _fold,
    _fold_char,
    _fold_mapped,
    _fold_slow,
    _Index,
    _word_triggers,
    compile_query,
)
