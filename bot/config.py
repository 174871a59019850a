"""Configuration: TOML file + environment -> frozen Settings.

Every problem becomes one ConfigError naming the file, the line (when we can find it),
the key and what is wrong, so `newsalert` can print one line and exit 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.alerts.digest import DEFAULT_TOP, trigger
from bot.alerts.digest import timezone as digest_timezone
from bot.errors import ConfigError, QueryError, ScheduleError
from bot.match.query import compile_query
from bot.model import SOURCE_TYPES, WATCHLIST_NAME, WATCHLIST_NAME_RULE, Source, Subscription, Watchlist
from bot.urls import http_url_problem, source_url_problem

DEFAULT_CONFIG = "config/newsalert.toml"
DEFAULT_DB = "newsalert.db"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
USER_AGENT = "newsalert/0.1 (+https://github.com/newsalert/newsalert; trust-and-safety news alerts)"

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{6,}$|^#?[a-z0-9][a-z0-9._-]{0,79}$")


@dataclass(frozen=True)
class Settings:
    path: str
    sources: tuple[Source, ...]
    watchlists: tuple[Watchlist, ...]
    subscriptions: tuple[Subscription, ...]
    interval: int = 900
    # Adaptive polling's floor and ceiling for every source; None: interval / 3 and interval x 4.
    min_interval: int | None = None
    max_interval: int | None = None
    # First poll of a source (or after a long outage): only items this recent alert; None = no guard.
    first_poll_window: int | None = 86400
    allow_private_sources: bool = False
    fetch_timeout: int = 30
    # Reading one fetched body (parse, normalize, fingerprint, match), in CPU seconds (and at most
    # three times that in wall time): past it, that source fails alone (bot/ingest/prepare.py).
    parse_timeout: float = 10
    max_response_bytes: int = 10 * 1024 * 1024
    story_window: int = 72 * 3600  # an item joins a story seen this recently
    digest_grace: int = 12 * 3600  # a digest missed while down is sent on start if this recent
    timezone: str = "UTC"  # digests' default timezone
    retention_days: int = 180  # stored history older than this is pruned daily
    # `newsalert run` workers sharing a database: what a worker holds (source leases, channel
    # claims) is renewed every quarter of this, and free for the others this long after it dies.
    worker_lease: int = 60
    concurrency: int = 20
    user_agent: str = USER_AGENT
    db_path: str = DEFAULT_DB
    slack_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    # The Slack app (`newsalert run`): [slack] in the file, tokens from the environment.
    slack_admins: tuple[str, ...] = ()  # user IDs allowed to manage watchlists and sources
    escalation_channel: str | None = None  # where "Escalate" re-posts an alert
    slack_app_token: str | None = None  # xapp-…: Socket Mode
    slack_signing_secret: str | None = None  # HTTP mode: verifies every request
    # WebSub ([websub] or NEWSALERT_PUBLIC_URL): where hubs reach `newsalert run --http`; None: off.
    websub_base_url: str | None = None
    websub_lease: int = 10 * 86400  # hub.lease_seconds asked for; the hub may grant another


def parse_duration(value: object) -> int:
    """ "15m" / "2h" / "1d" / "30s" / 900 -> seconds. Raises ValueError with a readable reason."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as "15m", got a boolean')
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f'expected a duration such as "15m", "2h" or "1d", got {value!r}')
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds


def format_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class _Lines:
    """Finds the line of `key = …` inside a table of the raw TOML text.

    tomllib reports lines only for syntax errors; for semantic errors we scan the text so the
    message can still say where to look. Tables are keyed like ("sources", 2) for the third
    [[sources]] and ("watchlists", "csam") for [watchlists.csam]; unknown layouts give None.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")

    def __init__(self, text: str):
        self.keys: dict[tuple, int] = {}
        self.tables: dict[tuple, int] = {}
        counts: dict[str, int] = {}
        table: tuple = ()
        for number, line in enumerate(text.splitlines(), start=1):
            if m := self._HEADER.match(line):
                parts = tuple(p.strip().strip('"') for p in m.group(2).split("."))
                if m.group(1) == "[[":
                    index = counts.get(m.group(2), 0)
                    counts[m.group(2)] = index + 1
                    table = (*parts, index)
                else:
                    table = parts
                self.tables.setdefault(table, number)
            elif m := self._KEY.match(line):
                self.keys.setdefault((*table, m.group(1).strip('"')), number)

    def of(self, *path: object) -> int | None:
        return self.keys.get(tuple(path)) or self.tables.get(tuple(path))


class _Reader:
    """Validates one parsed TOML document, raising ConfigError with file, line and key."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = _Lines(text)
        self.text_lines = text.splitlines()

    def fail(self, problem: str, key: str, *where: object) -> ConfigError:
        return ConfigError(self.path, problem, key=key, line=self.lines.of(*where))

    def table(self, doc: Mapping[str, Any], name: str, allowed: set[str], *where: object) -> dict:
        value = doc.get(name, {})
        if not isinstance(value, dict):
            raise self.fail("must be a table", name, *where, name)
        for key in value:
            if key not in allowed:
                raise self.fail(
                    f"unknown key (expected one of: {', '.join(sorted(allowed))})",
                    f"{name}.{key}" if name else key,
                    *where,
                    name,
                    key,
                )
        return value

    def check_keys(self, value: Mapping[str, Any], allowed: set[str], label: str, *where: object) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail(
                    f"unknown key (expected one of: {', '.join(sorted(allowed))})",
                    f"{label}.{key}",
                    *where,
                    key,
                )

    def string(self, value: Mapping[str, Any], key: str, label: str, *where: object, required=True) -> str:
        if key not in value:
            if required:
                raise self.fail("is required", f"{label}.{key}", *where)
            return ""
        got = value[key]
        if not isinstance(got, str) or not got.strip():
            raise self.fail(f"must be a non-empty string, got {got!r}", f"{label}.{key}", *where, key)
        return got.strip()

    def duration(self, value: Mapping[str, Any], key: str, label: str, default: int, *where: object) -> int:
        if key not in value:
            return default
        try:
            return parse_duration(value[key])
        except ValueError as e:
            raise self.fail(str(e), f"{label}.{key}", *where, key) from None

    def boolean(self, value: Mapping[str, Any], key: str, label: str, default: bool, *where: object) -> bool:
        got = value.get(key, default)
        if not isinstance(got, bool):
            raise self.fail(f"must be true or false, got {got!r}", f"{label}.{key}", *where, key)
        return got


_TOP = {"database_url", "defaults", "sources", "watchlists", "subscriptions", "slack", "websub"}
_DEFAULTS = {
    "interval",
    "min_interval",
    "max_interval",
    "first_poll_window",
    "allow_private_sources",
    "fetch_timeout",
    "parse_timeout",
    "max_response_bytes",
    "concurrency",
    "user_agent",
    "story_window",
    "timezone",
    "digest_grace",
    "retention_days",
    "worker_lease",
}
_SOURCE = {"name", "url", "type", "interval", "min_interval", "max_interval"}
_WEBSUB = {"base_url", "lease"}
_WATCHLIST = {"query", "description"}
_SLACK = {"admins", "escalation_channel"}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,}$")
_SUBSCRIPTION = {"channel", "watchlists", "mode", "schedule", "timezone", "skip_empty", "top"}


def load_settings(
    path: str | os.PathLike[str],
    *,
    db_path: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read and validate the config file; fill Slack settings from the environment."""
    env = os.environ if environ is None else environ
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, f"cannot read: {e}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message ends with "(at line N, column M)": lift the line into our format.
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise ConfigError(path, f"invalid TOML: {message}", line=int(m.group(1)) if m else None) from None
    return _settings_from(doc, _Reader(path, text), db_path=db_path, env=env)


def _settings_from(doc: dict, r: _Reader, *, db_path: str | None, env: Mapping[str, str]) -> Settings:
    for key in doc:
        if key not in _TOP:
            raise r.fail(f"unknown top-level key (expected one of: {', '.join(sorted(_TOP))})", key, key)
    defaults = r.table(doc, "defaults", _DEFAULTS)
    interval = r.duration(defaults, "interval", "defaults", 900, "defaults")
    floor, ceiling = _read_bounds(defaults, r, "defaults", interval, None, None, ("defaults",))
    window: int | None = 86400
    if defaults.get("first_poll_window") in (0, "0", False):
        window = None
    else:
        window = r.duration(defaults, "first_poll_window", "defaults", 86400, "defaults")
    fetch_timeout = r.duration(defaults, "fetch_timeout", "defaults", 30, "defaults")
    parse_timeout = r.duration(defaults, "parse_timeout", "defaults", 10, "defaults")
    story_window = r.duration(defaults, "story_window", "defaults", 72 * 3600, "defaults")
    digest_grace = r.duration(defaults, "digest_grace", "defaults", 12 * 3600, "defaults")
    worker_lease = r.duration(defaults, "worker_lease", "defaults", 60, "defaults")
    if worker_lease < 2:  # beats every quarter of it: under 2 s a busy worker would lose its leases
        raise r.fail("must be at least 2 seconds", "defaults.worker_lease", "defaults", "worker_lease")
    retention_days = defaults.get("retention_days", 180)
    if not isinstance(retention_days, int) or isinstance(retention_days, bool) or retention_days < 1:
        raise r.fail(
            "must be a whole number of days, at least 1",
            "defaults.retention_days",
            "defaults",
            "retention_days",
        )
    default_tz = r.string(defaults, "timezone", "defaults", "defaults", required=False) or "UTC"
    try:
        digest_timezone(default_tz)
    except ScheduleError as e:
        raise r.fail(str(e), "defaults.timezone", "defaults", "timezone") from None
    allow_private = r.boolean(defaults, "allow_private_sources", "defaults", False, "defaults")
    max_bytes = defaults.get("max_response_bytes", 10 * 1024 * 1024)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1024:
        raise r.fail(
            "must be an integer number of bytes >= 1024",
            "defaults.max_response_bytes",
            "defaults",
            "max_response_bytes",
        )
    concurrency = defaults.get("concurrency", 20)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 500:
        raise r.fail("must be an integer from 1 to 500", "defaults.concurrency", "defaults", "concurrency")
    user_agent = r.string(defaults, "user_agent", "defaults", "defaults", required=False) or USER_AGENT

    sources = _read_sources(doc, r, interval, allow_private, floor, ceiling)
    watchlists = _read_watchlists(doc, r)
    subscriptions = _read_subscriptions(doc, r, {w.name for w in watchlists}, default_tz)

    api_url = env.get("SLACK_API_URL", "").strip() or DEFAULT_SLACK_API_URL
    if not api_url.endswith("/"):
        api_url += "/"  # slack_sdk joins method names onto the base URL
    return Settings(
        path=r.path,
        sources=sources,
        watchlists=watchlists,
        subscriptions=subscriptions,
        interval=interval,
        min_interval=floor,
        max_interval=ceiling,
        first_poll_window=window,
        allow_private_sources=allow_private,
        fetch_timeout=fetch_timeout,
        parse_timeout=parse_timeout,
        max_response_bytes=max_bytes,
        story_window=story_window,
        digest_grace=digest_grace,
        worker_lease=worker_lease,
        timezone=default_tz,
        retention_days=retention_days,
        concurrency=concurrency,
        user_agent=user_agent,
        db_path=_database(doc, r, db_path, env),
        slack_token=env.get("SLACK_BOT_TOKEN", "").strip() or None,
        slack_api_url=api_url,
        **_read_slack(doc, r),
        **_read_websub(doc, r, env),
        slack_app_token=env.get("SLACK_APP_TOKEN", "").strip() or None,
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET", "").strip() or None,
    )


def _database(doc: dict, r: _Reader, db_path: str | None, env: Mapping[str, str]) -> str:
    """Where the store is: --db, else NEWSALERT_DATABASE_URL, else NEWSALERT_DB, else the file's
    database_url, else newsalert.db. A postgresql:// URL selects PostgreSQL (bot/store/pg.py); a
    path or sqlite:///path, SQLite."""
    chosen = db_path or env.get("NEWSALERT_DATABASE_URL", "").strip() or env.get("NEWSALERT_DB")
    if chosen:
        return chosen
    url = doc.get("database_url")
    if url is None:
        return DEFAULT_DB
    if not isinstance(url, str) or not url.strip():
        raise r.fail(
            "must be a postgresql:// URL, a sqlite:///path or a file path", "database_url", "database_url"
        )
    if "://" in url and not url.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise r.fail("only postgresql:// and sqlite:/// URLs are known", "database_url", "database_url")
    return url.strip()


def _read_bounds(
    table: Mapping[str, Any],
    r: _Reader,
    label: str,
    interval: int,
    default_min: int | None,
    default_max: int | None,
    where: tuple,
) -> tuple[int | None, int | None]:
    """min_interval and max_interval of a table ([defaults] or one source), checked against its
    interval: adaptive polling keeps every source between them (bot/ingest/schedule.py)."""
    floor = r.duration(table, "min_interval", label, 0, *where) or None
    ceiling = r.duration(table, "max_interval", label, 0, *where) or None
    low, high = floor or default_min, ceiling or default_max
    if low is not None and low > interval:
        key = "min_interval" if floor else "interval"
        problem = f"min_interval {format_duration(low)} is longer than interval {format_duration(interval)}"
        raise r.fail(problem, f"{label}.{key}", *where, *([key] if key in table else []))
    if high is not None and high < interval:
        key = "max_interval" if ceiling else "interval"
        problem = f"max_interval {format_duration(high)} is shorter than interval {format_duration(interval)}"
        raise r.fail(problem, f"{label}.{key}", *where, *([key] if key in table else []))
    return floor, ceiling


def _read_websub(doc: dict, r: _Reader, env: Mapping[str, str]) -> dict[str, Any]:
    """[websub]: the public base URL hubs call back (NEWSALERT_PUBLIC_URL wins), the lease asked."""
    websub = r.table(doc, "websub", _WEBSUB)
    lease = r.duration(websub, "lease", "websub", 10 * 86400, "websub")
    base = env.get("NEWSALERT_PUBLIC_URL", "").strip()
    if base:
        problem = _public_url_problem(base)
        if problem:
            raise ConfigError("NEWSALERT_PUBLIC_URL", problem)
    elif "base_url" in websub:
        base = r.string(websub, "base_url", "websub", "websub")
        if problem := _public_url_problem(base):
            raise r.fail(problem, "websub.base_url", "websub", "base_url")
    return {"websub_base_url": base.rstrip("/") or None, "websub_lease": lease}


def _public_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the bot's own public base URL (not a source: private is fine here)."""
    if problem := http_url_problem(url):
        return problem
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        return f"must be a base URL without ?query or #fragment, got {url!r}"
    return None


def _read_slack(doc: dict, r: _Reader) -> dict[str, Any]:
    """[slack]: who administers watchlists and sources from Slack, and where escalations go."""
    slack = r.table(doc, "slack", _SLACK)
    admins = slack.get("admins", [])
    if not isinstance(admins, list) or not all(isinstance(a, str) and _USER_ID.match(a) for a in admins):
        raise r.fail(
            f'must be a list of Slack user IDs such as ["U0123ABCD"], got {admins!r}',
            "slack.admins",
            "slack",
            "admins",
        )
    channel = slack.get("escalation_channel")
    if channel is not None and not (isinstance(channel, str) and _CHANNEL_ID.match(channel)):
        # An ID, not a name: channel names change, and chat.postMessage wants the ID anyway.
        raise r.fail(
            f"must be a Slack channel ID such as C0123456789, got {channel!r}",
            "slack.escalation_channel",
            "slack",
            "escalation_channel",
        )
    return {"slack_admins": tuple(dict.fromkeys(admins)), "escalation_channel": channel}


def _read_sources(
    doc: dict, r: _Reader, interval: int, allow_private: bool, floor: int | None, ceiling: int | None
) -> tuple[Source, ...]:
    raw = doc.get("sources", [])
    if not isinstance(raw, list):
        raise r.fail("must be an array of tables ([[sources]])", "sources", "sources")
    sources: list[Source] = []
    names: set[str] = set()
    for i, entry in enumerate(raw):
        label = f"sources[{i}]"
        where = ("sources", i)
        if not isinstance(entry, dict):
            raise r.fail("must be a table", label, *where)
        name = r.string(entry, "name", label, *where)
        label = f'sources[{i}] "{name}"'
        r.check_keys(entry, _SOURCE, label, *where)
        if name in names:
            raise r.fail("duplicate source name", f"{label}.name", *where, "name")
        names.add(name)
        url = r.string(entry, "url", label, *where)
        if problem := source_url_problem(url, allow_private=allow_private, allow_credentials=True):
            raise r.fail(problem, f"{label}.url", *where, "url")
        kind = entry.get("type", "feed")
        if kind not in SOURCE_TYPES:
            raise r.fail(
                f"must be one of {', '.join(SOURCE_TYPES)}; got {kind!r}", f"{label}.type", *where, "type"
            )
        every = r.duration(entry, "interval", label, interval, *where)
        low, high = _read_bounds(entry, r, label, every, floor, ceiling, where)
        sources.append(
            Source(name=name, url=url, type=kind, interval=every, min_interval=low, max_interval=high)
        )
    return tuple(sources)


def _read_watchlists(doc: dict, r: _Reader) -> tuple[Watchlist, ...]:
    raw = doc.get("watchlists", {})
    if not isinstance(raw, dict):
        raise r.fail("must be a table of watchlists ([watchlists.NAME])", "watchlists", "watchlists")
    watchlists: list[Watchlist] = []
    for name, entry in raw.items():
        label = f"watchlists.{name}"
        where = ("watchlists", name)
        if not WATCHLIST_NAME.match(name):
            raise r.fail(f"{name!r} cannot be a watchlist name: {WATCHLIST_NAME_RULE}", label, *where)
        if not isinstance(entry, dict):
            raise r.fail("must be a table with a query", label, *where)
        r.check_keys(entry, _WATCHLIST, label, *where)
        query = r.string(entry, "query", label, *where)
        try:
            compile_query(query, watchlist=name)
        except QueryError as e:
            raise _query_error(e, r, f"{label}.query", (*where, "query")) from None
        description = r.string(entry, "description", label, *where, required=False)
        watchlists.append(Watchlist(name=name, query=query, description=description))
    return tuple(watchlists)


def _query_error(e: QueryError, r: _Reader, key: str, where: tuple) -> ConfigError:
    """The error at the file line that holds it (a multi-line query's own line), with that query line."""
    line = r.lines.of(*where)
    text = e.query.split("\n")[e.line - 1].strip()
    if line is not None and e.line > 1:
        # TOML drops a newline right after the opening quotes and load_settings strips the query, so
        # the line is found by its text among the few lines after the key.
        first = line + e.line - 1  # the earliest it can be
        below = r.text_lines[first - 1 : first + 2]
        line = next((first + i for i, raw in enumerate(below) if text and text in raw), line)
    shown = text if len(text) <= 80 else text[:79] + "…"
    problem = f'watchlist "{e.watchlist}": {e.problem} at column {e.column}' + (f": {shown}" if shown else "")
    return ConfigError(r.path, problem, key=key, line=line)


def _subscription_mode(
    entry: dict, r: _Reader, label: str, where: tuple, sub: Subscription, default_tz: str
) -> Subscription:
    """Realtime (the default), or digest with its schedule, timezone and options."""
    mode = entry.get("mode", "realtime")
    if mode not in ("realtime", "digest"):
        raise r.fail(f'must be "realtime" or "digest", got {mode!r}', f"{label}.mode", *where, "mode")
    if mode == "realtime":
        for key in ("schedule", "timezone", "skip_empty", "top"):
            if key in entry:
                raise r.fail(
                    'only digest subscriptions (mode = "digest") take this', f"{label}.{key}", *where, key
                )
        return sub
    schedule = r.string(entry, "schedule", label, *where)
    tz = r.string(entry, "timezone", label, *where, required=False) or default_tz
    try:
        trigger(schedule, tz)
    except ScheduleError as e:
        key = "timezone" if "timezone" in str(e) else "schedule"
        raise r.fail(str(e), f"{label}.{key}", *where, key) from None
    top = entry.get("top", DEFAULT_TOP)
    if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= 100:
        raise r.fail("must be an integer from 1 to 100", f"{label}.top", *where, "top")
    skip_empty = r.boolean(entry, "skip_empty", label, False, *where)
    return replace(sub, mode="digest", schedule=schedule, timezone=tz, skip_empty=skip_empty, top=top)


def _read_subscriptions(
    doc: dict, r: _Reader, known: set[str], timezone: str = "UTC"
) -> tuple[Subscription, ...]:
    raw = doc.get("subscriptions", [])
    if not isinstance(raw, list):
        raise r.fail("must be an array of tables ([[subscriptions]])", "subscriptions", "subscriptions")
    subscriptions: list[Subscription] = []
    for i, entry in enumerate(raw):
        label = f"subscriptions[{i}]"
        where = ("subscriptions", i)
        if not isinstance(entry, dict):
            raise r.fail("must be a table", label, *where)
        r.check_keys(entry, _SUBSCRIPTION, label, *where)
        channel = r.string(entry, "channel", label, *where)
        if not _CHANNEL.match(channel):
            raise r.fail(
                f"must be a Slack channel ID such as C0123456789, got {channel!r}",
                f"{label}.channel",
                *where,
                "channel",
            )
        names = entry.get("watchlists")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise r.fail(
                "must be a non-empty list of watchlist names", f"{label}.watchlists", *where, "watchlists"
            )
        for name in names:
            if name not in known:
                listed = ", ".join(sorted(known)) or "none are defined"
                raise r.fail(
                    f"unknown watchlist {name!r} (defined: {listed})",
                    f"{label}.watchlists",
                    *where,
                    "watchlists",
                )
        subscriptions.append(
            _subscription_mode(
                entry, r, label, where, Subscription(channel, tuple(dict.fromkeys(names))), timezone
            )
        )
    return tuple(subscriptions)
