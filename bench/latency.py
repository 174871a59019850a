"""Latency: from an item appearing on its feed to its alert accepted by Slack, in one run.

    .venv/bin/python bench/latency.py                      # 1,000 sources, 2 minutes of items
    .venv/bin/python bench/latency.py --duration 60 --items 200

Two `newsalert run` processes watch the same 1,000 loopback feeds and post to the same fake
Slack (tests/fake_slack.py, which here also notes when it accepted each post):

* adaptive: `newsalert run --http` as shipped, interval 20 s with floor 5 s and ceiling 60 s,
  and WebSub on: 100 of the feeds advertise the loopback hub (tests/websub_hub.py, in the feed
  server's process), which pushes each new item to the bot's callback the moment it appears;
* naive: `newsalert run` with a fixed 20 s interval for every source (min_interval =
  max_interval = interval: no adaptation, no jitter) and no WebSub: the same request budget,
  spent evenly.

The feeds (a separate aiohttp process, with ETags) have a backlog published over the past days
at rates that differ as news sources do: 90 busy feeds (about 20 items a day), 810 quiet ones
(1 a day), the 100 WebSub ones (3 a day). Once both bots have read every feed once (and the
adaptive one is subscribed), new items appear at random moments over ``--duration`` seconds,
on feeds chosen in proportion to those rates; every new item matches a watchlist, spread over
20 channels so that Slack's pace (one post per second per channel) is not what is measured.
Latency is the time from the item's appearance (it is in the feed, and the hub pushes it) to
Slack accepting the post that alerts it.

The acceptance figures of issue 17: for polled sources, p95 of (latency - the source's effective
interval) <= 10 s; for WebSub sources, p95 <= 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

from tests.fake_slack import VALID_TOKEN, FakeSlack  # noqa: E402

CHANNELS = 20
FEED_ITEMS = 150  # the longest feed document: the busy feeds' week of items
KINDS = {  # items per day, and feed length
    "busy": (20.0, 150),
    "quiet": (1.0, 10),
    "websub": (3.0, 20),
}
ID = re.compile(r"nid(\d+)x")
WORDS = (
    "court police ministry report agency children online platform safety regulator app law "
    "investigation warning network school abuse fraud privacy data image video campaign study"
).split()


# --- the plan: feeds, their backlog, and when each new item appears -----------------------------


def plan(sources: int, websub: int, busy: int, items: int, duration: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    quiet = sources - websub - busy
    kinds = ["websub"] * websub + ["busy"] * busy + ["quiet"] * quiet
    now = time.time()
    feeds = []
    for i, kind in enumerate(kinds):
        per_day, length = KINDS[kind]
        # The backlog: `length` items, one every 1/per_day days on average; none matches a watchlist.
        at, backlog = now, []
        for n in range(length):
            at -= rng.expovariate(per_day) * 86400
            backlog.append({"guid": f"s{i}-old{n}", "title": _title(rng, f"old {i} {n}"), "published": at})
        feeds.append({"kind": kind, "backlog": backlog})
    weights = [KINDS[f["kind"]][0] for f in feeds]
    new = []
    for n in range(items):
        source = rng.choices(range(sources), weights)[0]
        channel = rng.randrange(CHANNELS)
        new.append(
            {
                "id": n,
                "source": source,
                "offset": rng.uniform(0, duration),
                "title": f"{_title(rng, f'nid{n}x')} zqk{channel:02d}",
                "channel": channel,
            }
        )
    return {"feeds": feeds, "new": sorted(new, key=lambda x: x["offset"])}


def _title(rng: random.Random, tag: str) -> str:
    # Three common words and three made-up ones: no two items read as the same story, so each is
    # alerted on its own (copies of one story are threaded, or folded into the parent's count).
    made_up = [_made_up_word(rng) for _ in range(3)]
    return " ".join([*rng.sample(WORDS, 3), *made_up, tag]).capitalize()


def _made_up_word(rng: random.Random) -> str:
    return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))


def rss(items: list[dict[str, Any]], title: str) -> bytes:
    entries = "".join(
        f"<item><title>{x['title']}</title><link>https://news.example/{x['guid']}</link>"
        f"<guid isPermaLink='false'>{x['guid']}</guid>"
        f"<pubDate>{format_datetime(_utc(x['published']))}</pubDate>"
        f"<description>{x['title']}.</description></item>"
        for x in items
    )
    return (
        f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>{title}</title>"
        f"<link>https://news.example/</link>{entries}</channel></rss>"
    ).encode()


def _utc(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)


# --- the feed server and hub (their own process) ----------------------------------------------------


def serve(plan_path: str) -> None:
    from aiohttp import web

    from tests.websub_hub import WebSubHub

    the_plan = json.loads(Path(plan_path).read_text())
    feeds, new = the_plan["feeds"], the_plan["new"]
    hub = WebSubHub(max_lease=86400).start()
    by_source: dict[int, list[dict[str, Any]]] = {}
    for item in new:
        by_source.setdefault(item["source"], []).append(item)
    state: dict[str, Any] = {"t0": None, "requests": {}, "pushes": 0}
    cache: dict[tuple[int, int], tuple[bytes, str]] = {}
    port_box: dict[str, int] = {}

    def url(i: int) -> str:
        return f"http://127.0.0.1:{port_box['port']}/feed/{i}.xml"

    def visible(i: int, now: float) -> list[dict[str, Any]]:
        t0 = state["t0"]
        if t0 is None:
            return []
        return [x for x in by_source.get(i, []) if t0 + x["offset"] <= now]

    def document(i: int, now: float) -> tuple[bytes, str]:
        shown = visible(i, now)
        key = (i, len(shown))
        if key not in cache:
            t0 = state["t0"] or 0
            fresh = [
                {"guid": f"new{x['id']}", "title": x["title"], "published": t0 + x["offset"]} for x in shown
            ]
            items = sorted(fresh + feeds[i]["backlog"], key=lambda x: -x["published"])[:FEED_ITEMS]
            body = rss(items, f"Feed {i}")
            cache[key] = (body, f'"{hashlib.sha1(body).hexdigest()[:16]}"')
        return cache[key]

    async def one(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        if not 0 <= i < len(feeds):
            raise web.HTTPNotFound()
        agent = request.headers.get("User-Agent", "?")
        state["requests"][agent] = state["requests"].get(agent, 0) + 1
        body, etag = document(i, time.time())
        headers = {"ETag": etag, "Content-Type": "application/rss+xml"}
        if feeds[i]["kind"] == "websub":
            headers["Link"] = f'<{hub.url}>; rel="hub", <{url(i)}>; rel="self"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)

    def publisher() -> None:
        t0 = state["t0"]
        for item in new:
            if feeds[item["source"]]["kind"] != "websub":
                continue
            time.sleep(max(0.0, t0 + item["offset"] - time.time()))
            entry = {"guid": f"new{item['id']}", "title": item["title"], "published": t0 + item["offset"]}
            hub.publish(url(item["source"]), rss([entry], f"Feed {item['source']}"))
            state["pushes"] += 1

    async def control(request: web.Request) -> web.Response:
        if "start" in request.query and state["t0"] is None:
            state["t0"] = float(request.query["start"])
            threading.Thread(target=publisher, daemon=True).start()
        live = sum(1 for i, f in enumerate(feeds) if f["kind"] == "websub" and hub.live(url(i)))
        return web.json_response({"requests": state["requests"], "live": live, "pushes": state["pushes"]})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/feed/{i}.xml", one)
        app.router.add_get("/_control", control)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_box["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"PORT {port_box['port']}", flush=True)
        while True:  # until the parent kills us
            await asyncio.sleep(3600)

    asyncio.run(main())


# --- the fake Slack, noting when it accepted each alert -----------------------------------------------


class TimedSlack(FakeSlack):
    def __init__(self) -> None:
        super().__init__()
        self.accepted: dict[tuple[str, int], float] = {}  # (channel prefix, item id) -> first accept

    def _post(self, params: dict) -> tuple[int, dict, dict]:
        answer = super()._post(params)
        if params.get("_ok"):
            when = time.time()
            for found in ID.finditer(
                json.dumps(params.get("text", "")) + json.dumps(params.get("blocks", []))
            ):
                self.accepted.setdefault((params["channel"][:2], int(found.group(1))), when)
        return answer


# --- the two bots ---------------------------------------------------------------------------------


def config(kind: str, port: int, sources: int, args: argparse.Namespace, http_port: int) -> str:
    adaptive = kind == "adaptive"
    lines = [
        "[defaults]",
        "allow_private_sources = true",
        f'interval = "{args.interval}s"',
        f'min_interval = "{args.floor if adaptive else args.interval}s"',
        f'max_interval = "{args.ceiling if adaptive else args.interval}s"',
        f'user_agent = "newsalert-{kind}"',
        "concurrency = 50",
        "",
    ]
    for i in range(sources):
        lines += ["[[sources]]", f'name = "feed {i}"', f'url = "http://127.0.0.1:{port}/feed/{i}.xml"', ""]
    prefix = "CA" if adaptive else "CN"
    for c in range(CHANNELS):
        lines += [f"[watchlists.w{c:02d}]", f"query = 'zqk{c:02d}'", ""]
        lines += ["[[subscriptions]]", f'channel = "{prefix}{c:08d}"', f'watchlists = ["w{c:02d}"]', ""]
    if adaptive:
        lines += ["[websub]", f'base_url = "http://127.0.0.1:{http_port}"']
    return "\n".join(lines) + "\n"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_bot(kind: str, workdir: Path, port: int, slack: TimedSlack, args: argparse.Namespace) -> dict:
    import os

    http_port = free_port()
    path = workdir / f"{kind}.toml"
    path.write_text(config(kind, port, args.sources, args, http_port))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NEWSALERT_"))}
    env |= {
        "NEWSALERT_DB": str(workdir / f"{kind}.db"),
        "SLACK_BOT_TOKEN": VALID_TOKEN,
        "SLACK_API_URL": slack.url,
        "SLACK_SIGNING_SECRET": "bench-signing-secret",
    }
    command = [sys.executable, "-m", "bot", "--config", str(path), "run"]
    if kind == "adaptive":
        command += ["--http", "--port", str(http_port), "--host", "127.0.0.1"]
    log = (workdir / f"{kind}.log").open("w")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return {"kind": kind, "proc": proc, "db": workdir / f"{kind}.db", "log": log}


def read_db(path: Path, sql: str) -> list[tuple]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def control(port: int, **query: str) -> dict:
    import urllib.parse
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_control?{urllib.parse.urlencode(query)}") as r:
        return json.load(r)


def percentiles(values: list[float]) -> str:
    if not values:
        return "no items"
    ordered = sorted(values)
    median, mean, top = statistics.median(ordered), statistics.fmean(ordered), ordered[-1]
    return (
        f"p50 {median:5.1f} s   p95 {p95(ordered):5.1f} s   max {top:5.1f} s   mean {mean:5.1f} s"
        f"   ({len(values)} items)"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (the parse workers),
    from Linux /proc; 0 for what cannot be read."""
    import os

    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except (OSError, IndexError, ValueError):
        pass
    return total


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else float("nan")


def main_run(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="newsalert-latency-"))
    workdir.mkdir(parents=True, exist_ok=True)
    the_plan = plan(args.sources, args.websub, args.busy, args.items, args.duration, args.seed)
    plan_path = workdir / "plan.json"
    plan_path.write_text(json.dumps(the_plan))
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(plan_path)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    port = int(server.stdout.readline().split()[1])
    slack = TimedSlack().start()
    bots = [start_bot(kind, workdir, port, slack, args) for kind in ("adaptive", "naive")]
    try:
        print(
            f"workdir {workdir}; feeds on 127.0.0.1:{port}; waiting for both bots' first polls …", flush=True
        )
        started = time.monotonic()
        while True:
            for bot in bots:
                if bot["proc"].poll() is not None:
                    raise SystemExit(f"{bot['kind']} exited: see {workdir / (bot['kind'] + '.log')}")
            read = [
                read_db(b["db"], "SELECT count(*) FROM sources WHERE last_success IS NOT NULL") for b in bots
            ]
            done = [r[0][0] if r else 0 for r in read]
            live = control(port)["live"]
            if done == [args.sources] * 2 and live == args.websub:
                break
            if time.monotonic() - started > 600:
                raise SystemExit(f"warm-up timed out: polled {done}, {live} WebSub subscriptions live")
            time.sleep(1)
        warm = time.monotonic() - started
        before = control(port)["requests"]
        cpu_before = [cpu_seconds(b["proc"].pid) for b in bots]
        t0 = time.time() + 2
        control(port, start=str(t0))
        print(
            f"first polls done and {live} WebSub subscriptions live after {warm:.0f} s; "
            f"{args.items} items appear over {args.duration:.0f} s …",
            flush=True,
        )
        time.sleep(max(0.0, t0 + args.duration - time.time()))
        after = control(port)["requests"]
        cpu = [cpu_seconds(b["proc"].pid) - c for b, c in zip(bots, cpu_before, strict=True)]
        deadline = time.time() + args.ceiling + 30
        wanted = {(prefix, x["id"]) for x in the_plan["new"] for prefix in ("CA", "CN")}
        while time.time() < deadline and not wanted <= slack.accepted.keys():
            time.sleep(1)
    finally:
        for bot in bots:
            bot["proc"].send_signal(signal.SIGTERM)
        for bot in bots:
            try:
                bot["proc"].wait(timeout=30)
            except subprocess.TimeoutExpired:
                bot["proc"].kill()
            bot["log"].close()
        slack.stop()
        server.kill()
        server.wait()
    report(args, the_plan, t0, slack, bots, before, after, cpu)


def report(args, the_plan, t0, slack: TimedSlack, bots, before: dict, after: dict, cpu: list) -> None:
    feeds = the_plan["feeds"]
    intervals = {
        int(name.split()[1]): (interval, reason)
        for name, interval, reason in read_db(
            bots[0]["db"], "SELECT name, poll_interval, poll_reason FROM sources"
        )
    }
    latency: dict[str, list[float]] = {"websub": [], "polled": [], "busy": [], "quiet": [], "naive": []}
    late: list[float] = []  # polled: latency - the source's effective interval
    missing = {"CA": 0, "CN": 0}
    for item in the_plan["new"]:
        appeared = t0 + item["offset"]
        kind = feeds[item["source"]]["kind"]
        for prefix in ("CA", "CN"):
            accepted = slack.accepted.get((prefix, item["id"]))
            if accepted is None:
                missing[prefix] += 1
                continue
            seconds = accepted - appeared
            if prefix == "CN":
                latency["naive"].append(seconds)
            elif kind == "websub":
                latency["websub"].append(seconds)
            else:
                latency["polled"].append(seconds)
                latency[kind].append(seconds)
                late.append(
                    seconds - (intervals.get(item["source"], (args.interval, ""))[0] or args.interval)
                )
    spent = {agent: after.get(agent, 0) - before.get(agent, 0) for agent in after}
    by_reason: dict[str, list[int]] = {}
    for interval, reason in intervals.values():
        by_reason.setdefault(reason or "-", []).append(interval or 0)
    print()
    print(
        f"{args.sources} sources ({args.busy} busy, {args.sources - args.busy - args.websub} quiet, "
        f"{args.websub} WebSub); {args.items} items over {args.duration:.0f} s; interval {args.interval} s "
        f"(adaptive: floor {args.floor} s, ceiling {args.ceiling} s)"
    )
    print(
        "effective intervals of the adaptive bot at the end: "
        + ", ".join(
            f"{reason} {len(v)} (median {statistics.median(v):.0f} s)"
            for reason, v in sorted(by_reason.items())
        )
    )
    print(
        "requests during the items' window: "
        + ", ".join(
            f"{agent.removeprefix('newsalert-')} {n} ({n / args.duration:.1f}/s)"
            for agent, n in sorted(spent.items())
        )
    )
    print(
        f"CPU time of the bots (and their parse workers) over the items' window: adaptive {cpu[0]:.1f} s, "
        f"naive {cpu[1]:.1f} s"
    )
    print()
    print("item appeared on its feed -> alert accepted by Slack")
    print(f"  adaptive, WebSub sources   {percentiles(latency['websub'])}")
    print(f"  adaptive, polled sources   {percentiles(latency['polled'])}")
    print(f"    of which busy            {percentiles(latency['busy'])}")
    print(f"    of which quiet           {percentiles(latency['quiet'])}")
    print(f"  naive fixed {args.interval} s, all     {percentiles(latency['naive'])}")
    print(f"  polled: latency - effective interval, p95 {p95(late):.1f} s")
    if any(missing.values()):
        print(f"  not alerted by the end: adaptive {missing['CA']}, naive {missing['CN']}")
    print()
    polled_ok = p95(late) <= 10
    websub_ok = p95(latency["websub"]) <= 5
    print(
        f"acceptance: polled p95 <= effective interval + 10 s: {'met' if polled_ok else 'NOT met'}; "
        f"WebSub p95 <= 5 s: {'met' if websub_ok else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--websub", type=int, default=100, help="sources that advertise the hub")
    parser.add_argument("--busy", type=int, default=90, help="busy sources (the rest are quiet)")
    parser.add_argument("--items", type=int, default=400, help="new items over the run")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds over which items appear")
    parser.add_argument("--interval", type=int, default=20)
    parser.add_argument("--floor", type=int, default=5)
    parser.add_argument("--ceiling", type=int, default=60)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--workdir", help="keep configs, databases and logs here")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    else:
        main_run(args)


if __name__ == "__main__":
    main()
