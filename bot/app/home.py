"""The App Home tab, without Slack: a Block Kit view built from the database for one user.

It shows the channels this user can see that have subscriptions, the watchlists, source health
and the 10 latest alerts (only from channels the user can see: an alert title from a private
channel must not leak through the Home tab).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.alerts.render import BLOCK_TEXT_LIMIT, escape, escape_url, format_time, mention, shorten
from bot.app.context import COMMAND
from bot.app.replies import source_health_line
from bot.ops.health import source_health
from bot.store import Store

LATEST = 10
MAX_BLOCKS = 100  # Slack's limit for a view
_STATE = {"claimed": "claimed by", "done": "done by", "escalated": "escalated by"}


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


HOME_LINES = 15  # lines of a list shown on Home; the rest is one command away


def _first(lines: list[str], command: str) -> list[str]:
    if len(lines) <= HOME_LINES:
        return lines
    return [*lines[:HOME_LINES], f"_and {len(lines) - HOME_LINES} more — {command} lists them all_"]


def home_view(store: Store, user: str, can_see: Callable[[str], bool], now: datetime) -> dict:
    """The Home tab for ``user``; ``can_see(channel)`` says whether they may see a channel."""
    visible: dict[str, bool] = {}

    def sees(channel: str) -> bool:
        if channel not in visible:
            visible[channel] = can_see(channel)
        return visible[channel]

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
        *_sections("Your channels with subscriptions", _first(channel_lines, f"`{COMMAND} list`")),
        {"type": "divider"},
        *_sections("Sources", _first(source_lines, f"`{COMMAND} sources`")),
        {"type": "divider"},
        *_sections("Watchlists", _first(watchlist_lines, f"`{COMMAND} watchlists`")),
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
    return {"type": "home", "blocks": blocks[:MAX_BLOCKS]}
