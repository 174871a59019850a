"""What a feed body goes through before any XML parser sees it: byte-level defences against
bodies built to make parsing explode in memory or in time.

* Every ``<!DOCTYPE …>`` (with its internal subset) and every ``<!ENTITY …>`` is removed, so
  nothing is declared and nothing can be expanded (billion laughs, external entities).
* Character references to code points XML forbids become U+FFFD.
* An element with more than ``MAX_ATTRIBUTES`` attributes refuses the body: both parsers spend
  time quadratic in the attributes of one element (lxml's ``items()``, SAX's
  ``getValueByQName``): 20,000 attributes took 1.7 s on the fast path and 8.5 s in feedparser,
  40,000 took 24 s in lxml alone.
* A document is cut before its (MAX_ENTRIES + 1)th entry, and, for feedparser, before its
  ``MAX_TAGS``th markup character or ``MAX_REFERENCES``th reference (see ``markup_cut``).

Everything here scans the document a bounded number of times, and counts only what is markup:
text inside CDATA sections and comments (``<item>`` in an escaped description) is not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A feed element needs a handful of attributes; a root declares perhaps twenty namespaces. At
# this cap the quadratic costs above are well under a millisecond per element.
MAX_ATTRIBUTES = 64
# feedparser spends 15-60 µs of Python per tag (start or end), in its strict parser and again in
# its lenient one for a malformed document: 190,000 bare "<a>" (0.58 MB) took 14 s in the issue's
# poll, 6 s on a 2-core CI machine. A real feed rarely has 20,000 tags outside CDATA. Cut at
# 50,000, that document costs 1.4 s of CPU. (The fast path, lxml, is not cut: ~1 µs a tag.)
MAX_TAGS = 50_000
# An entity or character reference costs feedparser ~4 µs; escaped HTML is full of them. At
# both caps, a malformed document (the slowest the caps allow) costs ~4 s of CPU.
MAX_REFERENCES = 500_000

_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
# What both a DOCTYPE and an ENTITY declaration start with, in any case.
_DECLARATION_START = re.compile(rb"<![DdEe]")
_DOCTYPE_OUTSIDE_SUBSET = re.compile(rb"[\"'\[>]")
_DOCTYPE_INSIDE_SUBSET = re.compile(rb"[\"'\]]|<!--")
# A stray declaration outside any DOCTYPE; the quoted parts may contain ">". Every part after
# the keyword is optional, so the pattern cannot fail and backtrack.
_ENTITY_DECLARATION = re.compile(rb"<!ENTITY(?:[^>\"']+|\"[^\"]*\"|'[^']*')*>?", re.IGNORECASE)
# A numeric character reference; feedparser crashes on some that XML forbids (&#xD800;).
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9A-Fa-f]+)|([0-9]+));")
# The start tag of an RSS/RDF <item> or Atom <entry>, with or without a namespace prefix.
_ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)(?=[\s/>])")
# The start of text no parser reads as markup (it ends at "]]>" or "-->").
_HIDDEN_START = re.compile(rb"<!(?:\[CDATA\[|--)")
# A start tag with more than MAX_ATTRIBUTES attributes. Each attribute can match one way only
# (an unquoted value cannot start with a quote) and is atomic, so a tag that has fewer fails
# after one pass over it: the search is linear in the document.
_VALUE = rb"""(?:"[^"<]*"|'[^'<]*'|[^\s>"'<][^\s>]*)"""
_MANY_ATTRIBUTES = re.compile(
    rb"<[A-Za-z_][^\s/>]*(?>\s+[^\s=/>]+\s*=\s*" + _VALUE + rb"){%d}" % (MAX_ATTRIBUTES + 1)
)


def markup_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every stretch of ``data`` outside CDATA sections and comments."""
    spans = []
    pos = 0
    while (hidden := _HIDDEN_START.search(data, pos)) is not None:
        if hidden.start() > pos:
            spans.append((pos, hidden.start()))
        close = b"]]>" if hidden.group() == b"<![CDATA[" else b"-->"
        end = data.find(close, hidden.end())
        if end < 0:  # never closed: the rest is not markup either
            return spans
        pos = end + len(close)
    if pos < len(data):
        spans.append((pos, len(data)))
    return spans


def attribute_problem(data: bytes, spans: Sequence[tuple[int, int]]) -> str | None:
    """Why ``data`` is refused for the attributes of one element, or None. (``spans``: its
    markup_spans.)"""
    for start, end in spans:
        found = _MANY_ATTRIBUTES.search(data, start, end)
        if found is not None:
            line = data.count(b"\n", 0, found.start()) + 1
            return f"an element with more than {MAX_ATTRIBUTES} attributes at line {line}"
    return None


def first_entries(data: bytes, spans: Sequence[tuple[int, int]], limit: int) -> tuple[bytes, int]:
    """``data`` cut before its (``limit`` + 1)th entry, and how many entries it has.

    feedparser parses a whole document before anything can be dropped, at about a second per
    10,000 entries, so a huge feed is cut first; the cut document is then read by feedparser's
    lenient parser, which keeps the complete entries before the cut.
    """
    total = 0
    cut = None
    for start, end in spans:
        for match in _ENTRY_START.finditer(data, start, end):
            total += 1
            if total == limit + 1:
                cut = match.start()
    return (data if cut is None else data[:cut]), total


def markup_cut(data: bytes, spans: Sequence[tuple[int, int]]) -> tuple[int, str] | None:
    """Where to cut ``data`` before feedparser reads it, and why; None when it is within bounds.

    The cut is at the (MAX_TAGS + 1)th "<" or the (MAX_REFERENCES + 1)th "&" outside CDATA and
    comments, whichever comes first; like a cut at an entry, feedparser's lenient parser then
    keeps what came before.
    """
    tags = references = 0
    for start, end in spans:
        in_span = data.count(b"<", start, end), data.count(b"&", start, end)
        if tags + in_span[0] <= MAX_TAGS and references + in_span[1] <= MAX_REFERENCES:
            tags, references = tags + in_span[0], references + in_span[1]
            continue
        cuts = []
        if tags + in_span[0] > MAX_TAGS:
            cuts.append((_nth(data, b"<", MAX_TAGS + 1 - tags, start, end), f"more than {MAX_TAGS:,} tags"))
        if references + in_span[1] > MAX_REFERENCES:
            where = _nth(data, b"&", MAX_REFERENCES + 1 - references, start, end)
            cuts.append((where, f"more than {MAX_REFERENCES:,} entity references"))
        return min(cuts)
    return None


def _nth(data: bytes, char: bytes, n: int, start: int, end: int) -> int:
    """The position of the ``n``th ``char`` in ``data[start:end]`` (there are at least ``n``).

    A bisection on bytes.count: some twenty passes in C, where a loop over the matches would
    be up to a million steps of Python.
    """
    low, high = start, end - 1  # the answer is in [low, high]
    while low < high:
        middle = (low + high) // 2
        if data.count(char, start, middle + 1) >= n:
            high = middle
        else:
            low = middle + 1
    return low


def strip_declarations(data: bytes) -> tuple[bytes, int]:
    """``data`` without any DOCTYPE (internal subset included) or ENTITY declaration; and how many.

    Each declaration is replaced by the newlines it contained, so parse errors still report
    the line numbers of the original document.
    """
    if _DECLARATION_START.search(data) is None:  # CDATA sections and comments start with "<!" too
        return data, 0
    parts: list[bytes] = []
    removed = 0
    pos = 0
    while (match := _DOCTYPE.search(data, pos)) is not None:
        end = _doctype_end(data, match.end())
        if end is None:
            # Unterminated: the scan read to the end of the document, and doing that again for
            # each later "<!DOCTYPE" would be quadratic. Without its keyword no DOCTYPE declares
            # anything, so from here on only the keywords go.
            rest, count = _DOCTYPE.subn(b"", data[match.start() :])
            parts += (data[pos : match.start()], rest)
            removed += count
            pos = len(data)
            break
        parts += (data[pos : match.start()], b"\n" * data.count(b"\n", match.start(), end))
        removed += 1
        pos = end
    parts.append(data[pos:])
    data = b"".join(parts)

    def blank(entity: re.Match[bytes]) -> bytes:
        nonlocal removed
        removed += 1
        return b"\n" * entity.group().count(b"\n")

    return _ENTITY_DECLARATION.sub(blank, data), removed


def replace_bad_char_refs(data: bytes) -> bytes:
    """Character references to code points XML forbids (NUL, surrogates, > U+10FFFF) become U+FFFD.

    feedparser's lenient parser turns ``&#xD800;`` into a string it then fails to encode,
    which would cost the whole feed rather than one character.
    """
    if _CHAR_REF.search(data) is None:  # re finds the "&#" prefix faster than bytes.find
        return data

    def fix(ref: re.Match[bytes]) -> bytes:
        digits = ref.group(1) or ref.group(2)
        if len(digits) <= 8:
            code = int(digits, 16) if ref.group(1) else int(digits)
            if (
                code in (0x9, 0xA, 0xD)
                or 0x20 <= code <= 0xD7FF
                or 0xE000 <= code <= 0xFFFD
                or 0x10000 <= code <= 0x10FFFF
            ):
                return ref.group()
        return b"&#xFFFD;"

    return _CHAR_REF.sub(fix, data)


def _doctype_end(data: bytes, pos: int) -> int | None:
    """Index just past the DOCTYPE whose body starts at ``pos``; None when it never ends.

    Quoted literals and comments may contain "]" and ">", so they are skipped whole.
    """
    in_subset = False
    while True:
        match = (_DOCTYPE_INSIDE_SUBSET if in_subset else _DOCTYPE_OUTSIDE_SUBSET).search(data, pos)
        if match is None:
            return None
        token = match.group()
        if token in (b'"', b"'", b"<!--"):
            close = data.find(b"-->" if token == b"<!--" else token, match.end())
            if close < 0:
                return None
            pos = close + (3 if token == b"<!--" else 1)
        elif token == b"[":
            in_subset, pos = True, match.end()
        elif token == b"]":
            in_subset, pos = False, match.end()
        else:  # ">" outside the internal subset
            return match.end()
