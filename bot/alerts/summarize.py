"""Extractive summaries for alerts: the lead sentence plus the sentences that carry matched terms.

Everything here is a pure function over the cleaned plain-text body. Offsets are ``str``
indexes, so the renderer can bold exactly what the matcher matched.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from bot.model import Span, Summary

ELLIPSIS = "…"
_GAP = f" {ELLIPSIS} "  # marks that sentences were left out between two shown ones
_NEXT = " "  # neighbouring sentences read as they did in the article

_CLOSERS = "\"'”’»)]"
_OPENERS = "\"'“‘«(["
# A candidate sentence end: terminal punctuation plus the closing quotes/brackets that belong to
# the sentence, and only where whitespace (or the end) follows, so the dots in "1.2" and inside
# "U.S." never end a sentence. A line break is also a candidate: cleaned bodies put paragraphs
# on lines, and headings or bylines carry no punctuation.
_BREAK = re.compile(rf"[.!?…]+[{re.escape(_CLOSERS)}]*(?=\s|\Z)|\n")
_WORD = re.compile(r"[^\W\d_]+")
_INITIALISM = re.compile(r"(?:[a-z]\.)*[a-z]")  # "u.s", "u.n", "p.m", a middle initial "f"


def _words(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Always followed by a name or a clause, in news prose never the last word of a sentence.
_NEVER_FINAL = _words(
    "mr mrs ms messrs dr prof rev hon sen rep gov gen lt col capt sgt cmdr adm supt insp e.g i.e"
    " cf vs viz approx ca"
)
# Abbreviations before a number ("No. 5", "Art. 17"); as plain words ("the answer was no.") they
# can end a sentence, so only a following digit keeps them attached.
_BEFORE_NUMBER = _words("no nos vol vols p pp art arts sec ch fig op para")
# Either an abbreviation mid-sentence ("U.S. officials", "Feb. 5", "Acme Inc. said") or the last
# word of a sentence ("…in the U.S. The…"). Only a word that typically opens a sentence decides
# for a break; guessing the other way would split "U.S. President" far more often.
_AMBIGUOUS = _words(
    "jan feb mar apr jun jul aug sep sept oct nov dec etc inc ltd co corp llc plc bros dept univ"
    " assn est jr sr st mt ft ave blvd rd"
)
_STARTERS = _words(
    "the a an i he she it we they you this that these those there here its his her their our in"
    " on at as after before but and so yet if when while however meanwhile according officials"
    " some many most one"
)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Start/end offsets of each sentence in ``text``, with surrounding whitespace trimmed.

    Text with no sentence punctuation at all comes back as one sentence.
    """
    cuts = [0]
    for m in _BREAK.finditer(text):
        nxt = _skip_space(text, m.end())
        if nxt == len(text):
            break  # the rest is whitespace; the final trim drops it
        if m.group() == "\n":
            # A blank line is a paragraph break whatever follows; a single line break only ends
            # a sentence when the next line reads like a new one, so hard-wrapped prose holds.
            if "\n" in text[m.end() : nxt] or _opens_sentence(text, nxt):
                cuts.append(m.start())
        elif _ends_sentence(text, m, nxt):
            cuts.append(m.end())
    cuts.append(len(text))

    sentences = []
    for lo, hi in itertools.pairwise(cuts):
        start = _skip_space(text, lo)
        end = hi
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            sentences.append((start, end))
    return sentences


def summarize(text: str, spans: Sequence[Span], *, limit: int = 400, max_sentences: int = 3) -> Summary:
    """The lead sentence plus up to ``max_sentences - 1`` sentences that carry matched terms.

    The result never exceeds ``limit`` characters. Only spans with ``field == "text"`` count;
    ``Summary.bold`` holds their ranges remapped into the summary, sorted and merged.
    """
    if limit < 1 or max_sentences < 1:
        raise ValueError(f"limit and max_sentences must be positive, got {limit} and {max_sentences}")
    sentences = split_sentences(text)
    if not sentences:
        return Summary("")

    hits = _text_hits(text, spans)
    shown = [_squeeze(text, start, end) for start, end in sentences]

    lead, lead_map = shown[0]
    if len(lead) > limit:
        return _truncated_lead(lead, lead_map, sentences[0], hits, limit)

    terms = [
        {key for start, end, key in hits if start < s_end and end > s_start} for s_start, s_end in sentences
    ]
    lengths = [len(sentence) for sentence, _ in shown]
    chosen = [0]
    # Most distinct terms first, so the sentence that best explains the match wins the room;
    # earlier first among equals. A sentence that does not fit is skipped, not cut, and a
    # shorter one further down may still fit.
    candidates = sorted((i for i in range(1, len(sentences)) if terms[i]), key=lambda i: (-len(terms[i]), i))
    for i in candidates:
        if len(chosen) == max_sentences:
            break
        trial = sorted([*chosen, i])
        if _joined_length(trial, lengths) <= limit:
            chosen = trial

    parts: list[str] = []
    bold: list[tuple[int, int]] = []
    offset = 0
    previous = None
    for i in chosen:
        if previous is not None:
            sep = _NEXT if i == previous + 1 else _GAP
            parts.append(sep)
            offset += len(sep)
        sentence, cum = shown[i]
        bold.extend(_remap(hits, sentences[i], cum, offset, len(sentence)))
        parts.append(sentence)
        offset += len(sentence)
        previous = i
    return Summary("".join(parts), _merge(bold))


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _opens_sentence(text: str, i: int) -> bool:
    i = _skip_openers(text, i)
    return i < len(text) and (text[i].isupper() or text[i].isdigit() or text[i] in "$€£")


def _ends_sentence(text: str, m: re.Match[str], nxt: int) -> bool:
    # Lower case after the mark means the sentence goes on: "“Is it real?” the agency asked",
    # "He paused… then went on".
    if not _opens_sentence(text, nxt):
        return False
    if m.group().rstrip(_CLOSERS) != ".":
        return True  # "?", "!", "…" and "..." carry no abbreviation doubt
    word_start = m.start()
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start : m.start()].lstrip(_OPENERS).lower()
    if word in _NEVER_FINAL:
        return False
    if word in _BEFORE_NUMBER:
        return not text[nxt].isdigit()
    if word in _AMBIGUOUS or _INITIALISM.fullmatch(word):
        following = _WORD.match(text, _skip_openers(text, nxt))
        return following is not None and following.group().lower() in _STARTERS
    return True


def _skip_openers(text: str, i: int) -> int:
    while i < len(text) and text[i] in _OPENERS:
        i += 1
    return i


def _text_hits(text: str, spans: Sequence[Span]) -> list[tuple[int, int, str]]:
    """Spans on the body, clipped to it, each with the key that makes terms count as distinct."""
    hits = []
    for span in spans:
        if span.field != "text":
            continue  # title offsets index the title, not this text
        start, end = max(span.start, 0), min(span.end, len(text))
        if start < end:
            hits.append((start, end, (span.term or text[start:end]).casefold()))
    return hits


def _squeeze(text: str, start: int, end: int) -> tuple[str, list[int]]:
    """``text[start:end]`` with whitespace runs made one space, for a one-line Slack summary.

    Also returns ``cum``: ``cum[k]`` is how many output characters the first ``k`` input
    characters produced, so an input offset ``start + k`` maps to output offset ``cum[k]``.
    """
    out: list[str] = []
    cum = [0]
    in_space = False
    for ch in text[start:end]:
        if ch.isspace():
            if not in_space:
                out.append(" ")
            in_space = True
        else:
            out.append(ch)
            in_space = False
        cum.append(len(out))
    return "".join(out), cum


def _joined_length(chosen: list[int], lengths: list[int]) -> int:
    total = sum(lengths[i] for i in chosen)
    for a, b in itertools.pairwise(chosen):
        total += len(_NEXT) if b == a + 1 else len(_GAP)
    return total


def _remap(
    hits: list[tuple[int, int, str]], sentence: tuple[int, int], cum: list[int], offset: int, shown: int
) -> list[tuple[int, int]]:
    """Bold ranges, in summary offsets, for the part of each hit that is shown of ``sentence``.

    A hit that straddles what is shown is clipped to it: the reader still sees where the
    match is, and nothing outside the summary text is ever referenced.
    """
    s_start, s_end = sentence
    ranges = []
    for start, end, _ in hits:
        start, end = max(start, s_start), min(end, s_end)
        if start >= end:
            continue
        lo, hi = cum[start - s_start], min(cum[end - s_start], shown)
        if lo < hi:
            ranges.append((offset + lo, offset + hi))
    return ranges


def _truncated_lead(
    lead: str, cum: list[int], sentence: tuple[int, int], hits: list[tuple[int, int, str]], limit: int
) -> Summary:
    budget = limit - len(ELLIPSIS)
    # Cut where a word ends: at the last space such that everything before it fits.
    cut = lead.rfind(" ", 0, budget + 1)
    body = lead[:cut].rstrip(" ,;:-–—") if cut > 0 else ""
    if not body:
        body = lead[:budget]  # one word longer than the budget: no boundary to respect
    return Summary(body + ELLIPSIS, _merge(_remap(hits, sentence, cum, 0, len(body))))


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    # Touching ranges merge too: "*a**b*" is not bold in Slack mrkdwn, "*ab*" is.
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)
