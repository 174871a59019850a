"""Alert -> Slack message (Block Kit + fallback text) and a console rendering. Pure functions.

Every string in an Alert came from a feed, so every one is escaped here (& < >) before it is
placed in mrkdwn: a title such as "<!channel>" must print, not ping.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.model import Alert

TITLE_LIMIT = 250  # characters of title shown; Slack sections allow 3,000 but alerts stay short
BLOCK_TEXT_LIMIT = 3000  # a section's text (Slack's documented limit)
TEXT_LIMIT = 4000  # a message's top-level ``text`` (documented; Slack truncates only at 40,000)


@dataclass(frozen=True)
class SlackMessage:
    text: str  # fallback for notifications and clients without Block Kit
    blocks: list[dict]


# The controls on every alert: one primary button for the next triage step (Claim, or Unclaim
# once claimed; Reopen once done), Done beside it, and an overflow menu for the rest. Every value
# is the story id; the Slack app finds the story's message from the channel and the message's ts.
TRIAGE_BUTTONS = {
    "alert_claim": "Claim",
    "alert_unclaim": "Unclaim",
    "alert_done": "Done",
    "alert_reopen": "Reopen",
}
MORE_ACTION = "alert_more"  # the overflow menu; its options' values are "<choice>|<story id>"
MORE_CHOICES = {
    "escalate": "Escalate…",
    "mute_story": "Mute this story…",
    "mute_source": "Mute source…",
    "not_relevant": "Not relevant",
    "same_story": "Same story as…",
}
# A thread reply's one control: its item is not the thread's story (bot/app/corrections.py).
SPLIT_ACTION = "story_split"
TRIAGE_LABELS = {
    "claimed": "Claimed by",
    "done": "Done by",
    "escalated": "Escalated by",
    "unclaimed": "Unclaimed by",
    "reopened": "Reopened by",
}


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
            out.append("Not relevant: " + people(self.not_relevant_by))
        return out


STATE_NAMES = 3  # beyond this many people, a count: 260 mentions would be a wall, not a state


def people(user_ids: Sequence[str]) -> str:
    if len(user_ids) <= STATE_NAMES:
        return ", ".join(mention(u) for u in user_ids)
    return plural(len(user_ids), "person", "people")


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 story``, ``3 stories``: the one place a count meets its noun."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def capped(names: Sequence[str], limit: int) -> list[str]:
    """The first ``limit`` of ``names`` and, when there are more, a last ``+N``."""
    shown = list(names[:limit])
    if len(names) > limit:
        shown.append(f"+{len(names) - limit}")
    return shown


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


def slack_time(dt: datetime) -> str:
    """A time each reader sees in their own time zone ("Yesterday 19:46"); the UTC text is the
    fallback for clients that cannot format dates."""
    return f"<!date^{int(dt.timestamp())}^{{date_short_pretty}} {{time}}|{format_time(dt)}>"


_SLACK_TIME = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")


def plain_times(mrkdwn: str) -> str:
    """``mrkdwn`` with every Slack date token replaced by its fallback text (console output)."""
    return _SLACK_TIME.sub(r"\1", mrkdwn)


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


WATCHLIST_NAMES = 3  # watchlist names shown on an alert before "+N"
SOURCE_NAMES = 4  # outlets named on the sources line before "+N"
MATCHED_TERMS = 6  # phrases on the "Matched:" line before "+N"


def fallback_text(alert: Alert) -> str:
    """What a notification shows: the news first ("Headline — Outlet"), the watchlists after."""
    title = escape(shorten(alert.title, TITLE_LIMIT)) or "(untitled)"
    watchlists = ", ".join(escape(w) for w in capped(alert.watchlists, WATCHLIST_NAMES))
    return f"{title} — {escape(_source_label(alert))}" + (f" · {watchlists}" if watchlists else "")


def matched_line(alert: Alert) -> str:
    """ "Matched: *CSAM* (title), *nudify app* (summary)": why this channel got the alert."""
    terms = [f"*{escape(shorten(words, 60))}* ({where})" for words, where in alert.matched]
    return "Matched: " + ", ".join(capped(terms, MATCHED_TERMS)) if terms else ""


def sources_line(reporters: Sequence[str]) -> str:
    """ "3 sources: Reuters, AP, BBC" for a story several outlets reported; empty for one."""
    if len(reporters) < 2:
        return ""
    names = ", ".join(escape(shorten(r, 60)) for r in capped(reporters, SOURCE_NAMES))
    return f"*{plural(len(reporters), 'source')}*: {names}"


def render_slack(alert: Alert, state: MessageState | None = None, *, actions: bool = False) -> SlackMessage:
    """The alert; with ``actions`` its buttons, and under it ``state`` (who claimed, muted …)."""
    shown = shorten(alert.title, TITLE_LIMIT)
    title = emphasize(shown, [b for b in alert.title_bold if b[1] <= len(shown) - (shown != alert.title)])
    title = title or "(untitled)"
    # The link label carries the bold matched words; the whole title in bold would hide them.
    heading = f"<{escape_url(alert.url)}|{title}>" if alert.url else title
    if len(heading) > BLOCK_TEXT_LIMIT:  # an absurdly long link: the title alone, rather than a broken link
        heading = title
    watchlists = ", ".join(
        w if w.startswith("+") else f"`{escape(shorten(w, 80))}`"
        for w in capped(alert.watchlists, WATCHLIST_NAMES)
    )
    context = [escape(_source_label(alert)), slack_time(alert.published)]
    if watchlists:
        context.append(f"watchlists: {watchlists}")
    if alert.summary.text:
        summary = emphasize(alert.summary.text, alert.summary.bold)
    elif alert.headline_only:
        summary = "_Headline only: the source gives no summary._"
    else:
        summary = "_No summary available._"
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": fit(heading)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(" · ".join(context))}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": fit(summary)}},
    ]
    why = [line for line in (matched_line(alert), sources_line(alert.reporters)) if line]
    if why:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(line)} for line in why]}
        )
    if state is not None and (lines := state.lines()):
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": fit(" · ".join(lines))}]})
    if actions:
        blocks += alert_buttons(alert.story_id, state.triage if state else None)
    return SlackMessage(text=fallback_text(alert), blocks=blocks)


def alert_buttons(story_id: int, triage: str | None = None) -> list[dict]:
    """The controls for an alert in triage state ``triage``: they change as the state does."""

    def button(action_id: str, *, primary: bool = False) -> dict:
        b = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": TRIAGE_BUTTONS[action_id]},
            "value": str(story_id),
        }
        return {**b, "style": "primary"} if primary else b

    if triage == "done":
        elements = [button("alert_reopen")]
    elif triage in ("claimed", "escalated"):
        elements = [button("alert_unclaim"), button("alert_done", primary=True)]
    else:
        elements = [button("alert_claim", primary=True), button("alert_done")]
    options = [
        {"text": {"type": "plain_text", "text": label}, "value": f"{choice}|{story_id}"}
        for choice, label in MORE_CHOICES.items()
    ]
    elements.append({"type": "overflow", "action_id": MORE_ACTION, "options": options})
    return [{"type": "actions", "block_id": "triage", "elements": elements}]


def render_plain(message: SlackMessage) -> SlackMessage:
    """The same message as mrkdwn text without blocks: the fallback when Slack rejects the blocks."""
    # Buttons have no plain-text form: the fallback goes without them.
    parts = [
        b["text"]["text"] if b["type"] == "section" else " · ".join(e["text"] for e in b["elements"])
        for b in message.blocks
        if b["type"] in ("section", "context")
    ]
    return SlackMessage(text=fit("\n".join(parts), TEXT_LIMIT), blocks=[])


def render_reply(alert: Alert) -> SlackMessage:
    """A later report of an already-alerted story, for the story's thread."""
    title = escape(shorten(alert.title, TITLE_LIMIT)) or "(untitled)"
    link = f"<{escape_url(alert.url)}|{title}>" if alert.url else title
    line = f"Also reported by *{escape(alert.outlet or alert.source)}* — {link}"
    if alert.watchlists:
        line += " · " + ", ".join(
            w if w.startswith("+") else f"`{escape(shorten(w, 80))}`"
            for w in capped(alert.watchlists, WATCHLIST_NAMES)
        )
    text = f"Also reported by {escape(alert.outlet or alert.source)} — {title}"
    split = {
        "type": "button",
        "action_id": SPLIT_ACTION,
        "text": {"type": "plain_text", "text": "Not this story"},
        "value": str(alert.id),  # a hint only: the reply is found by its channel and ts
    }
    return SlackMessage(
        text=text,
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": fit(line)}, "accessory": split}],
    )


def render_moved(alert: Alert, link: str | None, user: str) -> SlackMessage:
    """A thread reply after "Not this story": where its item went, and who moved it."""
    title = escape(shorten(alert.title, TITLE_LIMIT)) or "(untitled)"
    where = f"<{escape_url(link)}|its own alert>" if link else "its own alert"
    line = f"~{escape(alert.outlet or alert.source)} — {title}~"
    note = f"Not this story: moved to {where} by {mention(user)}."
    return SlackMessage(
        text=f"Moved to its own alert by {mention(user)}: {title}",
        blocks=[
            {"type": "section", "text": {"type": "mrkdwn", "text": fit(line)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(note)}]},
        ],
    )


def render_folded(alert: Alert, target_title: str, link: str | None, user: str) -> SlackMessage:
    """A story's top-level alert after "Same story as…": the story it joined, and who folded it.
    Without buttons: the story is triaged on the alert it was folded into."""
    title = escape(shorten(alert.title, TITLE_LIMIT)) or "(untitled)"
    heading = f"<{escape_url(alert.url)}|{title}>" if alert.url else title
    if len(heading) > BLOCK_TEXT_LIMIT:
        heading = title
    target = escape(shorten(target_title, 150)) or "(untitled)"
    into = f"<{escape_url(link)}|{target}>" if link else f"“{target}”"
    note = f"Same story as {into}: folded into its thread by {mention(user)}."
    return SlackMessage(
        text=f"{title} — folded into “{target}” by {mention(user)}",
        blocks=[
            {"type": "section", "text": {"type": "mrkdwn", "text": fit(heading)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(note)}]},
        ],
    )


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
    text = plain_times("\n".join(parts)).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
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
