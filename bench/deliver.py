"""Delivery speed: 200 alerts over 10 channels against a fake Slack that allows 1 post/s/channel.

    .venv/bin/python bench/deliver.py
    .venv/bin/python bench/deliver.py --alerts 200 --channels 10

Measures whatever bot.deliver does today: the outbox is filled with one alert per story (no
threads), 20 per channel, and bot.deliver.deliver_pending() is called with a real SlackSink
pointed at tests/fake_slack.py's fake Web API, whose chat.postMessage here is limited like
Slack's: a channel takes one post per second, and a post sooner gets HTTP 429 with Retry-After.

One deliver_pending() call is one delivery round. `newsalert run` starts a round after each poll
and retries what is left every minute, so the honest figure is how many rounds it takes and how
long each is; the total below runs the rounds back to back (the lower bound: no minute between
them), retrying as soon as an alert is due again.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

from tests.fake_slack import VALID_TOKEN, FakeSlack  # noqa: E402

PER_SECOND = 1.0  # posts a channel accepts per second


class RateLimitedSlack(FakeSlack):
    """FakeSlack whose chat.postMessage allows one post per second per channel; sooner: 429."""

    def __init__(self) -> None:
        super().__init__()
        self.last_post: dict[str, float] = {}
        self.limited = 0

    def _post(self, params: dict) -> tuple[int, dict, dict]:  # called with self.lock held
        channel = params.get("channel", "")
        now = time.monotonic()
        last = self.last_post.get(channel)
        if last is not None and now - last < 1 / PER_SECOND:
            self.limited += 1
            wait = math.ceil(1 / PER_SECOND - (now - last))
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(max(1, wait))}
        status, body, headers = super()._post(params)
        if status == 200 and body.get("ok"):
            self.last_post[channel] = now
        return status, body, headers


def fill_outbox(store, alerts: int, channels: int) -> list[str]:  # type: ignore[no-untyped-def]
    from bot.model import Item, Source, Subscription, Watchlist

    now = datetime.now(UTC)
    names = [f"C0BENCH{c:02d}" for c in range(channels)]
    store.catalog.sync_config(
        [Source("bench", "https://bench.example/feed")],
        [Watchlist(f"w{c}", f"word{c}") for c in range(channels)],
        [Subscription(name, (f"w{c}",)) for c, name in enumerate(names)],
        now,
    )
    with store.transaction():
        for n in range(alerts):
            channel = n % channels
            item = Item(
                source="bench",
                guid=f"bench-{n}",
                url=f"https://bench.example/story/{n}",
                title=f"Story {n}: word{channel} in the news",
                text=f"Lead of story {n}, which mentions word{channel} once.",
                published=now,
                fetched=now,
            )
            story = store.stories.new_story(now)
            item_id = store.items.add_item(item, story_id=story)
            store.outbox.enqueue_alert(item_id, names[channel], [f"w{channel}"], now)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop after this long")
    args = parser.parse_args()
    # Each 429 is logged as a warning by bot.deliver: 190 of them would bury the figures.
    logging.getLogger("newsalert").setLevel(logging.ERROR)

    from bot.alerts.outbox import deliver_pending
    from bot.slack.sink import SlackSink
    from bot.store import Store

    slack = RateLimitedSlack().start()
    ideal = math.ceil(args.alerts / args.channels) / PER_SECOND
    print(
        f"delivery: {args.alerts} alerts over {args.channels} channels, fake Slack allowing "
        f"{PER_SECOND:g} post/s/channel (429 + Retry-After beyond)"
    )
    print(
        f"  ideal: {ideal:.0f} s with the channels in parallel, "
        f"{args.alerts / PER_SECOND:.0f} s one channel at a time"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(Path(tmp) / "deliver.db")
            fill_outbox(store, args.alerts, args.channels)
            sink = SlackSink(VALID_TOKEN, slack.url)
            started = time.monotonic()
            rounds: list[tuple[float, int]] = []
            left = args.alerts
            while left and time.monotonic() - started < args.max_seconds:
                round_started = time.monotonic()
                report = deliver_pending(store, sink)
                rounds.append((time.monotonic() - round_started, report.sent))
                left = report.queued
                if left and not report.sent:
                    time.sleep(0.2)  # everything left is waiting for its Retry-After
            total = time.monotonic() - started
            sent = store.count("alerts", "status = 'sent'")
            store.close()
    finally:
        slack.stop()
    posts = len(slack.posts())
    first_time, first_sent = rounds[0]
    print(f"  first deliver_pending() round: {first_time:.1f} s, {first_sent} of {args.alerts} sent")
    print(
        f"  all rounds back to back: {sent} of {args.alerts} sent in {total:.1f} s over {len(rounds)} rounds "
        f"({sent / total:.1f} alerts/s; {posts} posts accepted, {slack.limited} answered 429)"
    )
    if len(rounds) > 1:
        print(
            f"  with `newsalert run` retrying once a minute, the last alert would go out about "
            f"{(len(rounds) - 1) * 60 + rounds[-1][0]:.0f} s after the first round started"
        )
    if sent < args.alerts:
        print(f"  stopped after {args.max_seconds:.0f} s with {args.alerts - sent} alerts still queued")


if __name__ == "__main__":
    main()
