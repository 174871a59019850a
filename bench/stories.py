"""Story clustering speed and memory: `python bench/stories.py [N]` (default 100,000 items).

Runs each contender in its own subprocess so peak RSS is its own:
  newsalert  -- bot.ingest.poll.assign_story (the fitted story decision over the window index, what
                the bot runs), every item indexed and embedded, as a matched item is; after a
                restart the index is loaded from SQLite (included in that figure)
  datasketch -- MinHash LSH, 128 permutations, in memory (the baseline the issue measured),
                if datasketch is installed (`pip install datasketch`)
Prints items/s (wall clock, and per second of the process's CPU time: on a shared machine the
second says what the code costs), over the first and the last 10% of items (the cost per item
must stay flat), peak RSS, and the time to assign 1,000 more items after re-opening the database (restart).

The corpus is generated and sorted by this process and read by each contender a line at a time
from a file, as a bot reads its feeds: the peak RSS is the clustering's, not that of the bench's
own 101,000 items (about 48 MB when each contender held them all, as before this was changed;
`--corpus-in-memory` measures it that way).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.story_corpus import SyntheticItem, corpus  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


IN_MEMORY = "-"


def write_corpus(n: int, path: Path) -> None:
    """``n`` items of the synthetic corpus, oldest first, one JSON line each."""
    with path.open("w", encoding="utf-8") as f:
        for it in sorted(corpus(n), key=lambda i: i.seen):
            f.write(json.dumps([it.story, it.outlet, it.title, it.lead, it.seen.isoformat()]) + "\n")


def read_corpus(path: str) -> Iterator[SyntheticItem]:
    """The corpus written by write_corpus, a line at a time."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            story, outlet, title, lead, seen = json.loads(line)
            yield SyntheticItem(story, outlet, title, lead, datetime.fromisoformat(seen))


def run_newsalert(n: int, source: str) -> dict:
    from bot.ingest.poll import assign_story
    from bot.model import Item
    from bot.store import Store
    from bot.stories.decide import signals_of
    from bot.stories.embed import embed
    from bot.stories.fingerprint import fingerprint

    window = timedelta(hours=72)
    main: Iterable[SyntheticItem]
    if source == IN_MEMORY:  # as the bench ran before the corpus was read from a file
        items = sorted(corpus(n + 1000), key=lambda i: i.seen)
        main, extra = items[:n], items[n:]
    else:
        main, extra = islice(read_corpus(source), n), list(islice(read_corpus(source), n, None))
    tenth = max(1, n // 10)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.db")
        marks = []
        started, cpu = time.perf_counter(), time.process_time()
        with store.transaction():
            for k, it in enumerate(main):
                if k in (0, tenth, n - tenth):
                    marks.append(time.perf_counter())
                item = Item(
                    source=it.outlet,
                    guid=f"g{k}",
                    url=f"https://x.example/{k}",
                    title=it.title,
                    text=it.lead,
                    published=it.seen,
                    fetched=it.seen,
                )
                fp = fingerprint(item.title, item.text)
                story, decision = assign_story(store, fp, item.title, item.text, it.seen, window)
                item_id = store.items.add_item(item, story_id=story)
                signals = decision.signals or signals_of(item.title, item.text, embed)
                store.stories.add_fingerprint(item_id, story, it.seen, fp, signals)
                store.story_model.save_decision(item_id, story, decision)
        ended, cpu = time.perf_counter(), time.process_time() - cpu
        store.close()
        restart = time.perf_counter()
        store = Store.open(Path(tmp) / "bench.db")
        with store.transaction():
            for it in extra:
                fp = fingerprint(it.title, it.lead)
                assign_story(store, fp, it.title, it.lead, it.seen, window)
        restarted = time.perf_counter() - restart
        store.close()
    return {
        "items_per_s": n / (ended - started),
        "items_per_cpu_s": n / cpu,
        "first_10pct_per_s": tenth / (marks[1] - marks[0]),
        "last_10pct_per_s": tenth / (ended - marks[2]),
        "restart_1000_s": restarted,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_datasketch(n: int, source: str) -> dict:
    from datasketch import MinHash, MinHashLSH

    from bot.stories.fingerprint import fingerprint

    items = sorted(corpus(n), key=lambda i: i.seen) if source == IN_MEMORY else islice(read_corpus(source), n)
    tenth = max(1, n // 10)
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    marks = []
    started = time.perf_counter()
    for k, it in enumerate(items):
        if k in (0, tenth, n - tenth):
            marks.append(time.perf_counter())
        m = MinHash(num_perm=128)
        for token in fingerprint(it.title, it.lead).tokens:
            m.update(token.encode())
        lsh.query(m)
        lsh.insert(str(k), m)
    ended = time.perf_counter()
    return {
        "items_per_s": n / (ended - started),
        "first_10pct_per_s": tenth / (marks[1] - marks[0]),
        "last_10pct_per_s": tenth / (ended - marks[2]),
        "restart_1000_s": None,  # in memory only: a restart rebuilds the whole index
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    if len(sys.argv) > 4 and sys.argv[1] == "--child":
        n, which, source = int(sys.argv[2]), sys.argv[3], sys.argv[4]
        print(json.dumps(run_newsalert(n, source) if which == "newsalert" else run_datasketch(n, source)))
        return
    args = [a for a in sys.argv[1:] if a != "--corpus-in-memory"]
    n = int(args[0]) if args else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        source = IN_MEMORY
        if "--corpus-in-memory" not in sys.argv:
            source = os.path.join(tmp, "corpus.jsonl")
            write_corpus(n + 1000, Path(source))
        compare(n, source)


def compare(n: int, source: str) -> None:
    where = "held in memory" if source == IN_MEMORY else "read from a file"
    print(f"story clustering, {n:,} synthetic items (bench/story_corpus.py, {where}), one process each")
    results = {}
    for which in ("newsalert", "datasketch"):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n), which, source], capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(f"  {which:10s} skipped: {proc.stderr.strip().splitlines()[-1]}")
            continue
        r = results[which] = json.loads(proc.stdout)
        restart = f"{r['restart_1000_s']:.2f}s" if r["restart_1000_s"] is not None else "n/a (rebuild)"
        cpu = f" ({r['items_per_cpu_s']:,.0f}/s of CPU time)" if "items_per_cpu_s" in r else ""
        print(
            f"  {which:10s} {r['items_per_s']:8,.0f} items/s{cpu}  "
            f"first 10% {r['first_10pct_per_s']:8,.0f}/s  "
            f"last 10% {r['last_10pct_per_s']:8,.0f}/s  peak RSS {r['peak_rss_mb']:6.0f} MB  "
            f"1,000 items after restart {restart}"
        )
    if len(results) == 2:
        a, b = results["newsalert"], results["datasketch"]
        print(
            f"  ratio newsalert/datasketch: speed {a['items_per_s'] / b['items_per_s']:.2f}x, "
            f"peak RSS {a['peak_rss_mb'] / b['peak_rss_mb']:.2f}x"
        )


if __name__ == "__main__":
    main()
