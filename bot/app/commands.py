"""`/newsalert` without Slack: parse a command line, check who may run it, do it, say what happened.

The Slack app (bot/slack/) only acks, calls ``handle`` and sends the Reply back; everything a
command means lives here and is tested directly. What needs Slack itself (is this user a
workspace admin, is the bot in the channel, a message permalink) comes through a ``Workspace``.

Replies are Slack mrkdwn. Every string that came from a feed, a config file or a person is
escaped (render.escape) before it is placed in one, so nothing typed or fetched can ping.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from bot import history
from bot.alerts.digest import next_digest
from bot.alerts.digest import trigger as digest_trigger
from bot.alerts.render import WATCHLIST_NAMES, escape, escape_url, format_time, mention, shorten
from bot.app.admin import cmd_source, cmd_watchlist, find_source, straight_quotes, subcommand
from bot.app.context import COMMAND, AppContext, Handler, Invocation, Reply, Workspace
from bot.app.paging import page_of
from bot.app.replies import (
    HELP,
    HELP_LINE,
    REFUSAL,
    code_list,
    hit_line,
    query_error,
    source_health_line,
    status_lines,
)
from bot.config import format_duration, parse_duration
from bot.errors import QueryError, ScheduleError, SearchTimeout
from bot.match.backtest import Hit, backtest
from bot.match.query import compile_query
from bot.model import Subscription
from bot.ops import health as status
from bot.store import Store

QUERY_TEST_WINDOW = timedelta(days=30)
SEARCH_WINDOW = "30d"
SEARCH_PAGE = 10  # stories a page of `search` shows
SEARCH_PAGES = 50  # pages `search` goes back: 500 stories; narrower words find older ones


def unescape_slack(text: str) -> str:
    # Slack sends &, <, > in command text as entities; the query language wants the characters.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def pending_message(text: str, *, user: str, ctx: AppContext) -> str | None:
    """What to acknowledge a slow command with at once (the answer follows); None for quick ones.

    A command its user may not run is not slow: its refusal is the answer, so nothing is promised
    before it. Only the config's admins are known without asking Slack, and the ack must not
    wait for users.info: a workspace admin's `source add` is acked silently, then answered.
    """
    head, rest = subcommand(unescape_slack(text))
    if head == "source" and subcommand(rest)[0] == "add":
        return "Fetching that source once to check it…" if user in ctx.settings.slack_admins else None
    if head in ("search", "query"):
        return "Searching the history…"
    return None


def handle(
    text: str, *, user: str, channel: str, ctx: AppContext, workspace: Workspace, page: int = 1
) -> Reply:
    """Run one `/newsalert` command line and say what happened (``page`` of a long answer)."""
    invocation = Invocation(user, channel, unescape_slack(text), page)
    head, rest = subcommand(invocation.text)
    handler = COMMANDS.get(head or "help")
    if handler is None:
        return Reply(f"Unknown command `{escape(shorten(head, 40))}`. {HELP_LINE}")
    if head in ADMIN_ONLY and not ctx.is_admin(user, workspace):
        return Reply(REFUSAL)
    try:
        return handler(rest, invocation, ctx, workspace)
    except QueryError as e:
        return Reply(query_error(e))


# -- everyone -------------------------------------------------------------------------------------


def cmd_help(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    return Reply(HELP)


def _names(rest: str) -> list[str]:
    return [n for n in re.split(r"[\s,]+", rest.strip()) if n]


def _unknown_watchlists(store: Store, names: Sequence[str]) -> str:
    """What is wrong with ``names`` if some are not watchlists ("" when all are)."""
    known = [w.name for w in store.catalog.active_watchlists()]
    if unknown := [n for n in names if n not in known]:
        return f"No watchlist {code_list(unknown)}. Watchlists: {code_list(known) or 'none yet'}."
    return ""


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
        return Reply(f"This channel already gets alerts for {code_list(already)}.")
    text = f"{mention(inv.user)} subscribed this channel to realtime alerts for {code_list(added)}."
    if already:
        text += f" (It already had {code_list(already)}.)"
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
        f"{mention(inv.user)} subscribed this channel to a digest of {code_list(names)}: "
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
            f"This channel is not subscribed to {code_list(names)}. "
            f"It gets: {code_list(left) or 'nothing yet'}."
        )
    text = f"{mention(inv.user)} unsubscribed this channel from {code_list(removed)}."
    text += f" It still gets {code_list(left)}." if left else " It gets no alerts now."
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
            f"watchlists: {code_list(known) or 'none yet'}."
        )
    if digests:
        lines.append("*Digests:*")
        for sid, sub in digests:
            lines.append(
                f"• `{sid}`: {code_list(sub.watchlists)} — {escape(sub.schedule)} ({escape(sub.timezone)}), "
                f"next {format_time(next_digest(sub, now))}"
            )
    if mutes:
        lines.append("*Muted here:*")
        for m in mutes:
            until = f" until {format_time(m.until)}" if m.until else ""
            if m.kind == "source":
                lines.append(f"• source *{escape(m.target)}*{until} (by {mention(m.user)})")
            else:
                title = escape(shorten(m.title or f"story {m.target}", 120))
                lines.append(f"• story “{title}”{until} (by {mention(m.user)})")
    else:
        lines.append("Nothing is muted here.")
    return paged("", lines, "list", inv)


def paged(heading: str, lines: list[str], command: str, inv: Invocation, **more: bool) -> Reply:
    """A listing reply: one page of it, with buttons to the others (bot.app.paging)."""
    page = page_of(heading, lines, command, inv.page, **more)
    return Reply(page.text, blocks=page.blocks)


def cmd_watchlists(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    with ctx.store() as store:
        watchlists = store.catalog.active_watchlists()
    if not watchlists:
        return Reply("There are no watchlists yet. An admin adds one with `watchlist add NAME QUERY`.")
    lines = []
    for w in watchlists:
        line = f"• `{escape(w.name)}` — `{escape(' '.join(w.query.split()))}`"
        if w.description:
            line += f" _{escape(shorten(w.description, 300))}_"
        lines.append(line)
    return paged(f"*Watchlists* ({len(watchlists)}):", lines, "watchlists", inv)


def cmd_sources(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    now = ctx.now()
    with ctx.store() as store:
        sources = status.source_health(store, now)
    if not sources:
        return Reply("There are no sources yet. An admin adds one with `source add URL [NAME]`.")
    lines = [source_health_line(s, now) for s in sources]
    return paged(f"*Sources* ({len(sources)}):", lines, "sources", inv)


_SINCE = re.compile(r"(?<!\S)since:(\S+)(?!\S)")
_WATCHLIST = re.compile(r"(?<!\S)watchlist:(\S+)(?!\S)")


def cmd_search(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    window = SEARCH_WINDOW
    if m := _SINCE.search(rest):
        window, rest = m.group(1), (rest[: m.start()] + rest[m.end() :]).strip()
    watchlist = None
    if m := _WATCHLIST.search(rest):
        watchlist, rest = m.group(1), (rest[: m.start()] + rest[m.end() :]).strip()
        with ctx.store() as store:
            known = {w.name: w.query for w in store.catalog.active_watchlists()}
        if watchlist not in known:
            return Reply(
                f"No watchlist `{escape(shorten(watchlist, 80))}`. `{COMMAND} watchlists` lists them."
            )
        rest = rest or known[watchlist]  # no words of its own: the watchlist's own query
    rest = straight_quotes(rest)
    if not rest:
        return Reply(f"Search for what? For example `{COMMAND} search unicef deepfake* since:7d`.")
    try:
        since = timedelta(seconds=parse_duration(window))
    except ValueError as e:
        return Reply(f"`since:{escape(window)}`: {escape(str(e))}")
    page = min(inv.page, SEARCH_PAGES)
    try:
        with ctx.store() as store:
            hits = history.search(
                store,
                rest,
                since=since,
                watchlist=watchlist,
                limit=SEARCH_PAGE + 1,  # one more than a page: is there a next one?
                offset=(page - 1) * SEARCH_PAGE,
                now=ctx.now(),
            )
    except SearchTimeout as e:
        return Reply(
            f"Search took too long (over {e.budget:g} s). Narrow it: a shorter `since:` "
            "(such as `since:7d`), a `watchlist:`, or rarer words."
        )
    if not hits:
        if page > 1:
            return Reply(f"No more stories match `{escape(shorten(rest, 200))}`.")
        return Reply(f"No story first seen in the last {escape(window)} matches `{escape(rest)}`.")
    more, hits = len(hits) > SEARCH_PAGE and page < SEARCH_PAGES, hits[:SEARCH_PAGE]
    heading = f"*Latest stories matching* `{escape(shorten(rest, 300))}` (last {escape(window)}):"
    lines = []
    for hit in hits:
        title = escape(shorten(hit.title, 200)) or "(untitled)"
        link = f"<{escape_url(hit.url)}|{title}>" if hit.url else title
        sources = f"{hit.sources} source{'s' if hit.sources != 1 else ''}"
        named = code_list(hit.watchlists[:WATCHLIST_NAMES])
        more_names = len(hit.watchlists) - WATCHLIST_NAMES
        watchlists = f" · {named}" + (f", +{more_names}" if more_names > 0 else "") if hit.watchlists else ""
        lines.append(f"• {link} — {sources} · {format_time(hit.first_seen)}{watchlists}")
    return paged(heading, lines, inv.text, Invocation(inv.user, inv.channel, inv.text, page), more=more)


def cmd_query(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    action, text = subcommand(rest)
    if action != "test" or not text:
        return Reply(f"Usage: `{COMMAND} query test QUERY` — what QUERY would have matched in 30 days.")
    query = compile_query(straight_quotes(text))
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
        lines += [hit_line(hit) for hit in examples]
    return Reply("\n".join(lines))


_FOR = re.compile(r"^(?P<name>.+?)\s+for\s+(?P<duration>\S+)$", re.IGNORECASE)


def cmd_mute(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    what, rest = subcommand(rest)
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
        name = find_source(store, rest)
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
    what, rest = subcommand(rest)
    if what != "source" or not rest:
        return Reply(f"Usage: `{COMMAND} unmute source NAME`.")
    with ctx.store() as store, store.transaction():
        name = find_source(store, rest) or rest.strip().strip('"')
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
    heading, *lines = status_lines(report, rates, now)
    return paged(heading, lines, "status", inv)


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
