"""The App Home tab, without Slack: a Block Kit view built from the database for one user.

It shows the channels this user can see that have subscriptions, the watchlists, source health
and the 10 latest alerts (only from channels the user can see: an alert title from a private
channel must not leak through the Home tab).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from bot.alerts.render import BLOCK_TEXT_LIMIT, escape, escape_url, format_time, mention, plural, shorten
from bot.app.context import COMMAND
from bot.app.replies import source_health_line
from bot.ops.health import source_health
from bot.store import Store

LATEST = 10
MAX_BLOCKS = 100  # Slack's limit for a view
_STATE = {"claimed": "claimed by", "done": "done by", "escalated": "escalated by"}


def _header(title: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": title}}


def _sections(title: str, lines: list[str]) -> list[dict]:
    """A heading and the lines, split into sections under Slack's 3,000-character limit."""
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": title}}]
    chunk: list[str] = []
    for line in lines:
        if chunk and len("\n".join([*chunk, line])) > BLOCK_TEXT_LIMIT:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
            chunk = []
        chunk.append(line[:BLOCK_TEXT_LIMIT])
    if chunk:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
    return blocks


HOME_LINES = 15  # lines of a list shown on Home a page; the others are a button or a command away
HOME_LISTS = ("channels", "sources", "watchlists")  # the lists Home pages, in a button's value


def _page(name: str, lines: list[str], command: str, page: int) -> list[dict]:
    """Page ``page`` of a Home list, with Previous/Next buttons ("home_page", value "sources:2")."""
    count = max(1, -(-len(lines) // HOME_LINES))
    page = min(max(page, 1), count)
    shown = lines[(page - 1) * HOME_LINES : page * HOME_LINES]
    if count == 1:
        return _sections(_TITLES[name], shown)[1:]
    shown = [*shown, f"_Page {page} of {count} · {command} lists them all_"]
    buttons = []
    if page > 1:
        buttons.append(_home_button(name, page - 1, "Previous"))
    if page < count:
        buttons.append(_home_button(name, page + 1, "Next"))
    return [*_sections(_TITLES[name], shown)[1:], {"type": "actions", "elements": buttons}]


def _home_button(name: str, page: int, label: str) -> dict:
    return {
        "type": "button",
        "action_id": f"home_page_{label.lower()}_{name}",
        "text": {"type": "plain_text", "text": f"{label} {name}"},
        "value": f"{name}:{page}",
    }


_TITLES = {
    "channels": "Your channels with subscriptions",
    "sources": "Sources",
    "watchlists": "Watchlists",
}


def parse_home_page(value: str) -> tuple[str, int] | None:
    """(list, page) from a Home paging button's value; None when it is not one Home made."""
    name, _, page = value[:40].partition(":")
    if name not in HOME_LISTS or not page.isdigit() or len(page) > 4 or int(page) < 1:
        return None
    return name, int(page)


def home_view(
    store: Store,
    user: str,
    can_see: Callable[[str], bool | None],
    now: datetime,
    pages: dict[str, int] | None = None,
) -> dict:
    """The Home tab for ``user``; ``can_see(channel)`` says whether they may see a channel (None:
    Slack could not say just now, a rate limit; Home says so rather than hiding it quietly);
    ``pages`` which page of each long list to show (the first by default)."""
    pages = pages or {}
    visible: dict[str, bool | None] = {}

    def sees(channel: str) -> bool:
        if channel not in visible:
            visible[channel] = can_see(channel)
        return visible[channel] is True

    by_channel: dict[str, list[str]] = {}
    for sub in store.catalog.realtime_subscriptions():
        names = by_channel.setdefault(sub.channel, [])
        names += [w for w in sub.watchlists if w not in names]
    channels = [c for c in sorted(by_channel) if sees(c)]
    channel_lines = []
    for channel in channels:
        line = f"• <#{channel}>: " + ", ".join(f"`{escape(w)}`" for w in by_channel[channel])
        muted = [m.target for m in store.people.channel_mutes(channel, now) if m.kind == "source"]
        if muted:
            line += " · muted sources: " + ", ".join(escape(m) for m in muted)
        channel_lines.append(line)
    unread = [c for c, seen in visible.items() if seen is None]
    if unread:
        channel_lines.insert(  # first, on every page's reading: it explains what is missing
            0,
            f"_Slack did not answer for {plural(len(unread), 'channel')} just now (rate limited); "
            "they show again when you reopen Home._",
        )
    if not channel_lines:
        channel_lines = [
            f"No channel you can see has subscriptions yet. In a channel: `{COMMAND} subscribe WATCHLIST`."
        ]

    watchlist_lines = [
        f"• `{escape(w.name)}` — `{escape(shorten(' '.join(w.query.split()), 300))}`"
        for w in store.catalog.active_watchlists()
    ] or ["No watchlists yet."]
    source_lines = [source_health_line(s, now) for s in source_health(store, now)] or ["No sources yet."]

    alert_lines = []
    seen_channels = {p.channel for p in store.stories.latest_story_posts(200)}
    allowed = [c for c in seen_channels if sees(c)]
    for post in store.stories.latest_story_posts(LATEST, channels=allowed):
        title = escape(shorten(post.title, 150)) or "(untitled)"
        link = f"<{escape_url(post.url)}|{title}>" if post.url else title
        watchlists = ", ".join(f"`{escape(w)}`" for w in post.watchlists)
        line = f"• {link} — <#{post.channel}> · {watchlists} · {format_time(post.posted_at)}"
        if post.state and post.state_by:
            line += f" · _{_STATE.get(post.state, escape(post.state))} {mention(post.state_by)}_"
        alert_lines.append(line)
    if not alert_lines:
        alert_lines = ["No alerts yet in channels you can see."]

    # What an analyst opens Home for comes first: the latest alerts, then the sources' health
    # (failing ones lead, as source_health sorts them); the long lists are cut to a first page
    # with the command that shows them all, so the view stays far under Slack's 100 blocks.
    blocks = [
        *_sections("Latest alerts", alert_lines),
        {"type": "divider"},
        _header(_TITLES["channels"]),
        *_page("channels", channel_lines, f"`{COMMAND} list` in a channel", pages.get("channels", 1)),
        {"type": "divider"},
        _header(_TITLES["sources"]),
        *_page("sources", source_lines, f"`{COMMAND} sources`", pages.get("sources", 1)),
        {"type": "divider"},
        _header(_TITLES["watchlists"]),
        *_page("watchlists", watchlist_lines, f"`{COMMAND} watchlists`", pages.get("watchlists", 1)),
        {
            "type": "actions",
            "block_id": "watchlist_forms",
            "elements": [
                {
                    "type": "button",
                    "action_id": f"home_watchlist_{kind}",
                    "text": {"type": "plain_text", "text": label},
                    "value": kind,
                    **({"style": "primary"} if kind == "add" else {}),
                }
                for kind, label in (
                    ("add", "Add watchlist"),
                    ("edit", "Edit watchlist"),
                    ("test", "Test a query"),
                )
            ],
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"Updated {format_time(now)} · `{COMMAND} help` lists the commands",
                }
            ],
        },
    ]
    return {"type": "home", "blocks": blocks[:MAX_BLOCKS], "private_metadata": json.dumps(pages)[:3000]}
