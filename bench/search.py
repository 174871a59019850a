"""Search speed over a large history: `newsalert search` against 1,000,000 stored items.

    .venv/bin/python bench/search.py                 # builds bench/.cache/history-1000000.db once
    .venv/bin/python bench/search.py --items 100000 --db /tmp/h.db

The database (bench/history_corpus.py) holds N realistic items over 180 days, as the bot would after
six months at its default retention. Each query below runs through bot.history.search (FTS5 candidates,
then the watchlist matcher) over the default 30-day window, 20 stories, on a warm database; the 50 bench
watchlists are included as searches. The last line times the whole command, `newsalert search`, as a
subprocess (interpreter start-up included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from bench.history_corpus import build
from bench.match_corpus import WATCHLISTS
from bot.history import fts_match, search
from bot.match.query import compile_query
from bot.store import Store

ROOT = Path(__file__).resolve().parent.parent
SEARCHES = [
    "unicef",
    "deepfake",
    '"child sexual abuse material"',
    'nudif* OR "undress app*"',
    "sextortion NEAR/10 teen*",
    "children",  # in a large share of items: the index narrows little, the matcher does the rest
    "police OR court OR government",
    "=FBI",
    "title:interpol",
    "-weather",  # nothing to look up: the whole window goes through the matcher
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="database to use (built if missing)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query; the best counts")
    args = parser.parse_args()
    db = args.db or ROOT / "bench" / ".cache" / f"history-{args.items}.db"
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        print(f"building {db} ({args.items:,} items, once) …", file=sys.stderr)
        build(db, args.items)
    store = Store.open(db)
    total = store.count("items")
    window = timedelta(days=30)
    print(f"{total:,} items in {db} ({db.stat().st_size / 2**20:,.0f} MiB); window 30 days, 20 stories\n")
    print(f"{'ms':>8}  {'candidates':>10}  {'stories':>7}  query")
    timings: list[tuple[float, str]] = []
    for query in SEARCHES + list(WATCHLISTS.values()):
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            hits = search(store, query, since=window)
            best = min(best, time.perf_counter() - started)
        match = fts_match(compile_query(query))
        candidates = (
            "scan" if match is None else f"{len(store.history.search_candidates(match, _since(window))):,}"
        )
        timings.append((best, query))
        if query in SEARCHES:
            print(f"{best * 1000:8.1f}  {candidates:>10}  {len(hits):>7}  {query}")
    store.close()
    watchlist_times = [t for t, q in timings if q not in SEARCHES]
    print(
        f"\n50 watchlist queries: median {statistics.median(watchlist_times) * 1000:.1f} ms, "
        f"max {max(watchlist_times) * 1000:.1f} ms"
    )
    print(
        f"all {len(timings)} queries: median {statistics.median(t for t, _ in timings) * 1000:.1f} ms, "
        f"max {max(t for t, _ in timings) * 1000:.1f} ms ({max(timings)[1]})"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NEWSALERT_"))}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bot", "--db", str(db), "search", "unicef"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    print(f"`newsalert search unicef` end to end (new process): {time.perf_counter() - started:.2f} s")


def _since(window: timedelta) -> datetime:
    return datetime.now(UTC) - window


if __name__ == "__main__":
    main()
