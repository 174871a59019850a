"""The command line's looking-back commands: query test/backtest, search, export, status, sources,
subscriptions, outbox and digest. bot/cli.py parses the arguments and dispatches here."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot import history, opml
from bot.alerts import digest as digests
from bot.alerts.digest import next_digest
from bot.alerts.render import format_time, render_console_message, shorten
from bot.cli_exit import EXIT_CONFIG
from bot.config import Settings, format_duration, parse_duration
from bot.errors import (
    ConfigError,
    QueryError,
    RetryLater,
    SearchTimeout,
    StoreError,
)
from bot.match.backtest import backtest, format_backtest, format_test
from bot.match.query import Query, compile_query
from bot.ops import health as health_status
from bot.service import Newsalert
from bot.slack.sink import make_sink
from bot.store import Store
from bot.store.dialect import is_postgres_url, sqlite_path
from bot.urls import redact

log = logging.getLogger("newsalert")


def _missing(target: str) -> bool:
    """A SQLite file that does not exist (a PostgreSQL database is checked by opening it)."""
    return not is_postgres_url(target) and target != ":memory:" and not Path(sqlite_path(target)).is_file()


def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.query_command == "test":
            return _query_test(args)
        return _query_backtest(settings, args)
    except QueryError as e:
        _print_query_error(e)
        return EXIT_CONFIG


def _print_query_error(e: QueryError) -> None:
    """One line naming the problem and column; below it, for a short query, the query and a caret."""
    print(f"newsalert: query error: {e}", file=sys.stderr)
    if pointer := e.pointer():
        print("\n".join(f"  {line}" for line in pointer), file=sys.stderr)


def _query_test(args: argparse.Namespace) -> int:
    query = compile_query(args.query)
    text = sys.stdin.read() if args.text == "-" else args.text
    spans = query.match(args.title, text, source=args.source)
    print(format_test(query, args.title, text, spans))
    return 0 if spans is not None else 1


def _query_backtest(settings: Settings, args: argparse.Namespace) -> int:
    current: Query | None = None
    if args.watchlist is not None:
        configured = {w.name: w.query for w in settings.watchlists}
        if args.watchlist not in configured:
            known = ", ".join(sorted(configured)) or "none are defined"
            raise ConfigError(settings.path, f"unknown watchlist {args.watchlist!r} (defined: {known})")
        current = compile_query(configured[args.watchlist], watchlist=args.watchlist)
    if args.query is None and current is None:
        print("newsalert: query backtest needs a QUERY, a --watchlist NAME, or both", file=sys.stderr)
        return EXIT_CONFIG
    # No QUERY: backtest the watchlist as configured (nothing to compare it with).
    query, current = (compile_query(args.query), current) if args.query is not None else (current, None)
    assert query is not None
    if _missing(settings.db_path):
        # Store.open would create an empty database and report that nothing matched: say why instead.
        raise StoreError(f"{settings.db_path}: no such database (use --db, or run `newsalert poll --once`)")
    since = datetime.now(UTC) - timedelta(seconds=parse_duration(args.since))
    with Store.open(settings.db_path) as store:
        result = backtest(store, query, since, current=current, watchlist=args.watchlist)
    print(format_backtest(result, database=settings.db_path, window=args.since, top=args.top))
    return 0


_WIDTHS = (8, 12, 8, 16, 16, 20)


def cmd_subscriptions(settings: Settings, args: argparse.Namespace) -> int:
    with Newsalert.seeded_store(settings) as store:
        rows = store.catalog.subscriptions()
    now = datetime.now(UTC)
    header = ("id", "channel", "mode", "schedule", "timezone", "next digest")
    print("  ".join(f"{h:{w}}" for h, w in zip(header, _WIDTHS, strict=True)) + "  watchlists")
    for sid, sub, _, _ in rows:
        digest = sub.mode == "digest"
        upcoming = format_time(next_digest(sub, now)) if digest else "-"
        row = (sid, sub.channel, sub.mode, sub.schedule or "-", sub.timezone if digest else "-", upcoming)
        columns = "  ".join(f"{v:{w}}" for v, w in zip(row, _WIDTHS, strict=True))
        print(f"{columns}  {', '.join(sub.watchlists)}")
    return 0


def cmd_workers(settings: Settings, args: argparse.Namespace) -> int:
    """The `newsalert run` workers of the database: live or silent, their last heartbeat and leases."""
    now = datetime.now(UTC)
    with Store.open(settings.db_path) as store:
        workers, leases = store.leases.workers(), store.leases.leases()
    lease = timedelta(seconds=settings.worker_lease)
    live = sum(now - w.heartbeat_at <= lease for w in workers)
    print(f"{live} live worker{'s' if live != 1 else ''} (lease {format_duration(settings.worker_lease)})")
    for w in workers:
        state = "live" if now - w.heartbeat_at <= lease else "silent"
        age = max(0, int((now - w.heartbeat_at).total_seconds()))
        print(
            f"  {w.id}  {state:6}  {w.mode or '-':6}  heartbeat {age}s ago  since {format_time(w.started_at)}"
            f"  {w.sources} source lease{'s' if w.sources != 1 else ''}, {w.channels} channel"
            f"{'s' if w.channels != 1 else ''} delivering"
        )
    for source, holder, expires in leases:
        print(f"  lease {source!r} -> {holder} until {format_time(expires)}")
    return 0


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    with Store.open(settings.db_path) as store:
        if args.outbox_action == "retry":
            requeued = store.outbox.retry_dead_alerts(args.alert_ids)
            print(
                f"{requeued} dead letter{'s' if requeued != 1 else ''} queued again; "
                "the next delivery round (or `newsalert poll --once`) posts them"
            )
            return 0
        waiting, dead = store.outbox.queued_alerts(), store.outbox.dead_alerts()
    print(f"{len(waiting)} waiting, {len(dead)} dead letter{'s' if len(dead) != 1 else ''}")
    for label, rows in (("waiting", waiting), ("dead", dead)):
        for q in rows:
            error = f" — {q.last_error}" if q.last_error else ""
            title = shorten(q.item.title, 70)
            print(f"  [{q.id}] {label:7} {q.channel:12} attempts {q.attempts}: {title}{error}")
    if dead:
        print("retry with: newsalert outbox retry [ID …]")
    return 0


def cmd_digest(settings: Settings, args: argparse.Namespace) -> int:
    store = Newsalert.seeded_store(settings)
    try:
        now = datetime.now(UTC)
        if args.digest_action == "preview":
            preview = digests.build_digest(store, args.subscription_id, now)
            for message in digests.render_digest(preview):
                print(render_console_message(preview.channel, message), end="\n\n")
            print(f"(preview: not sent; covers {format_time(preview.since)} to {format_time(now)})")
        else:
            sent = digests.send_digest(store, make_sink(settings), args.subscription_id, now)
            print(
                f"digest sent to {sent.channel}: {len(sent.stories)} stories since {format_time(sent.since)}"
            )
    except digests.ScheduleError as e:
        print(f"newsalert: {e}", file=sys.stderr)
        return 1
    except RetryLater as e:
        print(f"newsalert: digest not sent, Slack unavailable ({e}); its window stays open", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return int(value)


def _history_store(settings: Settings) -> Store:
    if _missing(settings.db_path):
        # Store.open would create an empty database and report nothing: say why instead.
        raise StoreError(f"{settings.db_path}: no such database (use --db, or run `newsalert poll --once`)")
    return Store.open(settings.db_path)


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    store = _history_store(settings)
    try:
        hits = history.search(
            store,
            args.query,
            since=timedelta(seconds=parse_duration(args.since)),
            watchlist=args.watchlist,
            source=args.source,
            limit=args.limit,
        )
    except QueryError as e:
        _print_query_error(e)
        return EXIT_CONFIG
    except SearchTimeout as e:
        print(f"newsalert: {e}: narrow it with --since, --watchlist or --source", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.json:
        print(json.dumps([hit.as_json() for hit in hits], ensure_ascii=False, indent=2))
    elif hits:
        print(history.format_hits(hits))
    else:
        print(f"no stories match in the last {args.since}")
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    store = _history_store(settings)
    try:
        since = timedelta(seconds=parse_duration(args.since))
        rows = history.export_rows(store, since=since, watchlist=args.watchlist)
    finally:
        store.close()
    write = history.write_json if args.format == "json" else history.write_csv
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            write(rows, out)
        log.info("exported stories=%d format=%s file=%s", len(rows), args.format, args.output)
    else:
        write(rows, sys.stdout)
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    store = _history_store(settings)
    try:
        report = health_status.health(store)
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        health_status.print_health(report)
    return 1 if report.needs_human else 0


def _catalog_store(settings: Settings) -> Store:
    """The database with the config file's catalog synced in, as `run` would see it."""
    store = Store.open(settings.db_path)
    store.catalog.sync_config(
        settings.sources, settings.watchlists, settings.subscriptions, datetime.now(UTC)
    )
    return store


def cmd_sources(settings: Settings, args: argparse.Namespace) -> int:
    if args.sources_command == "export":
        store = _catalog_store(settings)
        try:
            sys.stdout.write(opml.export_opml(store.catalog.active_sources()))
        finally:
            store.close()
        return 0
    try:
        feeds = opml.parse_opml(Path(args.opml_file).read_bytes())
    except OSError as e:
        print(f"newsalert: cannot read {args.opml_file}: {e.strerror or e}", file=sys.stderr)
        return 1
    except opml.OpmlError as e:
        print(f"newsalert: {args.opml_file}: {e}", file=sys.stderr)
        return 1
    store = _catalog_store(settings)
    try:
        report = opml.import_feeds(
            store, feeds, interval=settings.interval, allow_private=settings.allow_private_sources
        )
    finally:
        store.close()
    for source in report.added:
        print(f"added     {source.name}  {redact(source.url)}")
    for source in report.restored:
        print(f"restored  {source.name}  {redact(source.url)}")
    for feed in report.present:
        print(f"present   {feed.name}  {redact(feed.url)}")
    for feed, why in report.refused:
        print(f"refused   {feed.name}  {redact(feed.url)}: {why}")
    print(f"{args.opml_file}: {report.summary()}")
    return 0


# `stories fit` without --labeled: the labeled sets of a checkout (a pip-installed bot has none).
