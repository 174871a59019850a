"""A stored history for bench/search.py: N realistic news items in a real newsalert database.

    .venv/bin/python bench/history_corpus.py PATH [--items 1000000]

Items come from bench/match_corpus.py (seeded: every run builds the same database): mostly ordinary
news, a few percent trust-and-safety stories, with curly quotes, accents and some Spanish, French,
Portuguese and German. They are spread evenly over the last 180 days (the default retention), one
story per item with every fourth item joining the previous one's story (syndicated copies), and the
50 bench watchlists are run over each so the matches table is what the bot would have written.
Everything goes through the Store API and its migrations, FTS5 triggers included, so the database
is the one the bot would have after six months.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from bench.match_corpus import WATCHLISTS, items
from bot.match.query import Matcher
from bot.model import Item
from bot.store import Store

DAYS = 180


def build(path: Path, count: int, *, now: datetime | None = None, progress: bool = True) -> None:
    if path.exists():
        raise SystemExit(f"{path} exists; remove it first")
    now = now or datetime.now(UTC)
    start = now - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / count
    matcher = Matcher(WATCHLISTS)
    store = Store.open(path)
    started = time.perf_counter()
    story = 0
    batch = 20_000
    for first in range(0, count, batch):
        with store.transaction():
            for n, (title, text, source) in enumerate(
                items(min(batch, count - first), seed=first + 1), first
            ):
                seen = start + step * n
                if n % 4 != 3 or not story:
                    story = store.stories.new_story(seen)
                item = Item(
                    source=source,
                    guid=f"bench-{n}",
                    url=f"https://news.example/{source.lower().replace(' ', '-')}/{n}",
                    title=title,
                    text=text,
                    published=seen,
                    fetched=seen,
                )
                item_id = store.items.add_item(item, story_id=story)
                if matched := matcher.match(title, text, source=source):
                    store.items.add_matches(item_id, matched)
        if progress:
            done = min(first + batch, count)
            rate = done / (time.perf_counter() - started)
            print(f"\r{done:,} items ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    store.db.execute("ANALYZE")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()
    build(args.path, args.items)


if __name__ == "__main__":
    main()
