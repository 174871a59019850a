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


# The buttons on every alert (action_id -> label). The value of each is the story id; the Slack
# app finds the story's message from the channel and the clicked message's ts.
TRIAGE_BUTTONS = {"alert_claim": "Claim", "alert_done": "Done", "alert_escalate": "Escalate"}
FEEDBACK_BUTTONS = {
    "alert_mute_story": "Mute this story",
    "alert_mute_source": "Mute source here",
    "alert_not_relevant": "Not relevant",
}
TRIAGE_LABELS = {"claimed": "Claimed by", "done": "Done by", "escalated": "Escalated by"}


@dataclass(frozen=True)
class MessageState:
    """What people did to an alert in its channel, shown under it: triage and feedback.

    User ids come from Slack itself (signed requests), source names from the catalog.
    """

    triage: str | None = None  # claimed | done | escalated
    triage_by: str | None = None
    story_muted_by: str | None = None
    source: str = ""
    source_muted_by: str | None = None
    not_relevant_by: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        out = []
        if self.triage and self.triage_by:
            out.append(f"{TRIAGE_LABELS.get(self.triage, self.triage)} {mention(self.triage_by)}")
        if self.story_muted_by:
            out.append(f"Story muted here by {mention(self.story_muted_by)}")
        if self.source_muted_by:
            out.append(f"Source {escape(self.source)} muted here by {mention(self.source_muted_by)}")
        if self.not_relevant_by:
            out.append("Not relevant: " + ", ".join(mention(u) for u in self.not_relevant_by))
        return out


def mention(user_id: str) -> str:
    # Only a well-formed user id becomes a mention; anything else is shown as text.
    if user_id[:1] in ("U", "W") and user_id.isalnum() and user_id.isupper():
        return f"<@{user_id}>"
    return escape(user_id)


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


def fit(mrkdwn: str, limit: int = BLOCK_TEXT_LIMIT) -> str:
    """``mrkdwn`` cut to ``limit`` characters *after* escaping, without breaking what escaping
    made: never inside an entity (``&am``) or a link (``<https://…|tit``), which Slack would
    show as garbage or, for a half link, not as a link at all."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    cut = mrkdwn[: limit - 1]
    if cut.rfind("<") > cut.rfind(">"):  # inside <url|label>: drop the whole link
        cut = cut[: cut.rfind("<")]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:  # inside &amp; / &lt; / &gt;
        cut = cut[:amp]
    return cut.rstrip() + "…"


def render_slack(alert: Alert, state: MessageState | None = None, *, actions: bool = False) -> SlackMessage:
    """The alert; with ``actions`` its buttons, and under it ``state`` (who claimed, muted …)."""
    title = escape(shorten(alert.title, TITLE_LIMIT)) or "(untitled)"
    heading = f"*<{escape_url(alert.url)}|{title}>*" if alert.url else f"*{title}*"
    if len(heading) > BLOCK_TEXT_LIMIT:  # an absurdly long link: the title alone, rather than a broken link
        heading = f"*{title}*"
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
        {"type": "section", "text": {"type": "mrkdwn", "text": fit(heading)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(context)}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": fit(summary)}},
    ]
    if state is not None and (lines := state.lines()):
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(lines)}]})
    if actions:
        blocks += alert_buttons(alert.story_id)
    plain_title = escape(shorten(alert.title, TITLE_LIMIT)) or "(untitled)"
    text = f"[{', '.join(alert.watchlists)}] {plain_title} — {escape(_source_label(alert))}"
    return SlackMessage(text=text, blocks=blocks)


def alert_buttons(story_id: int) -> list[dict]:
    def buttons(labels: dict[str, str]) -> list[dict]:
        return [
            {
                "type": "button",
                "action_id": action_id,
                "text": {"type": "plain_text", "text": label},
                "value": str(story_id),
            }
            for action_id, label in labels.items()
        ]

    return [
        {"type": "actions", "block_id": "triage", "elements": buttons(TRIAGE_BUTTONS)},
        {"type": "actions", "block_id": "feedback", "elements": buttons(FEEDBACK_BUTTONS)},
    ]


def render_plain(message: SlackMessage) -> SlackMessage:
    """The same message as mrkdwn text without blocks: the fallback when Slack rejects the blocks."""
    # Buttons have no plain-text form: the fallback goes without them.
    parts = [
        b["text"]["text"] if b["type"] == "section" else b["elements"][0]["text"]
        for b in message.blocks
        if b["type"] in ("section", "context")
    ]
    return SlackMessage(text=fit("\n".join(parts)), blocks=[])


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


def render_console_message(channel: str, message: SlackMessage) -> str:
    """Any Slack message as console text: the mrkdwn of its blocks, unescaped."""
    parts = (
        [message.text]
        if not message.blocks
        else [
            b["text"]["text"] if b["type"] == "section" else " ".join(e["text"] for e in b["elements"])
            for b in message.blocks
            if b["type"] in ("section", "context")
        ]
    )
    text = "\n".join(parts).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return f"● channel {channel}\n" + "\n".join(f"  {line}" for line in text.splitlines())


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
