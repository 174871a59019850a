"""Alert -> Slack message (Block Kit + fallback text) and a console rendering. Pure functions.

Every string in an Alert came from a feed, so every one is escaped here (& < >) before it is
placed in mrkdwn: a title such as "<!channel>" must print, not ping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.model import Alert

TITLE_LIMIT = 250  # characters of title shown; Slack sections allow 3,000 but alerts stay short
BLOCK_TEXT_LIMIT = 3000


@dataclass(frozen=True)
class SlackMessage:
    text: str  # fallback for notifications and clients without Block Kit
    blocks: list[dict]


def escape(text: str) -> str:
    """Slack's own escaping: the only three characters with control meaning in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_url(url: str) -> str:
    # Inside <url|label> a ">" or "|" would end the link early; canonical URLs are percent-encoded
    # anyway, so encode the stragglers rather than trusting the feed.
    return escape(url).replace("|", "%7C")


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def emphasize(text: str, bold: Sequence[tuple[int, int]]) -> str:
    """Escape ``text`` and wrap the ``bold`` ranges in *…* (mrkdwn)."""
    out: list[str] = []
    pos = 0
    for start, end in sorted(bold):
        if start < pos or end <= start:
            continue
        # Spans are whole matched words, so *…* sits on word boundaries and renders as bold.
        out.append(escape(text[pos:start]))
        out.append(f"*{escape(text[start:end])}*")
        pos = end
    out.append(escape(text[pos:]))
    return "".join(out)


def format_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _source_label(alert: Alert) -> str:
    # Aggregator items name the outlet that wrote the story; the feed that carried it comes second.
    if alert.outlet and alert.outlet != alert.source:
        return f"{alert.outlet} (via {alert.source})"
    return alert.source


def render_slack(alert: Alert) -> SlackMessage:
    title = escape(shorten(alert.title, TITLE_LIMIT)) or "(untitled)"
    heading = f"*<{escape_url(alert.url)}|{title}>*" if alert.url else f"*{title}*"
    watchlists = ", ".join(f"`{escape(w)}`" for w in alert.watchlists)
    context = f"{escape(_source_label(alert))} · {format_time(alert.published)} · watchlists: {watchlists}"
    if len(alert.reporters) > 1:
        context += f" · *{len(alert.reporters)} sources*"
    if alert.summary.text:
        summary = emphasize(alert.summary.text, alert.summary.bold)
    elif alert.headline_only:
        summary = "_Headline only: the source gives no summary._"
    else:
        summary = "_No summary available._"
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": heading[:BLOCK_TEXT_LIMIT]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context[:BLOCK_TEXT_LIMIT]}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": summary[:BLOCK_TEXT_LIMIT]}},
    ]
    plain_title = escape(shorten(alert.title, TITLE_LIMIT)) or "(untitled)"
    text = f"[{', '.join(alert.watchlists)}] {plain_title} — {escape(_source_label(alert))}"
    return SlackMessage(text=text, blocks=blocks)


def render_plain(message: SlackMessage) -> SlackMessage:
    """The same message as mrkdwn text without blocks: the fallback when Slack rejects the blocks."""
    parts = [
        b["text"]["text"] if b["type"] == "section" else b["elements"][0]["text"] for b in message.blocks
    ]
    return SlackMessage(text="\n".join(parts)[:BLOCK_TEXT_LIMIT], blocks=[])


def render_reply(alert: Alert) -> SlackMessage:
    """A later report of an already-alerted story, for the story's thread."""
    title = escape(shorten(alert.title, TITLE_LIMIT)) or "(untitled)"
    link = f"<{escape_url(alert.url)}|{title}>" if alert.url else title
    line = f"Also reported by *{escape(alert.outlet or alert.source)}* — {link}"
    if alert.watchlists:
        line += " · " + ", ".join(f"`{escape(w)}`" for w in alert.watchlists)
    text = f"Also reported by {escape(alert.outlet or alert.source)} — {title}"
    return SlackMessage(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": line}}])


def render_console_reply(alert: Alert, parent: Alert) -> str:
    return (
        f'  ↳ in the thread of "{parent.title}" ({len(parent.reporters)} sources): '
        f"also reported by {alert.outlet or alert.source} — {alert.title}"
    )


def render_console(alert: Alert) -> str:
    """A readable plain-text rendering of the same message, for running without Slack."""
    lines = [
        f"● [{', '.join(alert.watchlists)}] {alert.title or '(untitled)'}",
        f"  {_source_label(alert)} · {format_time(alert.published)} · channel {alert.channel}"
        + (f" · story {alert.story_id}" if alert.story_id else ""),
    ]
    if alert.url:
        lines.append(f"  {alert.url}")
    if alert.summary.text:
        lines.append(f"  {alert.summary.text}")
    elif alert.headline_only:
        lines.append("  (headline only: the source gives no summary)")
    return "\n".join(lines)
