"""Command line: thin commands over the core. `newsalert --help` lists them."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot import demo
from bot.backtest import backtest, format_backtest, format_test
from bot.config import DEFAULT_CONFIG, Settings, format_duration, load_settings, parse_duration
from bot.deliver import ConsoleSink
from bot.errors import ConfigError, QueryError, SlackAuthError, StoreError
from bot.query import Query, compile_query
from bot.render import format_time
from bot.service import Newsalert, make_sink
from bot.store import Store

EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_SLACK_AUTH = 4

log = logging.getLogger("newsalert")


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the command (`newsalert poll --once --db x.db`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=f"config file (env NEWSALERT_CONFIG, default {DEFAULT_CONFIG})",
    )
    common.add_argument(
        "--db",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="SQLite database (env NEWSALERT_DB, default newsalert.db)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug detail"
    )
    parser = argparse.ArgumentParser(
        prog="newsalert",
        parents=[common],
        description="Watch the news for trust-and-safety topics and alert Slack channels.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", parents=[common], help="poll on schedule and deliver alerts (long-running)")
    poll = commands.add_parser(
        "poll", parents=[common], help="poll every source once, deliver, print a summary"
    )
    poll.add_argument("--once", action="store_true", help="poll once and exit (the only mode; for clarity)")
    demo_cmd = commands.add_parser(
        "demo",
        parents=[common],
        help="offline: poll the bundled config/samples into a temporary database, print alerts",
    )
    demo_cmd.add_argument(
        "--keep", metavar="PATH", help="keep the demo database at PATH (to try `story` or `query` on it)"
    )
    story = commands.add_parser("story", parents=[common], help="show one story: its items and sources")
    story.add_argument("story_id", type=int, metavar="ID", help="story id (shown with each console alert)")
    commands.add_parser(
        "check-config", parents=[common], help="validate the config and print what it resolved"
    )
    _add_query_parser(commands, common)
    return parser


def _add_query_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    query = commands.add_parser(
        "query", parents=[common], help="try a watchlist query on a text, or over the stored history"
    )
    actions = query.add_subparsers(dest="query_command", required=True, metavar="ACTION")
    test = actions.add_parser(
        "test", parents=[common], help="does QUERY match this text? (exit 0 if it does, 1 if not)"
    )
    test.add_argument("query", metavar="QUERY", help="the query, quoted for the shell")
    test.add_argument("--text", default="", help='item text; "-" reads it from stdin')
    test.add_argument("--title", default="", help="item title")
    test.add_argument("--source", default="", help="source name, for source: terms")
    history = actions.add_parser(
        "backtest",
        parents=[common],
        help="what QUERY would have alerted over the stored history (the database of --db)",
    )
    history.add_argument(
        "query", metavar="QUERY", nargs="?", help="the query (default: the --watchlist's current one)"
    )
    history.add_argument(
        "--since", type=_since, default="30d", metavar="DURATION", help="window: 30d, 12h, 2w (default 30d)"
    )
    history.add_argument("--watchlist", metavar="NAME", help="compare with this watchlist's configured query")
    history.add_argument("--top", type=int, default=10, metavar="N", help="items listed per section (10)")


def _since(value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        # APScheduler logs every job start and end at INFO; our own poll summary says more.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        if args.command == "demo":
            logging.getLogger().setLevel(logging.WARNING)  # the demo's output is the alerts
    config = getattr(args, "config", None) or os.environ.get("NEWSALERT_CONFIG") or DEFAULT_CONFIG
    try:
        settings = load_settings(config, db_path=getattr(args, "db", None))
        return COMMANDS[args.command](settings, args)
    except ConfigError as e:
        print(f"newsalert: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as e:
        print(f"newsalert: database error: {e}", file=sys.stderr)
        return EXIT_DATABASE
    except SlackAuthError as e:
        print(f"newsalert: Slack error: {e}", file=sys.stderr)
        return EXIT_SLACK_AUTH


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    # A platform stop (Procfile dynos, systemd) sends SIGTERM: exit through the scheduler's shutdown.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Newsalert(settings, make_sink(settings)).run()
    return 0


def cmd_poll(settings: Settings, args: argparse.Namespace) -> int:
    outcome = Newsalert(settings, make_sink(settings)).poll_once()
    print(outcome.summary())
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    directory = demo.samples_dir()
    with tempfile.TemporaryDirectory(prefix="newsalert-demo-") as tmp, demo.serve_directory(directory) as url:
        db_path = args.keep or str(Path(tmp) / "demo.db")
        if args.keep and Path(args.keep).exists():
            raise ConfigError(args.keep, "already exists; the demo starts from an empty database")
        demo_settings = demo.demo_settings(settings, demo.sample_sources(directory, url), db_path)
        print(
            f"newsalert demo: {len(demo_settings.sources)} sample sources from {directory}, "
            f"watchlists from {settings.path}; alerts for channel {demo.DEMO_CHANNEL}:\n"
        )
        outcome = Newsalert(demo_settings, ConsoleSink()).poll_once()
        print(outcome.summary())
        if args.keep:
            print(f"database kept: {args.keep}")
    return 0


def cmd_story(settings: Settings, args: argparse.Namespace) -> int:
    store = Store.open(settings.db_path)
    try:
        items = store.story_items(args.story_id)
        if not items:
            print(f"newsalert: no story {args.story_id} in {settings.db_path}", file=sys.stderr)
            return 1
        sources = store.story_sources(args.story_id)
    finally:
        store.close()
    print(f"story {args.story_id}: {items[0][1].title}")
    print(f"{len(sources)} sources: {', '.join(sources)}")
    for item_id, item, duplicate_of in items:
        who = f"{item.outlet} (via {item.source})" if item.outlet else item.source
        same = f" (same URL as item {duplicate_of})" if duplicate_of else ""
        print(f"  [{item_id}] {format_time(item.published)} {who}: {item.title}{same}")
        if item.url:
            print(f"        {item.url}")
    return 0


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    out = [f"config OK: {settings.path}", f"database: {settings.db_path}"]
    if settings.slack_token:
        out.append(f"slack: token set, API {settings.slack_api_url}")
    else:
        out.append("slack: SLACK_BOT_TOKEN not set, alerts go to the console")
    window = format_duration(settings.first_poll_window) if settings.first_poll_window else "off"
    out.append(
        f"defaults: interval {format_duration(settings.interval)}, first-poll window {window}, "
        f"timeout {settings.fetch_timeout}s, concurrency {settings.concurrency}, "
        f"private sources {'allowed' if settings.allow_private_sources else 'refused'}"
    )
    out.append(f"sources ({len(settings.sources)}):")
    out += [f"  {s.name} [{s.type}, every {format_duration(s.interval)}] {s.url}" for s in settings.sources]
    out.append(f"watchlists ({len(settings.watchlists)}):")
    for w in settings.watchlists:
        out.append(f"  {w.name}: {' '.join(w.query.split())}")
        if w.description:
            out.append(f"    ({w.description})")
    out.append(f"subscriptions ({len(settings.subscriptions)}):")
    out += [f"  {s.channel} <- {', '.join(s.watchlists)} ({s.mode})" for s in settings.subscriptions]
    print("\n".join(out))
    return 0


def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.query_command == "test":
            return _query_test(args)
        return _query_backtest(settings, args)
    except QueryError as e:
        # A query typed on the command line: show it with a caret under the column.
        print(f"newsalert: query error: {e}\n  {e.query}\n  {' ' * e.position}^", file=sys.stderr)
        return EXIT_CONFIG


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
    if settings.db_path != ":memory:" and not Path(settings.db_path).is_file():
        # Store.open would create an empty database and report that nothing matched: say why instead.
        raise StoreError(f"{settings.db_path}: no such database (use --db, or run `newsalert poll --once`)")
    since = datetime.now(UTC) - timedelta(seconds=parse_duration(args.since))
    store = Store.open(settings.db_path)
    try:
        result = backtest(store, query, since, current=current, watchlist=args.watchlist)
    finally:
        store.close()
    print(format_backtest(result, database=settings.db_path, window=args.since, top=args.top))
    return 0


COMMANDS = {
    "run": cmd_run,
    "poll": cmd_poll,
    "demo": cmd_demo,
    "check-config": cmd_check_config,
    "story": cmd_story,
    "query": cmd_query,
}
