"""`/newsalert` without Slack: parse a command line, check who may run it, do it, say what happened.

The Slack app (bot/slack/) only acks, calls ``handle`` and sends the Reply back; everything a
command means lives here and is tested directly. What needs Slack itself (is this user a
workspace admin, is the bot in the channel, a message permalink) comes through a ``Workspace``.

Replies are Slack mrkdwn. Every string that came from a feed, a config file or a person is
escaped (render.escape) before it is placed in one, so nothing typed or fetched can ping.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

from bot import history
from bot.alerts.digest import next_digest
from bot.alerts.digest import trigger as digest_trigger
from bot.alerts.render import emphasize, escape, escape_url, format_time, mention, shorten
from bot.config import Settings, format_duration, parse_duration
from bot.errors import FetchError, ParseError, QueryError, ScheduleError
from bot.ingest.fetch import fetch_all
from bot.ingest.normalize import normalize
from bot.ingest.parse import parse
from bot.ingest.poll import limits_from
from bot.match.backtest import Hit, backtest
from bot.match.query import compile_query
from bot.model import Fetched, Source, Subscription
from bot.ops import health as status
from bot.store import Store
from bot.store.db import from_iso
from bot.urls import source_url_problem

log = logging.getLogger("newsalert.commands")

COMMAND = "/newsalert"
QUERY_TEST_WINDOW = timedelta(days=30)
SEARCH_WINDOW = "30d"
WATCHLIST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
MAX_SOURCE_NAME = 80

HELP_LINE = (
    f"Try `{COMMAND} help`. Commands: subscribe, unsubscribe, list, watchlists, sources, search, "
    "query test, mute source, unmute source, status; for admins: watchlist add|edit|remove, "
    "source add|remove."
)

HELP = f"""*newsalert* posts news alerts for trust & safety work. Commands:
• `{COMMAND} subscribe csam deepfakes` — this channel gets realtime alerts for these watchlists
• `{COMMAND} unsubscribe deepfakes` — it stops getting them
• `{COMMAND} subscribe csam digest daily 09:00 Europe/Berlin` — a daily briefing instead (also \
`weekdays 08:30`, `weekly mon 09:00` or cron); `{COMMAND} unsubscribe digest ID` stops it
• `{COMMAND} list` — this channel's subscriptions and mutes
• `{COMMAND} watchlists` — every watchlist and its query
• `{COMMAND} sources` — every source and its health (last success, last error, next poll)
• `{COMMAND} search unicef deepfake* since:7d` — the latest matching stories (default: 30 days)
• `{COMMAND} query test "child abuse material" NEAR/5 (AI OR generated)` — what a query would \
have matched in the last 30 days
• `{COMMAND} mute source Daily Mail for 7d`, `{COMMAND} unmute source Daily Mail` — in this channel
• `{COMMAND} status` — last poll, queued alerts, failing sources, broken subscriptions, \
not-relevant rates
Admins only:
• `{COMMAND} watchlist add sextortion sextort* OR "sexual extortion"`
• `{COMMAND} watchlist edit sextortion sextort* OR "sexual extortion" OR "financial sextortion"`
• `{COMMAND} watchlist remove sextortion`
• `{COMMAND} source add https://example.org/feed.xml Example News`, `{COMMAND} source remove Example News`
Anyone in a channel may subscribe, unsubscribe and mute there. Buttons on each alert claim it, mark it \
done, escalate it, mute its story or source here, or flag it as not relevant."""

REFUSAL = (
    "Only newsalert admins can add, edit or remove watchlists and sources: the users listed in the "
    "config file's `[slack] admins`, and workspace admins and owners. Ask one of them; "
    f"`{COMMAND} watchlists` and `{COMMAND} sources` show what there is."
)


class Workspace(Protocol):
    """What a command needs to ask Slack. bot/slack/workspace.py answers with the Web API."""

    def is_workspace_admin(self, user_id: str) -> bool:
        """users.info: a workspace admin or owner."""
        ...

    def join(self, channel_id: str) -> str | None:
        """Make sure the bot can post in the channel; None when it can, else why not."""
        ...

    def can_see(self, user_id: str, channel_id: str) -> bool:
        """The user may see the channel (public, or a private one they are in)."""
        ...

    def permalink(self, channel_id: str, ts: str) -> str | None: ...


@dataclass(frozen=True)
class Reply:
    text: str  # mrkdwn
    in_channel: bool = False  # shown to the channel: the command changed what it receives


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _nothing() -> None:
    pass


@dataclass
class AppContext:
    """What the Slack app's core logic runs with: settings, the database, and hooks to the runner."""

    settings: Settings
    # Called after sources change, so the running scheduler polls new ones without a restart.
    catalog_changed: Callable[[], None] = _nothing
    now: Callable[[], datetime] = _utcnow
    fetch: Callable[[Settings, Source], Fetched | FetchError] | None = None  # tests replace the network

    def store(self) -> Store:
        # One connection per request (`with ctx.store() as store`): listeners run on Bolt's
        # worker threads, the poll on its own, and a SQLite connection belongs to one thread.
        return Store.open(self.settings.db_path)

    def is_admin(self, user_id: str, workspace: Workspace) -> bool:
        """Listed in [slack] admins, or a workspace admin/owner per users.info: either suffices."""
        if user_id in self.settings.slack_admins:
            return True
        try:
            return workspace.is_workspace_admin(user_id)
        except Exception as e:  # Slack unreachable: refuse, and say so in the log
            log.warning("admin check failed user=%s: %s", user_id, e)
            return False


@dataclass(frozen=True)
class Invocation:
    user: str
    channel: str
    text: str


Handler = Callable[[str, Invocation, AppContext, Workspace], Reply]


def unescape_slack(text: str) -> str:
    # Slack sends &, <, > in command text as entities; the query language wants the characters.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _first(text: str) -> tuple[str, str]:
    """The first word and the rest; any whitespace separates them."""
    parts = text.strip().split(maxsplit=1)
    return (parts[0] if parts else ""), (parts[1].strip() if len(parts) > 1 else "")


def _split(text: str) -> tuple[str, str]:
    """A subcommand word, lowercased, and the rest."""
    head, rest = _first(text)
    return head.lower(), rest


def pending_message(text: str) -> str | None:
    """What to acknowledge a slow command with at once (the answer follows); None for quick ones."""
    head, rest = _split(unescape_slack(text))
    if head == "source" and _split(rest)[0] == "add":
        return "Fetching that source once to check it…"
    if head in ("search", "query"):
        return "Searching the history…"
    return None


def handle(text: str, *, user: str, channel: str, ctx: AppContext, workspace: Workspace) -> Reply:
    """Run one `/newsalert` command line and say what happened."""
    invocation = Invocation(user, channel, unescape_slack(text))
    head, rest = _split(invocation.text)
    handler = COMMANDS.get(head or "help")
    if handler is None:
        return Reply(f"Unknown command `{escape(shorten(head, 40))}`. {HELP_LINE}")
    if head in ADMIN_ONLY and not ctx.is_admin(user, workspace):
        return Reply(REFUSAL)
    try:
        return handler(rest, invocation, ctx, workspace)
    except QueryError as e:
        return Reply(_query_error(e))


# -- everyone -------------------------------------------------------------------------------------


def cmd_help(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    return Reply(HELP)


def _names(rest: str) -> list[str]:
    return [n for n in re.split(r"[\s,]+", rest.strip()) if n]


def _unknown_watchlists(store: Store, names: Sequence[str]) -> str:
    """What is wrong with ``names`` if some are not watchlists ("" when all are)."""
    known = [w.name for w in store.catalog.active_watchlists()]
    if unknown := [n for n in names if n not in known]:
        return f"No watchlist {_code_list(unknown)}. Watchlists: {_code_list(known) or 'none yet'}."
    return ""


def _code_list(names: Sequence[str]) -> str:
    return ", ".join(f"`{escape(n)}`" for n in names)


def cmd_subscribe(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    words = rest.split()
    if "digest" in words:
        return _subscribe_digest(words, inv, ctx, ws)
    names = _names(rest)
    if not names:
        return Reply(f"Which watchlists? For example `{COMMAND} subscribe csam deepfakes`.")
    with ctx.store() as store:
        if problem := _unknown_watchlists(store, names):
            return Reply(f"{problem} Nothing was subscribed.")
        # Before subscribing: a channel the bot cannot post in would only collect dead letters.
        problem = ws.join(inv.channel)
        if problem is not None:
            return Reply(
                f"I'm not in this channel, so I could not post alerts here ({escape(problem)}). "
                f"Invite me first (`/invite @newsalert`), then run `{COMMAND} subscribe "
                f"{escape(' '.join(names))}` again."
            )
        with store.transaction():
            added = store.catalog.subscribe(inv.channel, names, inv.user, ctx.now())
            if added:
                store.people.record_audit(inv.user, inv.channel, "subscribe", ", ".join(added), ctx.now())
    already = [n for n in dict.fromkeys(names) if n not in added]
    if not added:
        return Reply(f"This channel already gets alerts for {_code_list(already)}.")
    text = f"{mention(inv.user)} subscribed this channel to realtime alerts for {_code_list(added)}."
    if already:
        text += f" (It already had {_code_list(already)}.)"
    return Reply(text, in_channel=True)


def _subscribe_digest(words: list[str], inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    """`subscribe csam deepfakes digest daily 09:00 Europe/Berlin`: a briefing instead of pings."""
    at = words.index("digest")
    names, schedule = list(dict.fromkeys(words[:at])), words[at + 1 :]
    example = f"`{COMMAND} subscribe csam digest daily 09:00 Europe/Berlin`"
    if not names or not schedule:
        return Reply(f"Which watchlists, and when? For example {example}.")
    tz = ctx.settings.timezone
    if "/" in schedule[-1] or schedule[-1].upper() == "UTC":
        tz = schedule.pop()
    sub = Subscription(inv.channel, tuple(names), "digest", " ".join(schedule), tz)
    try:
        digest_trigger(sub.schedule, sub.timezone)
    except ScheduleError as e:
        return Reply(f"{escape(str(e))}. For example {example}.")
    with ctx.store() as store:
        if problem := _unknown_watchlists(store, names):
            return Reply(problem)
        problem = ws.join(inv.channel)
        if problem is not None:
            return Reply(
                f"I'm not in this channel ({escape(problem)}). Invite me first (`/invite @newsalert`)."
            )
        with store.transaction():
            sid = store.catalog.subscribe_digest(sub, inv.user, ctx.now())
            store.people.record_audit(
                inv.user,
                inv.channel,
                "subscribe digest",
                f"{', '.join(names)}: {sub.schedule} {sub.timezone} (id {sid})",
                ctx.now(),
            )
    ctx.catalog_changed()  # the scheduler adds the digest's cron job
    upcoming = format_time(next_digest(sub, ctx.now()))
    return Reply(
        f"{mention(inv.user)} subscribed this channel to a digest of {_code_list(names)}: "
        f"{escape(sub.schedule)} ({escape(sub.timezone)}), first on {upcoming}. Id `{sid}`; "
        f"`{COMMAND} unsubscribe digest {sid}` stops it.",
        in_channel=True,
    )


def cmd_unsubscribe(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    words = rest.split()
    if len(words) == 2 and words[0] == "digest":
        with ctx.store() as store, store.transaction():
            removed = store.catalog.unsubscribe_digest(inv.channel, words[1], inv.user, ctx.now())
            if removed:
                store.people.record_audit(inv.user, inv.channel, "unsubscribe digest", words[1], ctx.now())
        if not removed:
            return Reply(f"This channel has no digest `{escape(words[1])}` (see `{COMMAND} list`).")
        ctx.catalog_changed()
        return Reply(
            f"{mention(inv.user)} stopped digest `{escape(words[1])}` in this channel.", in_channel=True
        )
    names = _names(rest)
    if not names:
        return Reply(f"Which watchlists? For example `{COMMAND} unsubscribe deepfakes`.")
    with ctx.store() as store, store.transaction():
        removed = store.catalog.unsubscribe(inv.channel, names, inv.user, ctx.now())
        if removed:
            store.people.record_audit(inv.user, inv.channel, "unsubscribe", ", ".join(removed), ctx.now())
        left = [name for name, _, _ in store.catalog.channel_subscriptions(inv.channel)]
    if not removed:
        return Reply(
            f"This channel is not subscribed to {_code_list(names)}. "
            f"It gets: {_code_list(left) or 'nothing yet'}."
        )
    text = f"{mention(inv.user)} unsubscribed this channel from {_code_list(removed)}."
    text += f" It still gets {_code_list(left)}." if left else " It gets no alerts now."
    return Reply(text, in_channel=True)


def cmd_list(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    now = ctx.now()
    with ctx.store() as store:
        subs = store.catalog.channel_subscriptions(inv.channel)
        digests = [
            (sid, sub)
            for sid, sub, _, _ in store.catalog.subscriptions()
            if sub.mode == "digest" and sub.channel == inv.channel
        ]
        mutes = store.people.channel_mutes(inv.channel, now)
        known = [w.name for w in store.catalog.active_watchlists()]
    lines = []
    if subs:
        lines.append("*This channel's subscriptions* (realtime alerts):")
        for name, origin, changed_by in subs:
            if changed_by:
                how = f"from Slack, by {mention(changed_by)}"
            else:
                how = "from the config file" if origin == "config" else f"from {escape(origin)}"
            gone = "" if name in known else " — _this watchlist was removed_"
            lines.append(f"• `{escape(name)}` ({how}){gone}")
    elif not digests:
        lines.append(
            f"This channel has no subscriptions. `{COMMAND} subscribe WATCHLIST…`; "
            f"watchlists: {_code_list(known) or 'none yet'}."
        )
    if digests:
        lines.append("*Digests:*")
        for sid, sub in digests:
            lines.append(
                f"• `{sid}`: {_code_list(sub.watchlists)} — {escape(sub.schedule)} ({escape(sub.timezone)}), "
                f"next {format_time(next_digest(sub, now))}"
            )
    if mutes:
        lines.append("*Muted here:*")
        for m in mutes:
            until = f" until {format_time(from_iso(m['until']))}" if m["until"] else ""
            if m["kind"] == "source":
                lines.append(f"• source *{escape(m['target'])}*{until} (by {mention(m['user_id'])})")
            else:
                title = escape(shorten(m["title"] or f"story {m['target']}", 120))
                lines.append(f"• story “{title}”{until} (by {mention(m['user_id'])})")
    else:
        lines.append("Nothing is muted here.")
    return Reply("\n".join(lines))


def cmd_watchlists(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    with ctx.store() as store:
        watchlists = store.catalog.active_watchlists()
    if not watchlists:
        return Reply("There are no watchlists yet. An admin adds one with `watchlist add NAME QUERY`.")
    lines = [f"*Watchlists* ({len(watchlists)}):"]
    for w in watchlists:
        line = f"• `{escape(w.name)}` — `{escape(' '.join(w.query.split()))}`"
        if w.description:
            line += f" _{escape(w.description)}_"
        lines.append(line)
    return Reply("\n".join(lines))


def ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return f"in {format_duration(max(60, -seconds // 60 * 60))}"
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"


def source_health_line(row: dict, now: datetime) -> str:
    """One source for `sources` and App Home: state, last success, last error, next poll."""
    success, error_at = from_iso(row.get("last_success")), from_iso(row.get("last_error_at"))
    failing = bool(row.get("consecutive_failures")) and (success is None or (error_at or now) > success)
    interval = row.get("interval") or 900
    if row.get("disabled_at"):
        icon, next_poll = "⛔", "disabled (" + escape(row.get("disabled_reason") or "gone") + ")"
    else:
        icon = "⚠️" if failing else ("✅" if success else "⏳")
        due = from_iso(row.get("next_poll_at"))
        if due is None and (polled := from_iso(row.get("last_polled"))) is not None:
            due = polled + timedelta(seconds=interval)
        next_poll = "soon" if due is None or due <= now else ago(due, now)
    line = (
        f"{icon} *{escape(row['name'])}* ({escape(row.get('type') or 'feed')}, every "
        f"{format_duration(interval)}) — last success {ago(success, now)}"
    )
    if failing:
        line += (
            f" · last error {ago(error_at, now)}: {escape(shorten(row.get('last_error') or '', 160))}"
            f" ({row['consecutive_failures']} in a row)"
        )
    return line + f" · next poll {next_poll}"


def cmd_sources(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    now = ctx.now()
    with ctx.store() as store:
        rows = store.catalog.source_rows()
    if not rows:
        return Reply("There are no sources yet. An admin adds one with `source add URL [NAME]`.")
    return Reply("\n".join([f"*Sources* ({len(rows)}):", *(source_health_line(r, now) for r in rows)]))


_SINCE = re.compile(r"(?<!\S)since:(\S+)(?!\S)")


def cmd_search(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    window = SEARCH_WINDOW
    if m := _SINCE.search(rest):
        window, rest = m.group(1), (rest[: m.start()] + rest[m.end() :]).strip()
    rest = _straight_quotes(rest)
    if not rest:
        return Reply(f"Search for what? For example `{COMMAND} search unicef deepfake* since:7d`.")
    try:
        since = timedelta(seconds=parse_duration(window))
    except ValueError as e:
        return Reply(f"`since:{escape(window)}`: {escape(str(e))}")
    with ctx.store() as store:
        hits = history.search(store, rest, since=since, limit=10, now=ctx.now())
    if not hits:
        return Reply(f"No story first seen in the last {escape(window)} matches `{escape(rest)}`.")
    lines = [f"*Latest stories matching* `{escape(rest)}` (last {escape(window)}):"]
    for hit in hits:
        title = escape(shorten(hit.title, 200)) or "(untitled)"
        link = f"<{escape_url(hit.url)}|{title}>" if hit.url else title
        sources = f"{hit.sources} source{'s' if hit.sources != 1 else ''}"
        watchlists = f" · {_code_list(hit.watchlists)}" if hit.watchlists else ""
        lines.append(f"• {link} — {sources} · {format_time(hit.first_seen)}{watchlists}")
    return Reply("\n".join(lines))


def cmd_query(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    action, text = _split(rest)
    if action != "test" or not text:
        return Reply(f"Usage: `{COMMAND} query test QUERY` — what QUERY would have matched in 30 days.")
    query = compile_query(_straight_quotes(text))
    now = ctx.now()
    with ctx.store() as store:
        result = backtest(store, query, now - QUERY_TEST_WINDOW)
    run = result.candidate
    lines = [
        f"`{escape(query.text)}` would have matched *{run.items} item{'s' if run.items != 1 else ''} "
        f"in {run.stories} stor{'ies' if run.stories != 1 else 'y'}* in the last 30 days "
        f"(of {result.scanned} items stored)."
    ]
    examples: list[Hit] = []
    for hit in run.hits:
        if hit.story not in {e.story for e in examples}:
            examples.append(hit)
        if len(examples) == 3:
            break
    if examples:
        lines.append("For example:")
        lines += [_hit_line(hit) for hit in examples]
    return Reply("\n".join(lines))


def _hit_line(hit: Hit) -> str:
    item = hit.item
    bold = [(s.start, s.end) for s in hit.spans if s.field == "title"]
    title = emphasize(item.title, bold) if len(item.title) <= 250 else escape(shorten(item.title, 250))
    link = f"<{escape_url(item.url)}|{title or '(untitled)'}>" if item.url else title
    who = item.outlet or item.source
    return f"• {link} — {escape(who)} · {format_time(item.published)}"


def _query_error(e: QueryError) -> str:
    text = f"Query error: {escape(e.problem)} at column {e.position + 1}."
    if e.query:
        text += f"\n```{escape(e.query)}\n{' ' * e.position}^```"
    return text


def _straight_quotes(text: str) -> str:
    # Slack clients may turn typed quotes into curly ones; the query language's phrases use ".
    return text.replace("“", '"').replace("”", '"').strip().strip("`").strip()


def _find_source(store: Store, name: str) -> str | None:
    """The catalog name of a source, matched without regard to case."""
    name = name.strip().strip('"').strip()
    rows = store.catalog.source_rows()
    for row in rows:
        if row["name"] == name:
            return row["name"]
    folded = [row["name"] for row in rows if row["name"].casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


_FOR = re.compile(r"^(?P<name>.+?)\s+for\s+(?P<duration>\S+)$", re.IGNORECASE)


def cmd_mute(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    what, rest = _split(rest)
    if what != "source" or not rest:
        return Reply(f"Usage: `{COMMAND} mute source NAME [for 7d]`. (Stories are muted with their button.)")
    until, duration = None, ""
    if m := _FOR.match(rest):
        try:
            seconds = parse_duration(m.group("duration"))
        except ValueError as e:
            return Reply(f"`for {escape(m.group('duration'))}`: {escape(str(e))}")
        rest, duration = m.group("name"), format_duration(seconds)
        until = ctx.now() + timedelta(seconds=seconds)
    with ctx.store() as store:
        name = _find_source(store, rest)
        if name is None:
            return Reply(f"No source named *{escape(rest)}*. `{COMMAND} sources` lists them.")
        with store.transaction():
            store.people.mute(inv.channel, "source", name, inv.user, ctx.now(), until)
            detail = name + (f" for {duration}" if duration else "")
            store.people.record_audit(inv.user, inv.channel, "mute source", detail, ctx.now())
    how_long = f" for {duration} (until {format_time(until)})" if until else ""
    return Reply(
        f"{mention(inv.user)} muted source *{escape(name)}* in this channel{how_long}: "
        f"no alerts from it here. `{COMMAND} unmute source {escape(name)}` undoes it.",
        in_channel=True,
    )


def cmd_unmute(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    what, rest = _split(rest)
    if what != "source" or not rest:
        return Reply(f"Usage: `{COMMAND} unmute source NAME`.")
    with ctx.store() as store, store.transaction():
        name = _find_source(store, rest) or rest.strip().strip('"')
        if not store.people.unmute(inv.channel, "source", name):
            return Reply(f"Source *{escape(name)}* is not muted in this channel.")
        store.people.record_audit(inv.user, inv.channel, "unmute source", name, ctx.now())
    return Reply(
        f"{mention(inv.user)} unmuted source *{escape(name)}* in this channel.",
        in_channel=True,
    )


def cmd_status(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    now = ctx.now()
    with ctx.store() as store:
        report = status.health(store, now)
        rates = store.people.not_relevant_rates()
    return Reply(status_text(report, rates, now))


def status_text(report: status.Health, rates: dict[str, tuple[int, int]], now: datetime) -> str:
    """bot.status.Health (and the not-relevant rates) as a Slack message."""
    polls = [t for s in report.sources for t in (s.last_success, s.last_error_at) if t is not None]
    lines = [
        "*newsalert status* — " + ("⚠️ needs a human" if report.needs_human else "✅ healthy"),
        f"Last poll: {ago(max(polls), now) if polls else 'never'}",
        f"Queued alerts: {report.outbox_depth}"
        + (f" (oldest queued {ago(report.oldest_queued, now)})" if report.oldest_queued else "")
        + (f" · {report.dead_letters} undeliverable" if report.dead_letters else ""),
    ]
    failing = [s for s in report.sources if s.failures or s.disabled]
    if failing:
        lines.append(f"Failing sources ({len(failing)}):")
        for s in failing:
            why = (
                f"disabled: {s.disabled}" if s.disabled else f"{s.failures} failures in a row: {s.last_error}"
            )
            lines.append(f"• *{escape(s.name)}* — {escape(shorten(why, 200))} ({ago(s.last_error_at, now)})")
    else:
        lines.append(f"Failing sources: none of {len(report.sources)}")
    if report.broken:
        lines.append("Broken subscriptions:")
        lines += [f"• <#{c}>: {escape(why)}" for c, why in report.broken if re.match(r"^[CGD][A-Z0-9]+$", c)]
    else:
        lines.append("Broken subscriptions: none")
    if report.problems:
        lines.append("Needs a human:")
        lines += [f"• {escape(p)}" for p in report.problems]
    if rates:
        lines.append("Not relevant (alerts flagged / alerts posted), per watchlist:")
        for watchlist, (flagged, posted) in rates.items():
            share = f"{flagged / posted:.0%}" if posted else "–"
            lines.append(f"• `{escape(watchlist)}`: {flagged} / {posted} ({share})")
    return "\n".join(lines)


# -- admins ----------------------------------------------------------------------------------------


def cmd_watchlist(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    action, rest = _split(rest)
    name, query = _first(rest)
    query = _straight_quotes(query)
    if action not in ("add", "edit", "remove") or not name or (action != "remove" and not query):
        return Reply(
            f"Usage: `{COMMAND} watchlist add NAME QUERY`, `{COMMAND} watchlist edit NAME QUERY`, "
            f"`{COMMAND} watchlist remove NAME`."
        )
    if not WATCHLIST_NAME.match(name):
        return Reply(
            f"`{escape(name)}` cannot be a watchlist name: letters, digits, - and _, up to 40 characters."
        )
    now = ctx.now()
    if action != "remove":
        compile_query(query, watchlist=name)  # a QueryError becomes the reply, nothing is saved
    with ctx.store() as store, store.transaction():
        row = store.catalog.watchlist_row(name)
        active = row is not None and row["removed_at"] is None
        if action == "add" and active:
            return Reply(f"Watchlist `{escape(name)}` exists. Change it with `watchlist edit`.")
        if action != "add" and not active:
            return Reply(f"There is no watchlist `{escape(name)}`. `{COMMAND} watchlists` lists them.")
        if action == "remove":
            store.catalog.remove_watchlist(name, inv.user, now)
            store.people.record_audit(inv.user, inv.channel, "watchlist remove", name, now)
            channels = store.catalog.channels_subscribed_to(name)
        else:
            store.catalog.save_watchlist(name, query, inv.user, now)
            store.people.record_audit(inv.user, inv.channel, f"watchlist {action}", f"{name}: {query}", now)
    if action == "remove":
        where = ", ".join(f"<#{c}>" for c in channels if re.match(r"^[CG][A-Z0-9]+$", c))
        return Reply(
            f"Watchlist `{escape(name)}` removed: nothing matches it from the next poll on."
            + (f" Channels subscribed to it: {where}." if where else "")
        )
    if action == "add":
        return Reply(
            f"Watchlist `{escape(name)}` added: `{escape(query)}`. It applies from the next poll; "
            f"a channel gets it with `{COMMAND} subscribe {escape(name)}`."
        )
    old = " ".join(str(row["query"]).split()) if row else ""
    return Reply(
        f"Watchlist `{escape(name)}` is now `{escape(query)}` (was `{escape(old)}`). It applies from the "
        "next poll."
    )


def cmd_source(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    action, rest = _split(rest)
    if action == "add" and rest:
        return _source_add(rest, inv, ctx)
    if action == "remove" and rest:
        with ctx.store() as store, store.transaction():
            name = _find_source(store, rest)
            if name is None:
                return Reply(f"No source named *{escape(rest)}*. `{COMMAND} sources` lists them.")
            store.catalog.remove_source(name, inv.user, ctx.now())
            store.people.record_audit(inv.user, inv.channel, "source remove", name, ctx.now())
        ctx.catalog_changed()
        return Reply(f"Source *{escape(name)}* removed: it is not polled any more.")
    return Reply(f"Usage: `{COMMAND} source add URL [NAME]`, `{COMMAND} source remove NAME`.")


def _source_add(rest: str, inv: Invocation, ctx: AppContext) -> Reply:
    url, name = _first(rest)
    url = url.strip("<>").split("|", 1)[0]  # Slack may send a typed link as <url> or <url|label>
    name = name.strip().strip('"').strip()
    if problem := source_url_problem(url, allow_private=ctx.settings.allow_private_sources):
        return Reply(f"Refused: `{escape(url)}` {escape(problem)}. Nothing was added.")
    name = name or (urlsplit(url).hostname or url)
    if len(name) > MAX_SOURCE_NAME or "\n" in name:
        return Reply(f"Give the source a shorter name (up to {MAX_SOURCE_NAME} characters).")
    with ctx.store() as store:
        for row in store.catalog.source_rows():
            if row["name"].casefold() == name.casefold():
                return Reply(
                    f"There is already a source named *{escape(row['name'])}*. Give this one a name: "
                    f"`{COMMAND} source add {escape(url)} NAME`."
                )
            if row["url"] == url:
                return Reply(f"That URL is already polled, as *{escape(row['name'])}*.")
    source, entries, problem = _try_source(ctx, Source(name, url, "feed", ctx.settings.interval))
    if problem is not None:
        return Reply(f"Could not add *{escape(name)}*: {escape(problem)}. Nothing was added.")
    now = ctx.now()
    with ctx.store() as store, store.transaction():
        store.catalog.add_source(source, inv.user, now)
        store.people.record_audit(inv.user, inv.channel, "source add", f"{name}: {url} ({source.type})", now)
    ctx.catalog_changed()
    lines = [
        f"Source *{escape(name)}* added ({source.type}, polled every {format_duration(source.interval)}). "
        f"It lists {len(entries)} item{'s' if len(entries) != 1 else ''}"
        + (", the newest:" if entries else ".")
    ]
    for item in sorted(entries, key=lambda i: i.published, reverse=True)[:3]:
        lines.append(f"• {escape(shorten(item.title, 150)) or '(untitled)'} — {format_time(item.published)}")
    window = ctx.settings.first_poll_window
    if window:
        lines.append(f"Its first poll alerts only items from the last {format_duration(window)}.")
    return Reply("\n".join(lines))


def _fetch_once(settings: Settings, source: Source) -> Fetched | FetchError:
    # The same fetcher as every poll: timeouts, size cap, and the address guard on every hop.
    return fetch_all([source], {}, limits_from(settings))[source.name]


def _try_source(ctx: AppContext, source: Source) -> tuple[Source, list, str | None]:
    """Fetch the URL once and find which kind of source it is; (source, items, problem)."""
    outcome = (ctx.fetch or _fetch_once)(ctx.settings, source)
    if isinstance(outcome, FetchError):
        return source, [], ("refused: " if outcome.blocked else "") + outcome.reason
    if outcome.not_modified or not outcome.body:
        return source, [], "the server sent no content"
    kinds = ["wordpress"] if "/wp-json/" in source.url else ["feed", "wordpress"]
    problem = "not a feed"
    for kind in kinds:
        candidate = Source(source.name, source.url, kind, source.interval)  # type: ignore[arg-type]
        try:
            entries = parse(outcome.body, candidate, outcome.headers)
        except ParseError as e:
            problem = f"not a feed ({e.reason})"
            continue
        now = ctx.now()
        items = []
        for entry in entries:
            try:
                items.append(normalize(entry, candidate, now))
            except Exception:  # the preview skips odd entries, as a poll does
                continue
        return candidate, items, None
    return source, [], problem


COMMANDS: dict[str, Handler] = {
    "help": cmd_help,
    "subscribe": cmd_subscribe,
    "unsubscribe": cmd_unsubscribe,
    "list": cmd_list,
    "watchlists": cmd_watchlists,
    "sources": cmd_sources,
    "search": cmd_search,
    "query": cmd_query,
    "mute": cmd_mute,
    "unmute": cmd_unmute,
    "status": cmd_status,
    "watchlist": cmd_watchlist,
    "source": cmd_source,
}
ADMIN_ONLY = {"watchlist", "source"}
