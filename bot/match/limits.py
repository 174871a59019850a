"""What a watchlist query may be: the bounds the parser and the compiler hold every query to."""

from __future__ import annotations

MIN_WILDCARD_PREFIX = 3  # "ab*" would flood a channel; 3 letters is still broad but deliberate
