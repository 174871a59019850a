"""NEAR without comparing every pair: sweeps and binary searches over sorted word positions.

``a NEAR/d b`` holds when an occurrence of ``a`` and one of ``b`` lie in the same field, share no
word, and have at most ``d`` other words between them. An occurrence is an interval of word
positions, written as two keys ``field * FIELD_STRIDE + word number`` so that one integer comparison
also keeps fields apart (``d`` is far smaller than the stride). The result of a NEAR is the set of
hulls of its qualifying pairs; what its consumer needs of that set decides how it is computed:

- at the top of a query only whether it is empty (``touches``): one merge-like pass;
- as an operand of such a NEAR, only the hulls' first and last words, each set separately
  (``hull_bounds``): one binary search per occurrence;
- deeper in a chain of NEARs, the hulls themselves (``hulls``), in time proportional to the number of
  pairs close enough to qualify (for two terms, about d + 1 on each side of an occurrence).

All three give exactly what enumerating every pair gives (tests/test_query.py checks it against that).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

FIELD_STRIDE = 1 << 40  # more words than any field has; key = field * FIELD_STRIDE + word number
Interval = tuple[int, int]  # (first word key, last word key), first <= last


def touches(ends: Sequence[int], starts: Sequence[int], distance: int) -> bool:
    """Whether some start follows some end with at most ``distance`` words between: e < s <= e + d + 1.

    Both are sorted ascending. One pass: for each end the first start after it is the only candidate,
    and it only moves forward as the ends grow.
    """
    j, count = 0, len(starts)
    for end in ends:
        while j < count and starts[j] <= end:
            j += 1
        if j == count:
            return False
        if starts[j] <= end + distance + 1:
            return True
    return False


def _any_in(keys: Sequence[int], low: int, high: int) -> bool:
    """Whether the sorted ``keys`` hold one in [low, high]."""
    i = bisect_left(keys, low)
    return i < len(keys) and keys[i] <= high


def hull_bounds(
    left: Sequence[Interval], right: Sequence[Interval], distance: int
) -> tuple[list[int], list[int]]:
    """(sorted first words, sorted last words) of the hulls of ``left NEAR/distance right``.

    A pair's hull runs from the first word of its earlier interval to the last word of its later one.
    So an interval gives the hulls its first word when the other side has an interval starting at most
    ``distance`` words after its end, and its last word when the other side has one ending at most
    ``distance`` words before its start: no pair needs to be built.
    """
    starts: set[int] = set()
    ends: set[int] = set()
    for these, others in ((left, right), (right, left)):
        other_firsts = sorted(first for first, _ in others)
        other_lasts = sorted(last for _, last in others)
        for first, last in these:
            if _any_in(other_firsts, last + 1, last + distance + 1):
                starts.add(first)
            if _any_in(other_lasts, first - distance - 1, first - 1):
                ends.add(last)
    return sorted(starts), sorted(ends)


def hulls(left: Sequence[Interval], right: Sequence[Interval], distance: int) -> list[Interval]:
    """Every distinct hull of ``left NEAR/distance right``, sorted.

    Each interval is paired only with the other side's intervals starting within ``distance`` words
    after it (both orders are covered by swapping the sides), found by binary search: the work is the
    number of such pairs, never ``len(left) * len(right)``.
    """
    found: set[Interval] = set()
    for these, others in ((left, right), (right, left)):
        ordered = sorted(others)
        firsts = [first for first, _ in ordered]
        for first, last in these:
            i, high = bisect_right(firsts, last), last + distance + 1
            while i < len(firsts) and firsts[i] <= high:
                found.add((first, ordered[i][1]))
                i += 1
    return sorted(found)
