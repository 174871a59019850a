"""The admins' commands: adding, editing and removing watchlists and sources from Slack."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from bot.alerts.render import escape, format_time, shorten
from bot.app.context import COMMAND, AppContext, Invocation, Reply, Workspace
from bot.app.probe import probe_source
from bot.config import format_duration
from bot.match.query import compile_query
from bot.model import WATCHLIST_NAME, WATCHLIST_NAME_RULE, Source
from bot.store import Store
from bot.urls import source_url_problem

MAX_SOURCE_NAME = 80


def first_word(text: str) -> tuple[str, str]:
    """The first word and the rest; any whitespace separates them."""
    parts = text.strip().split(maxsplit=1)
    return (parts[0] if parts else ""), (parts[1].strip() if len(parts) > 1 else "")


def subcommand(text: str) -> tuple[str, str]:
    """A subcommand word, lowercased, and the rest."""
    head, rest = first_word(text)
    return head.lower(), rest


def straight_quotes(text: str) -> str:
    # Slack clients may turn typed quotes into curly ones; the query language's phrases use ".
    return text.replace("“", '"').replace("”", '"').strip().strip("`").strip()


def find_source(store: Store, name: str) -> str | None:
    """The catalog name of a source, matched without regard to case."""
    name = name.strip().strip('"').strip()
    names = [s.name for s in store.sources.listed()]
    if name in names:
        return name
    folded = [n for n in names if n.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def cmd_watchlist(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    action, rest = subcommand(rest)
    name, query = first_word(rest)
    query = straight_quotes(query)
    if action not in ("add", "edit", "remove") or not name or (action != "remove" and not query):
        return Reply(
            f"Usage: `{COMMAND} watchlist add NAME QUERY`, `{COMMAND} watchlist edit NAME QUERY`, "
            f"`{COMMAND} watchlist remove NAME`."
        )
    if not WATCHLIST_NAME.match(name):
        return Reply(f"`{escape(name)}` cannot be a watchlist name: {WATCHLIST_NAME_RULE}.")
    now = ctx.now()
    if action != "remove":
        compile_query(query, watchlist=name)  # a QueryError becomes the reply, nothing is saved
    with ctx.store() as store, store.transaction():
        row = store.catalog.watchlist_row(name)
        active = row is not None and not row.removed
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
    old = " ".join(row.query.split()) if row else ""
    return Reply(
        f"Watchlist `{escape(name)}` is now `{escape(query)}` (was `{escape(old)}`). It applies from the "
        "next poll."
    )


def cmd_source(rest: str, inv: Invocation, ctx: AppContext, ws: Workspace) -> Reply:
    action, rest = subcommand(rest)
    if action == "add" and rest:
        return _source_add(rest, inv, ctx)
    if action == "remove" and rest:
        with ctx.store() as store, store.transaction():
            name = find_source(store, rest)
            if name is None:
                return Reply(f"No source named *{escape(rest)}*. `{COMMAND} sources` lists them.")
            store.catalog.remove_source(name, inv.user, ctx.now())
            store.people.record_audit(inv.user, inv.channel, "source remove", name, ctx.now())
        ctx.catalog_changed()
        return Reply(f"Source *{escape(name)}* removed: it is not polled any more.")
    return Reply(f"Usage: `{COMMAND} source add URL [NAME]`, `{COMMAND} source remove NAME`.")


def _source_add(rest: str, inv: Invocation, ctx: AppContext) -> Reply:
    url, name = first_word(rest)
    url = url.strip("<>").split("|", 1)[0]  # Slack may send a typed link as <url> or <url|label>
    name = name.strip().strip('"').strip()
    if problem := source_url_problem(url, allow_private=ctx.settings.allow_private_sources):
        return Reply(f"Refused: `{escape(url)}` {escape(problem)}. Nothing was added.")
    name = name or (urlsplit(url).hostname or url)
    if len(name) > MAX_SOURCE_NAME or "\n" in name:
        return Reply(f"Give the source a shorter name (up to {MAX_SOURCE_NAME} characters).")
    with ctx.store() as store:
        for row in store.sources.listed():
            if row.name.casefold() == name.casefold():
                return Reply(
                    f"There is already a source named *{escape(row.name)}*. Give this one a name: "
                    f"`{COMMAND} source add {escape(url)} NAME`."
                )
            if row.url == url:
                return Reply(f"That URL is already polled, as *{escape(row.name)}*.")
    source, entries, problem = probe_source(ctx, Source(name, url, "feed", ctx.settings.interval))
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
