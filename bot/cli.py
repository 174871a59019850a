"""Command line: thin commands over the core. `newsalert --help` lists them."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bot import demo
from bot.alerts.render import format_time
from bot.alerts.sink import ConsoleSink
from bot.cli_exit import EXIT_CONFIG, EXIT_DATABASE, EXIT_SLACK_AUTH
from bot.cli_history import (
    _positive,
    cmd_digest,
    cmd_export,
    cmd_outbox,
    cmd_query,
    cmd_search,
    cmd_sources,
    cmd_status,
    cmd_subscriptions,
    cmd_workers,
)
from bot.config import DEFAULT_CONFIG, Settings, format_duration, load_settings, parse_duration
from bot.errors import (
    ConfigError,
    SlackAuthError,
    StoreError,
    StoryModelError,
)
from bot.ingest.schedule import bounds
from bot.ops import logs
from bot.service import Newsalert, check_run_mode
from bot.slack.sink import make_sink
from bot.store import Store
from bot.store.dialect import redacted
from bot.stories import fit, labeled
from bot.stories.decide import describe
from bot.stories.embed import embed

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
        help="SQLite file or postgresql:// URL (env NEWSALERT_DATABASE_URL or NEWSALERT_DB; newsalert.db)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug detail"
    )
    common.add_argument(
        "--allow-newer-schema",
        action="store_true",
        default=argparse.SUPPRESS,
        help="use a database a newer newsalert has migrated (it may lose what that version stores)",
    )
    common.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=argparse.SUPPRESS,
        help="text (default) or json: one JSON object per line, for log shippers",
    )
    parser = argparse.ArgumentParser(
        prog="newsalert",
        parents=[common],
        description="Watch the news for trust-and-safety topics and alert Slack channels.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        parents=[common],
        help="poll on schedule, deliver alerts and serve the Slack app (long-running)",
        description="Socket Mode when SLACK_APP_TOKEN is set; HTTP mode with --http; else alerts only.",
    )
    run.add_argument(
        "--http",
        action="store_true",
        help="serve the Slack app over HTTP at POST /slack/events (and /healthz)",
    )
    run.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or 3000),
        help="HTTP port (env PORT, default 3000)",
    )
    run.add_argument("--host", default="0.0.0.0", help="HTTP address to listen on (default 0.0.0.0)")
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="without --http: serve GET /metrics and /healthz here",
    )
    migrate = commands.add_parser(
        "migrate",
        parents=[common],
        help="apply the database's pending migrations (PostgreSQL workers wait for this)",
    )
    migrate.add_argument(
        "--from",
        dest="copy_from",
        metavar="SQLITE_URL",
        help="then copy an existing SQLite database (sqlite:///path/to/newsalert.db) into it",
    )
    audit = commands.add_parser(
        "audit", parents=[common], help="print the changes people made from Slack: who, when, where, what"
    )
    audit.add_argument("--limit", type=int, default=100, metavar="N", help="latest N changes (100)")
    poll = commands.add_parser(
        "poll", parents=[common], help="poll every source once, deliver, print a summary"
    )
    poll.add_argument("--once", action="store_true", help="poll once and exit (the only mode; for clarity)")
    demo_cmd = commands.add_parser(
        "demo",
        parents=[common],
        help="offline: poll the bundled sample feeds into a temporary database, print alerts",
    )
    demo_cmd.add_argument(
        "--keep", metavar="PATH", help="keep the demo database at PATH (to try `story` or `query` on it)"
    )
    init = commands.add_parser("init", parents=[common], help="write a starter newsalert.toml to edit")
    init.add_argument(
        "path", nargs="?", default="newsalert.toml", help="file or directory (./newsalert.toml)"
    )
    init.add_argument("--force", action="store_true", help="replace an existing file")
    render = commands.add_parser(
        "render", parents=[common], help="an HTML preview of the bot's Slack messages"
    )
    render.add_argument("--sample", action="store_true", required=True, help="render the built-in samples")
    render.add_argument("--out", default="newsalert-preview.html", help="the HTML file to write")
    story = commands.add_parser("story", parents=[common], help="show one story: its items and sources")
    story.add_argument("story_id", type=int, metavar="ID", help="story id (shown with each console alert)")
    story.add_argument(
        "--why", action="store_true", help="each item's score and its parts, and the best rejected"
    )
    stories = commands.add_parser(
        "stories", parents=[common], help="the story model: re-fit it, export labels"
    )
    stories_actions = stories.add_subparsers(dest="stories_action", required=True, metavar="fit|labels")
    fit = stories_actions.add_parser(
        "fit", parents=[common], help="re-fit on the labeled sets + the database's labels; keep it if better"
    )
    fit.add_argument(
        "--labeled",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="labeled sets (default: tests/data/stories/*.toml)",
    )
    labels = stories_actions.add_parser("labels", parents=[common], help="analysts' story corrections")
    labels.add_argument(
        "--export", type=Path, required=True, metavar="FILE", help="write them as a labeled set"
    )
    commands.add_parser(
        "subscriptions",
        parents=[common],
        help="list subscriptions: id, channel, watchlists, mode, next digest",
    )
    commands.add_parser(
        "workers", parents=[common], help="`newsalert run` workers on the database: heartbeats and leases"
    )
    outbox = commands.add_parser(
        "outbox", parents=[common], help="alerts waiting for Slack and dead letters; `outbox retry` requeues"
    )
    outbox.add_argument("outbox_action", nargs="?", choices=["retry"], metavar="retry")
    outbox.add_argument(
        "alert_ids", nargs="*", type=int, metavar="ID", help="dead letters to retry (default: all)"
    )
    digest = commands.add_parser("digest", parents=[common], help="preview or send a digest now")
    digest.add_argument("digest_action", choices=["preview", "send"], metavar="preview|send")
    digest.add_argument("subscription_id", metavar="SUBSCRIPTION_ID", help="from `newsalert subscriptions`")
    commands.add_parser(
        "check-config", parents=[common], help="validate the config and print what it resolved"
    )
    _add_query_parser(commands, common)
    _add_history_parsers(commands, common)
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
    logs.setup(verbose=verbose, fmt=getattr(args, "log_format", "text"))  # stderr; tokens redacted
    if not verbose:
        # APScheduler logs every job start and end at INFO; our own poll summary says more.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        if args.command == "demo":
            logging.getLogger().setLevel(logging.WARNING)  # the demo's output is the alerts
    config = getattr(args, "config", None) or os.environ.get("NEWSALERT_CONFIG") or DEFAULT_CONFIG
    if args.command == "init":
        return cmd_init(args)
    if args.command == "render":  # needs no config: the samples are built in
        from bot.app.preview import write_sample

        print(f"wrote {write_sample(Path(args.out))}")
        return 0
    if config == DEFAULT_CONFIG and not Path(config).is_file():
        # Outside a checkout (an installed package, another directory): the starter config it ships.
        config = str(demo.STARTER_CONFIG)
    Store.allow_newer_schema = getattr(args, "allow_newer_schema", False)
    try:
        settings = load_settings(config, db_path=getattr(args, "db", None))
        return COMMANDS[args.command](settings, args)
    except ConfigError as e:
        print(f"newsalert: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as e:
        print(f"newsalert: database error: {e}", file=sys.stderr)
        return EXIT_DATABASE
    except sqlite3.Error as e:  # disk full, I/O error, a locked file: nothing half-written is kept
        print(f"newsalert: database error: {settings_path_db(args)}: {e}", file=sys.stderr)
        return EXIT_DATABASE
    except SlackAuthError as e:
        print(f"newsalert: Slack error: {e}", file=sys.stderr)
        return EXIT_SLACK_AUTH
    except StoryModelError as e:
        print(f"newsalert: story model error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as e:
        if type(e).__module__.split(".")[0] != "psycopg":  # PostgreSQL's errors, as sqlite3.Error above
            raise
        print(f"newsalert: database error: {redacted(settings_path_db(args))}: {e}", file=sys.stderr)
        return EXIT_DATABASE


def settings_path_db(args: argparse.Namespace) -> str:
    return getattr(args, "db", None) or os.environ.get("NEWSALERT_DB") or "the database"


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    # A platform stop (Procfile dynos, systemd) sends SIGTERM: exit through the scheduler's shutdown.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    mode = check_run_mode(settings, http=args.http)  # ConfigError (exit 2) before anything starts
    with Store.sole_runner(settings.db_path, socket_mode=mode == "socket"):  # one Socket Mode server
        Newsalert(settings, make_sink(settings)).run(
            http_port=args.port if mode == "http" else None, host=args.host, metrics_port=args.metrics_port
        )
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    where = redacted(settings.db_path)
    with Store.migrate(settings.db_path) as store:
        print(f"{where}: schema up to date")
        if args.copy_from:
            copied = store.copy_from_sqlite(args.copy_from)
            print(f"copied {sum(copied.values())} rows from {args.copy_from}:")
            print("\n".join(f"  {table}: {n}" for table, n in copied.items() if n))
    return 0


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    with Store.open(settings.db_path) as store:
        rows = store.people.audit_log(args.limit)
    if not rows:
        print(f"no changes from Slack recorded in {settings.db_path}")
        return 0
    for row in reversed(rows):  # oldest first, like a log
        print(f"{format_time(row.at)}  {row.user:<11}  {row.channel or '-':<11}  {row.action}: {row.detail}")
    return 0


def cmd_poll(settings: Settings, args: argparse.Namespace) -> int:
    outcome = Newsalert(settings, make_sink(settings)).poll_once()
    print(outcome.summary())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Write the starter config (the bundled newsalert.toml) where the user asks; never overwrite."""
    target = Path(args.path)
    if target.is_dir() or args.path.endswith(("/", os.sep)):
        target = target / "newsalert.toml"
    if target.exists() and not args.force:
        print(f"newsalert: {target} exists; not overwritten (--force replaces it)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(demo.STARTER_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    except OSError as e:
        print(f"newsalert: cannot write {target}: {e.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"wrote {target}: edit its sources, watchlists and subscriptions, then")
    print(f"  newsalert --config {target} run")
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
    with Store.open(settings.db_path) as store:
        items = store.stories.story_items(args.story_id)
        if not items:
            print(f"newsalert: no story {args.story_id} in {settings.db_path}", file=sys.stderr)
            return 1
        sources = store.stories.story_sources(args.story_id)
        why = store.story_model.decisions(args.story_id) if args.why else {}
    print(f"story {args.story_id}: {items[0][1].title}")
    print(f"{len(sources)} sources: {', '.join(sources)}")
    for item_id, item, duplicate_of in items:
        who = f"{item.outlet} (via {item.source})" if item.outlet else item.source
        same = f" (same URL as item {duplicate_of})" if duplicate_of else ""
        print(f"  [{item_id}] {format_time(item.published)} {who}: {item.title}{same}")
        if item.url:
            print(f"        {item.url}")
        if args.why:
            best, rejected, compared = why.get(item_id, (None, None, 0))
            if duplicate_of:
                print("        joined: same URL as an earlier item")
            elif best is None:
                print(f"        started the story ({compared} candidates compared)")
            else:
                print(f"        joined: {describe(best)}")
            print(f"        best rejected: {describe(rejected)}")
    return 0


def cmd_stories(settings: Settings, args: argparse.Namespace) -> int:
    with Store.open(settings.db_path) as store:
        if args.stories_action == "labels":
            found = store.story_model.labels()
            args.export.write_text(labeled.labels_toml(found), encoding="utf-8")
            print(f"{args.export}: {len(found)} labels")
            return 0
        paths = args.labeled or sorted(LABELED_SETS.glob("*.toml"))
        if not paths:
            print(f"newsalert: no labeled sets in {LABELED_SETS}; give --labeled FILE", file=sys.stderr)
            return 1
        result = fit.refit(paths, store.story_model.labels(), store.story_model.model(), embed)
        for name, after in result.after.items():
            before = result.before[name]
            print(f"{name}, held-out weeks: before {before.line()}")
            print(f"{' ' * len(name)}                   after  {after.line()}")
        if not result.kept:
            print(f"newsalert: {result.why}; the current model is kept", file=sys.stderr)
            return 1
        with store.transaction():
            model_id = store.story_model.save_model(result.fitted.model, datetime.now(UTC))
        model = result.fitted.model
        print(f"kept: story model {model_id}, fitted {model.fitted}, threshold {model.threshold:.3f}")
    return 0


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    out = [f"config OK: {settings.path}", f"database: {redacted(settings.db_path)}"]
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
    base = settings.websub_base_url
    out.append(f"websub: on, callbacks at {base}/websub/ (run --http)" if base else "websub: off")
    out.append(f"sources ({len(settings.sources)}):")
    for s in settings.sources:
        # Adaptive polling keeps each source between its floor and ceiling (bot/ingest/schedule.py).
        b = bounds(s, settings.min_interval, settings.max_interval)
        every, floor, ceiling = (format_duration(x) for x in (b.interval, b.floor, b.ceiling))
        out.append(f"  {s.name} [{s.type}, every {every}, {floor} to {ceiling}] {s.url}")
    out.append(f"watchlists ({len(settings.watchlists)}):")
    for w in settings.watchlists:
        out.append(f"  {w.name}: {' '.join(w.query.split())}")
        if w.description:
            out.append(f"    ({w.description})")
    out.append(f"subscriptions ({len(settings.subscriptions)}):")
    out += [f"  {s.channel} <- {', '.join(s.watchlists)} ({s.mode})" for s in settings.subscriptions]
    print("\n".join(out))
    return 0


def _add_history_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    search = commands.add_parser(
        "search", parents=[common], help="search every stored item with a query; prints stories, newest first"
    )
    search.add_argument("query", metavar="QUERY", help="watchlist query language, quoted for the shell")
    search.add_argument("--since", type=_since, default="30d", metavar="DURATION", help="window (30d)")
    search.add_argument("--watchlist", metavar="NAME", help="only stories this watchlist matched")
    search.add_argument("--source", metavar="NAME", help="only items from this source (or outlet)")
    search.add_argument("--limit", type=_positive, default=20, metavar="N", help="stories shown (20)")
    search.add_argument("--json", action="store_true", help="print a JSON list")
    export = commands.add_parser(
        "export", parents=[common], help="one row per story that matched a watchlist (CSV or JSON)"
    )
    export.add_argument("--since", type=_since, default="30d", metavar="DURATION", help="window (30d)")
    export.add_argument("--format", choices=["csv", "json"], default="csv", help="csv (default) or json")
    export.add_argument("--watchlist", metavar="NAME", help="only stories this watchlist matched")
    export.add_argument("--output", metavar="FILE", help="write to FILE (default: stdout)")
    status = commands.add_parser(
        "status", parents=[common], help="health of sources, outbox and subscriptions (exit 1: needs a human)"
    )
    status.add_argument("--json", action="store_true", help="print the verdict as JSON")
    sources = commands.add_parser("sources", parents=[common], help="import or export sources as OPML")
    actions = sources.add_subparsers(dest="sources_command", required=True, metavar="ACTION")
    opml_import = actions.add_parser("import", parents=[common], help="add the feeds of an OPML file")
    opml_import.add_argument("opml_file", metavar="OPML_FILE")
    actions.add_parser("export", parents=[common], help="print the active sources as OPML")


LABELED_SETS = Path(__file__).resolve().parent.parent / "tests" / "data" / "stories"

COMMANDS = {
    "run": cmd_run,
    "migrate": cmd_migrate,
    "audit": cmd_audit,
    "poll": cmd_poll,
    "demo": cmd_demo,
    "check-config": cmd_check_config,
    "story": cmd_story,
    "stories": cmd_stories,
    "subscriptions": cmd_subscriptions,
    "digest": cmd_digest,
    "outbox": cmd_outbox,
    "query": cmd_query,
    "search": cmd_search,
    "export": cmd_export,
    "status": cmd_status,
    "sources": cmd_sources,
    "workers": cmd_workers,
}
