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
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.story_corpus import corpus  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_newsalert(n: int) -> dict:
    from bot.ingest.poll import assign_story
    from bot.model import Item
    from bot.store import Store
    from bot.stories.decide import signals_of
    from bot.stories.embed import embed
    from bot.stories.fingerprint import fingerprint

    window = timedelta(hours=72)
    items = sorted(corpus(n + 1000), key=lambda i: i.seen)
    main, extra = items[:n], items[n:]
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


def run_datasketch(n: int) -> dict:
    from datasketch import MinHash, MinHashLSH

    from bot.stories.fingerprint import fingerprint

    items = sorted(corpus(n), key=lambda i: i.seen)
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
    n = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == "--child" else None
    if n is not None:
        which = sys.argv[3]
        print(json.dumps(run_newsalert(n) if which == "newsalert" else run_datasketch(n)))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"story clustering, {n:,} synthetic items (bench/story_corpus.py), one process each")
    results = {}
    for which in ("newsalert", "datasketch"):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n), which], capture_output=True, text=True
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
