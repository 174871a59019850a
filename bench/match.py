"""Matching speed: bot.match.query.Matcher against a naive baseline, in the same run, on one core.

    .venv/bin/python bench/match.py                      # 100,000 items x 50 watchlists
    .venv/bin/python bench/match.py --items 20000 --naive-items 2000

The corpus (bench/match_corpus.py) is generated from a fixed seed: realistic news items (title + a 300-600
character lead, mostly not about T&S) and 50 realistic watchlists. The naive baseline is what one would
write first: every term of every watchlist as its own case-insensitive ``re.search`` over title + text,
for every item, then the boolean tree evaluated on the results (NEAR treated as AND, fields ignored,
no accent folding), so it does strictly less work per search than the real matcher. It runs on the
first --naive-items items (it is slow); items/s is what is compared.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from bench.match_corpus import WATCHLISTS, items
from bot.match.query import And, Matcher, Near, Node, Not, Or, Phrase, Term, compile_query

Evaluate = Callable[[list[bool]], bool]


def naive_term_regex(node: Term | Phrase) -> re.Pattern[str]:
    words = [node.word] if isinstance(node, Term) else list(node.words)
    parts = []
    for word in words:
        wildcard = word.endswith("*")
        body = r"[-\s]?".join(re.escape(p) for p in word.rstrip("*").split("-") if p)
        parts.append(body + (r"\w*" if wildcard else r"s?"))
    flags = 0 if isinstance(node, Term) and node.exact else re.IGNORECASE
    return re.compile(r"\b" + r"\s+".join(parts) + r"\b", flags)


def naive_compile(node: Node, terms: list[re.Pattern[str]]) -> Evaluate:
    """The tree over a list of per-term results; ``terms`` collects one regex per leaf, in order."""
    if isinstance(node, Term | Phrase):
        index = len(terms)
        terms.append(naive_term_regex(node))
        return lambda found: found[index]
    if isinstance(node, Not):
        inner = naive_compile(node.operand, terms)
        return lambda found: not inner(found)
    operands = [naive_compile(operand, terms) for operand in node.operands]
    if isinstance(node, And | Near):
        return lambda found: all(op(found) for op in operands)
    assert isinstance(node, Or)
    return lambda found: any(op(found) for op in operands)


def naive_matcher(watchlists: dict[str, str]) -> Callable[[str, str], list[str]]:
    compiled = []
    for name, query in watchlists.items():
        terms: list[re.Pattern[str]] = []
        evaluate = naive_compile(compile_query(query).ast, terms)
        compiled.append((name, terms, evaluate))

    def match(title: str, text: str) -> list[str]:
        haystack = f"{title}\n{text}"
        matched = []
        for name, terms, evaluate in compiled:
            found = [regex.search(haystack) is not None for regex in terms]  # one search per term per item
            if evaluate(found):
                matched.append(name)
        return matched

    return match


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000, help="items for the real matcher (100000)")
    parser.add_argument("--naive-items", type=int, default=5_000, help="items for the naive baseline")
    parser.add_argument("--seed", type=int, default=20260205)
    args = parser.parse_args()

    corpus = list(items(args.items, seed=args.seed))
    chars = sum(len(title) + len(text) for title, text, _ in corpus) / len(corpus)
    terms = sum(len(compile_query(q)._compiler.leaves) for q in WATCHLISTS.values())
    print(f"corpus: {len(corpus):,} items, {chars:.0f} characters each on average (title + text)")
    print(f"watchlists: {len(WATCHLISTS)}, {terms} terms and phrases in all")

    started = time.perf_counter()
    matcher = Matcher(WATCHLISTS)
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    matched = sum(1 for title, text, source in corpus if matcher.match(title, text, source=source))
    seconds = time.perf_counter() - started
    rate = len(corpus) / seconds
    print(f"matcher: compiled in {compile_seconds * 1000:.1f} ms; {len(corpus):,} items in {seconds:.2f} s "
          f"= {rate:,.0f} items/s ({matched:,} items matched a watchlist)")

    naive = naive_matcher(WATCHLISTS)
    sample = corpus[: args.naive_items]
    started = time.perf_counter()
    naive_matched = sum(1 for title, text, _ in sample if naive(title, text))
    naive_seconds = time.perf_counter() - started
    naive_rate = len(sample) / naive_seconds
    print(f"naive baseline (one re.search per term per item): {len(sample):,} items in {naive_seconds:.2f} s "
          f"= {naive_rate:,.0f} items/s ({naive_matched:,} matched)")
    print(f"ratio: {rate / naive_rate:.1f}x the naive baseline; target >= 20,000 items/s and >= 5x")


if __name__ == "__main__":
    main()
