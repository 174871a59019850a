"""Several `newsalert run` workers on one database: leases, claims, heartbeats, and a kill -9.

The repository's rules are tested in process on both backends; the whole thing on PostgreSQL with
three real `newsalert run --http` workers, 200 loopback sources and the fake Slack.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import signal
import subprocess
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from bot.model import Source
from bot.store import Store
from tests.conftest import run_newsalert, settings_for, start_newsalert, sync, wait_for, write_config
from tests.fake_slack import FakeSlack
from tests.feed_server import FeedServer
from tests.pg_cluster import Cluster
from tests.slack_bot import free_port

LEASE = timedelta(seconds=30)


def _store_with_sources(db_target: str, tmp_path: Path, count: int) -> Store:
    sources = [Source(f"s{i:02d}", f"http://127.0.0.1:9/{i}.rss") for i in range(count)]
    store = Store.open(db_target)
    sync(store, settings_for(tmp_path, *sources))
    return store


def test_a_due_source_is_leased_to_one_worker_until_released_or_expired(
    db_target: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    with _store_with_sources(db_target, tmp_path, 6) as store:
        first = store.leases.take_sources("w1", now, lease=LEASE, limit=4)
        second = store.leases.take_sources("w2", now, lease=LEASE, limit=4)
        assert first == ["s00", "s01", "s02", "s03"] and second == ["s04", "s05"]  # nothing twice
        assert store.leases.take_sources("w3", now, lease=LEASE, limit=4) == []
        # Polled and released: its next poll is decided, so it is not due, and nobody takes it.
        store.sources.set_next_polls([("s00", now + timedelta(minutes=5), 300, "interval")])
        store.leases.release_sources("w1", ["s00"])
        assert store.leases.take_sources("w3", now, lease=LEASE, limit=4) == []
        # w1 stops beating: once its leases expire, its still-due sources are anyone's.
        later = now + LEASE + timedelta(seconds=1)
        store.leases.heartbeat("w2", host="h", pid=2, mode="http", now=later, lease=LEASE)  # renews w2's
        assert store.leases.take_sources("w3", later, lease=LEASE, limit=9) == ["s01", "s02", "s03"]
        assert {w for _, w, _ in store.leases.leases()} == {"w2", "w3"}
        # Only the names asked for are taken, and a stopping worker frees what it holds at once.
        store.leases.leave("w3")
        assert store.leases.take_sources("w4", later, lease=LEASE, limit=9, names=["s02"]) == ["s02"]


def test_heartbeats_tell_live_workers_from_silent_ones(db_target: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with _store_with_sources(db_target, tmp_path, 2) as store:
        store.leases.heartbeat("old", host="h", pid=1, mode="none", now=now - 2 * LEASE, lease=LEASE)
        store.leases.heartbeat("new", host="h", pid=2, mode="http", now=now, lease=LEASE)
        store.leases.take_sources("new", now, lease=LEASE, limit=1)
        assert store.leases.live_workers(now, LEASE) == ["new"]
        assert store.leases.silent_workers(now, LEASE) == ["old"]
        rows = {w.id: w for w in store.leases.workers()}
        assert rows["new"].sources == 1 and rows["new"].mode == "http" and rows["old"].sources == 0
        # A silent worker's channel claim is taken over (the Deliverer passes silent_workers).
        assert store.outbox.claim_channel("C1", "old", now - 2 * LEASE, stale_before=now - 3 * LEASE)
        assert not store.outbox.claim_channel("C1", "new", now, stale_before=now - 3 * LEASE)
        assert store.outbox.claim_channel(
            "C1",
            "new",
            now,
            stale_before=now - 3 * LEASE,
            dead_workers=store.leases.silent_workers(now, LEASE),
        )


def test_a_job_runs_once_per_period_and_a_slack_event_is_handled_once(db_target: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with _store_with_sources(db_target, tmp_path, 0) as store:
        assert store.leases.claim_period("prune", "2026-12-02", "w1", now)
        assert not store.leases.claim_period("prune", "2026-12-02", "w2", now)
        assert not store.leases.claim_period("prune", "2026-12-01", "w2", now)  # an older period
        assert store.leases.claim_period("prune", "2026-12-03", "w2", now)
        assert store.leases.first_slack_event("Ev1", now)
        assert not store.leases.first_slack_event("Ev1", now)
        assert store.leases.first_slack_event("Ev2", now)


# -- three workers on one PostgreSQL database ---------------------------------------------------

SOURCES = 200
CHANNELS = [f"C0WORK{c:03d}" for c in range(8)]
MATCHING = 40  # sources whose items match a channel's watchlist (source i -> channel i % 8)
INTERVAL = 4  # seconds between two polls of a source (floor and ceiling too: no adaptive change)
WORKER_LEASE = 6  # beats every 1.5 s: a loaded machine must not let a busy worker's leases lapse
DIGEST = "C0DIGEST1"


def _words(seed: str) -> str:
    """Five made-up words: no two items share one, so each is a story of its own."""
    digest = hashlib.sha256(seed.encode()).digest()
    return " ".join("".join(chr(97 + b % 26) for b in digest[k * 6 : k * 6 + 6]) for k in range(5))


def _feed(i: int, version: int) -> str:
    items = []
    for v in range(1, version + 1):
        topic = f"kw{i % len(CHANNELS)} " if i < MATCHING else ""
        title = f"{topic}{_words(f'{i}-{v}')}"
        items.append(
            f"<item><title>{title}</title><link>https://news.example/{i}/{v}</link>"
            f"<guid>n-{i}-{v}</guid><description>About {title}.</description></item>"
        )
    channel = f"<channel><title>f{i}</title>{''.join(items)}</channel>"
    return f"<?xml version='1.0'?><rss version='2.0'>{channel}</rss>"


def _serve(feeds: FeedServer, version: int, only: range) -> None:
    for i in only:
        feeds.serve(f"/f/{i:03d}.rss", _feed(i, version), etag=f'"v{version}"')


def _alerts_in_slack(slack: FakeSlack) -> dict[str, list[int]]:
    """Each channel's alert ids in the order Slack got them (from the metadata each post carries)."""
    with slack.lock:
        messages = sorted(slack.messages.items(), key=lambda kv: float(kv[0][1]))
    out: dict[str, list[int]] = {}
    for (channel, _), m in messages:
        meta = m.get("metadata") or {}
        if meta.get("event_type") == "newsalert_alert":
            out.setdefault(channel, []).append(meta["event_payload"]["alert_id"])
    return out


def _query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with Store.open(url) as store:
        return [tuple(r) for r in store.db.execute(sql, params).fetchall()]


def _pid(worker: str) -> int:
    return int(worker.split(":")[1])


def test_three_workers_share_sources_and_channels_and_survive_a_kill(
    pg_cluster: Cluster, tmp_path: Path, feeds: FeedServer, slack: FakeSlack
) -> None:
    url = pg_cluster.fresh_database()
    _serve(feeds, 1, range(SOURCES))
    at = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%H:%M")
    config = write_config(
        tmp_path / "newsalert.toml",
        defaults={
            "allow_private_sources": True,
            "first_poll_window": "0",
            "interval": INTERVAL,
            "min_interval": INTERVAL,
            "max_interval": INTERVAL,
            "worker_lease": WORKER_LEASE,
        },
        sources=[{"name": f"s{i:03d}", "url": feeds.url(f"/f/{i:03d}.rss")} for i in range(SOURCES)],
        watchlists={f"kw{c}": f"kw{c}" for c in range(len(CHANNELS))},
        subscriptions=[
            *({"channel": ch, "watchlists": [f"kw{c}"]} for c, ch in enumerate(CHANNELS)),
            {
                "channel": DIGEST,
                "watchlists": ["kw0"],
                "mode": "digest",
                "schedule": f"daily {at}",
                "timezone": "UTC",
                "skip_empty": False,
            },
        ],
    )
    env = {"NEWSALERT_DATABASE_URL": url, "SLACK_SIGNING_SECRET": "s" * 32}
    # The digest subscription made a day ago: its time today passed unsent, so every worker that
    # starts finds it missed (as after a restart) and only the one that claims the window sends it.
    assert run_newsalert("subscriptions", config=config, env=env).returncode == 0
    with Store.open(url) as store:
        store.db.execute(
            "UPDATE subscriptions SET created_at = ? WHERE mode = 'digest'",
            [(datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="seconds")],
        )

    logs: list[Path] = []
    procs: list[subprocess.Popen[str]] = []
    outs: list[IO[str]] = []
    ports: list[int] = []
    try:
        for n in range(3):
            logs.append(tmp_path / f"worker{n}.log")
            outs.append(logs[-1].open("w"))
            ports.append(free_port())
            procs.append(
                start_newsalert(
                    *("run", "--http", "--port", str(ports[-1]), "--host", "127.0.0.1"),
                    config=config,
                    env=env,
                    slack=slack,
                    stdout=outs[-1],
                    stderr=subprocess.STDOUT,
                )
            )

        def alerts(status: str = "sent") -> int:
            return _query(url, "SELECT count(*) FROM alerts WHERE status = ?", (status,))[0][0]

        # Round one: every source fetched, every alert posted; all three serve HTTP.
        wait_for(lambda: all(feeds.times.get(f"/f/{i:03d}.rss") for i in range(SOURCES)), 120, "every source")
        wait_for(lambda: alerts() == MATCHING, 120, "round one's alerts")
        ids = set()
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                assert r.status == 200
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                ids |= set(re.findall(r'newsalert_worker\{worker="([^"]+)"\} 1', r.read().decode()))
        assert ids == {w for (w,) in _query(url, "SELECT id FROM workers")} and len(ids) == 3  # per worker
        listed = run_newsalert("workers", config=config, env=env)
        assert listed.returncode == 0 and listed.stdout.startswith("3 live workers"), (
            listed.stdout + listed.stderr
        )

        # Two more rounds: a source is fetched once per interval, not once per worker.
        wait_for(
            lambda: all(len(feeds.times.get(f"/f/{i:03d}.rss", [])) >= 3 for i in range(SOURCES)),
            120,
            "three rounds",
        )
        for path, times in feeds.times.items():
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert min(gaps) >= INTERVAL / 2, (path, gaps)  # two workers polling it would be ~0 apart
        polled = [sum(int(n) for n in re.findall(r"poll done polled (\d+)", log.read_text())) for log in logs]
        assert sum(p > 0 for p in polled) >= 2, polled  # the polling is shared

        # A new item on each matching source; Slack takes each post but holds its answer, so every
        # worker is caught mid-delivery. Then the feeds hold their answers too: each worker is also
        # mid-poll, holding leases. One of them is killed.
        slack.slow("chat.postMessage", 120, times=10_000)
        _serve(feeds, 2, range(MATCHING))
        in_flight = """SELECT DISTINCT c.worker FROM channel_claims c JOIN alerts a ON a.channel = c.channel
                       WHERE a.status = 'queued' AND a.in_flight = 1"""
        wait_for(lambda: _query(url, in_flight), 120, "a worker mid-delivery")
        feeds.hold()
        held = "SELECT worker, source FROM source_leases"

        def victim() -> str | None:
            delivering = {w for (w,) in _query(url, in_flight)}
            leasing = {w for w, _ in _query(url, held)}
            return next(iter(sorted(delivering & leasing)), None)

        wait_for(victim, 120, "a worker mid-delivery and mid-poll")
        doomed = victim()
        assert doomed is not None
        its_sources = [s for w, s in _query(url, held) if w == doomed]
        its_channels = [
            c for (c,) in _query(url, "SELECT channel FROM channel_claims WHERE worker = ?", (doomed,))
        ]
        fetched_before = {s: len(feeds.times.get(f"/f/{s[1:]}.rss", [])) for s in its_sources}
        os.kill(_pid(doomed), signal.SIGKILL)
        killed = next(p for p in procs if p.pid == _pid(doomed))
        killed.wait(timeout=30)
        assert killed.returncode == -signal.SIGKILL
        feeds.release()
        slack.answer_at_once()

        # Its channels and sources are taken over; every alert is posted exactly once, in order.
        wait_for(lambda: alerts() == 2 * MATCHING, 120, "every alert, after the kill")
        wait_for(
            lambda: all(len(feeds.times.get(f"/f/{s[1:]}.rss", [])) > n for s, n in fetched_before.items()),
            60,
            "the killed worker's sources fetched by another",
        )
        assert alerts("queued") == 0 and alerts("dead") == 0
        posted = _alerts_in_slack(slack)
        counts = Counter(a for ids in posted.values() for a in ids)
        assert [a for a, n in counts.items() if n > 1] == []  # nothing doubled
        every = {a for (a,) in _query(url, "SELECT id FROM alerts")}
        assert set(counts) == every and len(every) == 2 * MATCHING  # nothing lost
        for channel, ids in posted.items():
            assert ids == sorted(ids), (channel, ids)  # each channel's alerts in order
        assert its_channels and all(posted[c] for c in its_channels)

        # The missed digest window: sent once, by one of the three.
        digests = _query(url, "SELECT status, worker FROM digests")
        assert [s for s, _ in digests] == ["sent"], digests
        in_digest_channel = [m for (ch, _), m in slack.messages.items() if ch == DIGEST]
        assert len(in_digest_channel) == 1, in_digest_channel
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        for out in outs:
            out.close()
    for proc, log in zip(procs, logs, strict=True):
        if proc.returncode != -signal.SIGKILL:
            assert proc.returncode == 0, log.read_text()[-3000:]
            assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert not slack.violations, slack.violations
