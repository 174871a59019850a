"""Polling at scale: newsalert's poll against reader's update_feeds(), on the same corpus, in one run.

    .venv/bin/python bench/poll.py                         # 1,000 sources x 50 items, then reader
    .venv/bin/python bench/poll.py --sources 200 --items 50
    .venv/bin/python bench/poll.py --no-reader             # newsalert only
    .venv/bin/python bench/poll.py --scaling               # newsalert at 100 / 1,000 / 5,000 sources

(`pip install -e '.[bench]'` installs reader, pinned to the version the issue measured.)

The corpus (bench/poll_corpus.py) is generated from fixed seeds, and served by a separate local
server process (aiohttp, on 127.0.0.1) with ETag and Last-Modified, which answers 304 to a
matching conditional request. Each measured run is its own subprocess, so the peak RSS it reports
(getrusage ru_maxrss) is its own; wall time covers the poll call only (not imports, not opening
the database). What is run:

* newsalert first poll: bot.pipeline.poll over every source on an empty database (fetch, parse,
  normalize, match, dedup + story clustering, store, outbox), with the watchlists and the
  subscription of config/newsalert.toml, allow_private_sources=True, and the first-poll window
  off so that every match is queued as an alert. Parsing, normalizing, fingerprinting and
  matching run in a pool of worker processes (bot/ingest/prepare.py) while the poll's process
  stores what they have done: the alert path of each source first (dedup, the matched items'
  stories, the outbox), the rest after (bot/ingest/ingest.py). Stage times are measured by
  wrapping pipeline.fetch_all, the two steps and the waits for prepared bodies (the wrappers
  cost nothing measurable). "First alert" is the time from the poll's start to the first
  commit that queued alerts: when `newsalert run` wakes its delivery thread.
* newsalert second poll: every source answers 304 (after an untimed warm-up poll in the same
  process, like every steady-state run here: see STEADY).
* newsalert, same bytes without validators: the server stops sending ETag/Last-Modified and
  ignores conditional headers, so every source answers 200 with the bytes of the first poll;
  the body hash skips parsing.
* reader first update_feeds() and a second, forced one (scheduled=False: every feed, all 304).
* parsing alone, one process: feedparser (on a sample), the fast path, and the fast path in a
  process pool of 2 (what using both cores for parsing would give).
* commits: a smaller first poll with SQLite's trace callback, counting BEGIN/COMMIT per source.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

from bench.poll_corpus import BASE, content_type, feed  # noqa: E402

LAST_MODIFIED = BASE.strftime("%a, %d %b %Y %H:%M:%S GMT")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *_descendants(int(child))]
    except OSError:
        pass
    return found


class TreeRss:
    """Peak resident memory of this process and its children together (the parse pool's workers),
    sampled every 20 ms on Linux. getrusage cannot give it: a child's ru_maxrss includes the
    parent's pages it shared for a moment when it was forked."""

    def __init__(self) -> None:
        import threading

        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.02):
            self.peak_kib = max(self.peak_kib, sum(map(_rss_kib, [me, *_descendants(me)])))

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the feed server (its own process) ----------------------------------------------------------


def serve(sources: int, items: int) -> None:
    import hashlib

    from aiohttp import web

    bodies = [feed(i, items) for i in range(sources)]
    etags = [f'"{hashlib.sha1(b).hexdigest()[:16]}"' for b in bodies]
    types = [content_type(i) for i in range(sources)]
    state = {"validators": True}
    counts: dict[str, int] = {}

    async def one(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        if not 0 <= i < sources:
            raise web.HTTPNotFound()
        if state["validators"]:
            validators = {"ETag": etags[i], "Last-Modified": LAST_MODIFIED}
            inm, ims = request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since")
            if inm == etags[i] or (inm is None and ims == LAST_MODIFIED):
                counts["304"] = counts.get("304", 0) + 1
                return web.Response(status=304, headers=validators)
        else:
            validators = {}
        counts["200"] = counts.get("200", 0) + 1
        return web.Response(body=bodies[i], headers={"Content-Type": types[i], **validators})

    async def control(request: web.Request) -> web.Response:
        if "validators" in request.query:
            state["validators"] = request.query["validators"] == "1"
        answer = dict(counts)  # what was served since the last call
        counts.clear()
        return web.json_response(answer)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/feed/{i}.xml", one)
        app.router.add_get("/_control", control)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"PORT {port} BYTES {sum(map(len, bodies))}", flush=True)
        while True:  # until the parent kills us
            await asyncio.sleep(3600)

    asyncio.run(main())


class Server:
    def __init__(self, sources: int, items: int):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--sources", str(sources), "--items", str(items)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "PORT":
            self.stop()
            raise SystemExit("feed server did not start")
        self.port, self.bytes = int(line[1]), int(line[3])

    def control(self, **query: str) -> dict:
        import urllib.request

        params = "&".join(f"{k}={v}" for k, v in query.items())
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_control?{params}") as answer:
            return json.load(answer)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


# --- the measured runs (each its own process) -----------------------------------------------------


def urls(port: int, sources: int) -> list[str]:
    return [f"http://127.0.0.1:{port}/feed/{i}.xml" for i in range(sources)]


# Steady-state runs measure a poll that is not the process's first: a bot polls again and again
# in one process, and the first call of any code pays one-off costs (lazy imports, cold caches)
# that are a quarter of a 20 ms all-304 poll of 100 sources. Both contenders get one untimed
# poll first, in the same process.
STEADY = ("304", "same")


def run_newsalert(kind: str, port: int, sources: int, workdir: Path) -> dict[str, Any]:
    import dataclasses
    from datetime import UTC, datetime

    from bot.config import load_settings
    from bot.ingest import poll as pipeline
    from bot.ingest import prepare
    from bot.model import Source
    from bot.store import Store

    db_path = str(workdir / "newsalert.db")
    config = load_settings(ROOT / "config" / "newsalert.toml", db_path=db_path, environ={})
    settings = dataclasses.replace(
        config,
        sources=tuple(Source(f"feed {i:05d}", url) for i, url in enumerate(urls(port, sources))),
        allow_private_sources=True,
        first_poll_window=None,  # every match alerts: the whole path runs, outbox included
    )
    store = Store.open(settings.db_path)
    if kind in ("first", "commits"):
        store.catalog.sync_config(
            settings.sources, settings.watchlists, settings.subscriptions, datetime.now(UTC)
        )
    stage = {"fetch": 0.0, "prepare": 0.0, "alert": 0.0, "rest": 0.0}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                stage[name] += time.perf_counter() - started

        return wrapper

    real_run = prepare.Preparer.run
    pool = {"used": False}

    def waited(self: Any, jobs: Any, **kwargs: Any) -> Any:
        # The time poll() waits for prepared bodies: parsing inline, or what the pool has not
        # finished by the time the bodies before are stored.
        results = real_run(self, jobs, **kwargs)
        while True:
            started = time.perf_counter()
            try:
                result = next(results)
            except StopIteration:
                return
            finally:
                stage["prepare"] += time.perf_counter() - started
                pool["used"] = pool["used"] or self._pool is not None
            yield result

    pipeline.fetch_all = timed("fetch", pipeline.fetch_all)
    pipeline._alert_path = timed("alert", pipeline._alert_path)
    pipeline._finish_source = timed("rest", pipeline._finish_source)
    prepare.Preparer.run = waited  # type: ignore[method-assign]
    statements = {"BEGIN": 0, "COMMIT": 0, "other": 0}
    if kind == "commits":

        def trace(sql: str) -> None:
            word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
            statements[word if word in statements else "other"] += 1

        store.db.conn.set_trace_callback(trace)
    if kind in STEADY:
        pipeline.poll(settings, store, settings.sources)  # the warm-up (see STEADY)
        stage.update(dict.fromkeys(stage, 0.0))
    items_before = store.count("items")
    rss_before = peak_rss_mb()
    alerted: list[float] = []  # when each commit that queued alerts was made

    def queued() -> None:
        # What `newsalert run` passes: called after each commit that queued alerts, when its
        # delivery thread is woken and can read them.
        alerted.append(time.perf_counter() - started)

    started, cpu, times = time.perf_counter(), time.process_time(), os.times()
    with TreeRss() as tree:
        report = pipeline.poll(settings, store, settings.sources, queued=queued)
    wall = time.perf_counter() - started
    # CPU seconds: on a shared machine wall time says more about the other jobs than about the
    # code. The poll's own process (store, stories, outbox) and its parse workers, once reaped.
    cpu, children = time.process_time() - cpu, os.times()
    workers_cpu = (children.children_user + children.children_system) - (
        times.children_user + times.children_system
    )
    store.db.conn.set_trace_callback(None)
    result = {
        "wall": wall,
        "cpu": cpu,
        "workers_cpu": workers_cpu,
        "new_items": report.new_items,
        "items": store.count("items") - items_before,
        "stored_items": store.count("items"),
        "failed": report.failed,
        "matches": report.matches,
        "alerts": report.alerts_queued,
        "first_alert": alerted[0] if alerted else None,
        "last_alert": alerted[-1] if alerted else None,
        "stages": stage,
        "pool": pool["used"],
        "rss_before": rss_before,
        "peak_rss": peak_rss_mb(),
        "tree_peak_rss": tree.peak_kib / 1024,
    }
    if kind == "commits":
        result["statements"] = statements
    store.close()
    return result


def run_reader(kind: str, port: int, sources: int, workdir: Path) -> dict[str, Any]:
    import reader

    feeds = reader.make_reader(str(workdir / "reader.sqlite"))
    if kind == "first":
        for url in urls(port, sources):
            feeds.add_feed(url)
    if kind in STEADY:
        feeds.update_feeds(scheduled=False)  # the warm-up (see STEADY)
    before = feeds.get_entry_counts().total
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    feeds.update_feeds(scheduled=False)  # every feed, due or not ("forced" on the second run)
    wall = time.perf_counter() - started
    after = feeds.get_entry_counts().total
    broken = sum(1 for f in feeds.get_feeds() if f.last_exception)
    feeds.close()
    return {
        "wall": wall,
        "items": after - before,
        "stored_items": after,
        "failed": broken,
        "rss_before": rss_before,
        "peak_rss": peak_rss_mb(),
        "version": reader.__version__,
    }


def _parse_one(job: tuple[int, bytes, str]) -> int:
    from bot.ingest.parse import parse
    from bot.model import Source

    index, body, ctype = job
    source = Source(f"feed {index}", f"http://127.0.0.1/feed/{index}.xml")
    return len(parse(body, source, {"content-type": ctype}))


def _fast_path_share(jobs: list[tuple[int, bytes, str]]) -> tuple[int, int]:
    """(feeds the fast path parsed, feeds it refused, which feedparser then parsed)."""
    from bot.ingest import fastparse
    from bot.ingest.parse import _as_utf8

    taken = refused = 0
    for _, body, ctype in jobs:
        data, headers, _ = _as_utf8(body, {"content-type": ctype})
        try:
            fastparse.entries(data, headers)
            taken += 1
        except fastparse.Refused:
            refused += 1
    return taken, refused


def run_parse(sources: int, items: int, sample: int) -> dict[str, Any]:
    """Parsing alone, on bodies in memory: feedparser vs the fast path, inline and in a pool of 2."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from bot.ingest.parse import parse
    from bot.model import Source

    jobs = [(i, feed(i, items), content_type(i)) for i in range(sources)]
    out: dict[str, Any] = {"feeds": sources}
    few = jobs[:sample]
    started = time.perf_counter()
    for i, body, ctype in few:
        source = Source(f"feed {i}", f"http://127.0.0.1/feed/{i}.xml")
        parse(body, source, {"content-type": ctype}, fast=False)
    out["feedparser_per_s"] = len(few) / (time.perf_counter() - started)
    started = time.perf_counter()
    entries = sum(_parse_one(job) for job in jobs)
    out["fast_per_s"] = len(jobs) / (time.perf_counter() - started)
    out["entries"] = entries
    out["fast"], out["refused"] = _fast_path_share(jobs)
    started = time.perf_counter()
    # spawn, not fork: what a poll running next to the scheduler's threads could safely use.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled = sum(pool.map(_parse_one, jobs, chunksize=32))  # fewer round trips: ~1.6x faster than 4
    out["pool2_per_s"] = len(jobs) / (time.perf_counter() - started)
    assert pooled == entries
    return out


def child(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp())
    who, _, kind = args.child.partition("-")
    if who == "newsalert":
        result = run_newsalert(kind, args.port, args.sources, workdir)
    elif who == "reader":
        result = run_reader(kind, args.port, args.sources, workdir)
    else:
        result = run_parse(args.sources, args.items, args.sample)
    print(json.dumps(result))


def measure(name: str, port: int, sources: int, items: int, workdir: Path, sample: int = 100) -> dict:
    command = [sys.executable, __file__, "--child", name, "--port", str(port), "--sources", str(sources)]
    command += ["--items", str(items), "--workdir", str(workdir), "--sample", str(sample)]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"{name} failed:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: int, name: str, port: int, sources: int, items: int, workdir: Path) -> dict:
    """The run with the median wall time of ``runs`` (short runs are the noisiest); all times kept."""
    results = sorted(
        (measure(name, port, sources, items, workdir) for _ in range(runs)), key=lambda r: r["wall"]
    )
    middle = results[len(results) // 2]
    middle["walls"] = [r["wall"] for r in results]
    return middle


# --- the report -------------------------------------------------------------------------------


def row(label: str, r: dict, items: int | None = None) -> str:
    count = r["items"] if items is None else items
    rate = f"{count / r['wall']:10,.0f}" if count else f"{'-':>10}"
    return f"  {label:44s} {r['wall']:8.2f} {rate} {r['peak_rss']:9.0f}"


def machine() -> str:
    import platform

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def main_run(args: argparse.Namespace) -> None:
    n, m = args.sources, args.items
    print(f"poll benchmark: {n:,} sources x {m} items ({n * m:,} items), {machine()}")
    started = time.perf_counter()
    server = Server(n, m)
    print(f"corpus: {server.bytes / 1e6:.1f} MB, served by another process on 127.0.0.1 (ETag, Last-Mod.)")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            results["na_first"] = measure("newsalert-first", server.port, n, m, work)
            results["na_first"]["served"] = server.control()
            results["na_304"] = median_of(3, "newsalert-304", server.port, n, m, work)
            results["na_304"]["served"] = server.control(validators="0")
            results["na_same"] = median_of(3, "newsalert-same", server.port, n, m, work)
            results["na_same"]["served"] = server.control(validators="1")
            commits_n = min(n, 100)
            commits_dir = work / "commits"
            commits_dir.mkdir()
            results["commits"] = measure("newsalert-commits", server.port, commits_n, m, commits_dir)
            server.control()
            if not args.no_reader:
                results["rd_first"] = measure("reader-first", server.port, n, m, work)
                results["rd_first"]["served"] = server.control()
                results["rd_304"] = median_of(3, "reader-304", server.port, n, m, work)
                results["rd_304"]["served"] = server.control()
        finally:
            server.stop()
        results["parse"] = measure("parse", 0, min(n, 1000), m, work, sample=min(n, 100))
    report(results, n, m)
    print(f"\n(whole benchmark: {time.perf_counter() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def report(results: dict[str, dict], n: int, m: int) -> None:
    first, second, same = results["na_first"], results["na_304"], results["na_same"]
    print(f"\n  {'run':44s} {'wall s':>8} {'items/s':>10} {'peak RSS MB':>11}")
    print(row("newsalert first poll", first))
    print(row("newsalert second poll (all 304)", second, first["items"]))
    print(row("newsalert same bytes, no validators (hash)", same, first["items"]))
    if "rd_first" in results:
        print(row(f"reader {results['rd_first']['version']} first update_feeds()", results["rd_first"]))
        forced = results["rd_304"]
        print(row("reader second update_feeds(), forced (all 304)", forced, results["rd_first"]["items"]))
    st = first["stages"]
    other = first["wall"] - sum(st.values())
    where = "in a pool of worker processes" if first["pool"] else "inline"
    print(
        f"\n  newsalert first poll by stage: fetch {st['fetch']:.2f} s; parse+normalize+fingerprint+match "
        f"{where}, waited for {st['prepare']:.2f} s; alert path (dedup, matched items' stories, "
        f"outbox) {st['alert']:.2f} s; the rest (unmatched items, search index, fetch state) "
        f"{st['rest']:.2f} s; other {other:.2f} s; "
        f"CPU {first['cpu']:.2f} s in the poll's process, {first['workers_cpu']:.2f} s in its reaped workers"
    )
    if first["first_alert"] is not None:
        print(
            f"  first alert committed (delivery woken) {first['first_alert']:.2f} s after the poll started "
            f"(goal <= 2 s: {_verdict(first['first_alert'] <= 2)}); the last at {first['last_alert']:.2f} s"
        )
    print(
        f"  {first['new_items']:,} new items, {first['matches']:,} matched, "
        f"{first['alerts']:,} alerts queued, {first['failed']} sources failed; served {first['served']}; "
        f"peak RSS {first['peak_rss']:.0f} MB in the poll's process, {first['tree_peak_rss']:.0f} MB "
        "with its workers (sampled)"
    )
    print(
        f"  second poll served {second['served']} (3 timed runs, each after an untimed one: "
        f"{_walls(second)}); same-bytes poll served {same['served']} (3 runs: {_walls(same)})"
    )
    if "rd_304" in results:
        print(f"  reader's forced update, 3 runs: {_walls(results['rd_304'])}")
    c = results["commits"]["statements"]
    polled = min(n, 100)
    print(
        f"  commits: a {polled}-source first poll ran {c['BEGIN']} BEGIN / {c['COMMIT']} COMMIT for "
        f"{results['commits']['items']:,} items and {c['other']:,} other statements "
        f"({c['COMMIT'] / polled:.2f} commits per source)"
    )
    p = results["parse"]
    print(
        f"  parsing alone ({p['feeds']:,} feeds): feedparser {p['feedparser_per_s']:,.0f} feeds/s, fast path "
        f"{p['fast_per_s']:,.0f} feeds/s on one core ({p['fast_per_s'] / p['feedparser_per_s']:.1f}x), "
        f"{p['pool2_per_s']:,.0f} feeds/s in a pool of 2 processes; the fast path took {p['fast']:,} "
        f"of {p['fast'] + p['refused']:,} feeds"
    )
    if "rd_first" in results:
        r1, r2 = results["rd_first"], results["rd_304"]
        speed1 = r1["wall"] / first["wall"]
        speed2 = r2["wall"] / second["wall"]
        print("\n  goals:")
        # The workers' memory counts too.
        rss = max(first["peak_rss"], first["tree_peak_rss"])
        print(
            f"  first poll: {speed1:.2f}x reader's speed (goal >= 10x: {_verdict(speed1 >= 10)}); "
            f"peak RSS {rss:.0f} MB with the workers (goal < 300 MB: {_verdict(rss < 300)})"
        )
        print(
            f"  all-304 poll: {second['wall']:.2f} s (goal <= 0.2 s: {_verdict(second['wall'] <= 0.2)}), "
            f"{speed2:.1f}x reader's forced update (goal >= 3x: {_verdict(speed2 >= 3)})"
        )
        print(
            f"  same bytes without validators: {same['wall']:.2f} s, of which parsing "
            f"{same['stages']['prepare']:.2f} s (skipped by the body hash)"
        )
        print(
            f"  items stored: newsalert {first['stored_items']:,}, reader {r1['stored_items']:,} "
            f"(the corpus has {n * m:,})"
        )


def _walls(r: dict) -> str:
    return ", ".join(f"{w:.2f}" for w in r.get("walls", [r["wall"]])) + " s (median shown above)"


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def scaling(args: argparse.Namespace) -> None:
    m = args.items
    print(f"scaling: newsalert first and second (all 304) poll, {m} items per source, {machine()}")
    rows = {}
    for n in (100, 1000, 5000):
        server = Server(n, m)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                first = measure("newsalert-first", server.port, n, m, Path(tmp))
                second = median_of(5, "newsalert-304", server.port, n, m, Path(tmp))  # ~20 ms at 100
        finally:
            server.stop()
        rows[n] = (first, second)
        print(
            f"  ... {n:,} sources: first poll {first['wall']:.1f} s, all-304 poll {second['wall']:.2f} s",
            flush=True,
        )
    print(
        f"\n  {'sources':>8} {'first s':>9} {'ms/source':>10} {'vs 1,000':>9} {'304 s':>7} "
        f"{'ms/source':>10} {'vs 1,000':>9} {'peak MB':>8}"
    )
    for n, (first, second) in rows.items():
        per1, per2 = first["wall"] / n, second["wall"] / n
        base1, base2 = rows[1000][0]["wall"] / 1000, rows[1000][1]["wall"] / 1000
        print(
            f"  {n:8,} {first['wall']:9.2f} {per1 * 1000:10.2f} {per1 / base1:8.2f}x {second['wall']:7.2f} "
            f"{per2 * 1000:10.3f} {per2 / base2:8.2f}x {first['peak_rss']:8.0f}"
        )
    for label, which in (("first poll", 0), ("all-304 poll", 1)):
        mid = rows[1000][which]["wall"] / 1000
        spread = max(abs(rows[n][which]["wall"] / n / mid - 1) for n in rows)
        verdict = "met" if spread <= 0.30 else "NOT met"
        print(
            f"  {label}: time per source within {spread:.0%} of the 1,000-source figure (goal 30%: {verdict})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--items", type=int, help="items per source (50; 10 with --scaling)")
    parser.add_argument("--scaling", action="store_true", help="newsalert at 100 / 1,000 / 5,000 sources")
    parser.add_argument("--no-reader", action="store_true", help="skip reader")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--sample", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.items is None:
        # 5,000 sources x 50 items would take most of an hour on 2 cores (the first poll's cost per
        # item grows with the database); 10 items keeps --scaling to minutes.
        args.items = 10 if args.scaling else 50
    if args.serve:
        serve(args.sources, args.items)
    elif args.child:
        child(args)
    elif args.scaling:
        scaling(args)
    else:
        main_run(args)


if __name__ == "__main__":
    main()
