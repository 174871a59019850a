"""Command line: thin commands over the core. `newsalert --help` lists them."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bot import demo
from bot.config import DEFAULT_CONFIG, Settings, format_duration, load_settings
from bot.deliver import ConsoleSink
from bot.errors import ConfigError, SlackAuthError, StoreError
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
    return parser


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


COMMANDS = {
    "run": cmd_run,
    "poll": cmd_poll,
    "demo": cmd_demo,
    "check-config": cmd_check_config,
    "story": cmd_story,
}
