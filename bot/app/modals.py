"""The dialogs an alert's menu opens (Block Kit modal views, pure dicts): Escalate, Mute and Same story as….

Each carries where the alert is in ``private_metadata`` ("<channel>|<ts>"), read back with
``alert_of`` when the form is submitted; bot/slack/listeners/actions.py opens and answers them.
"""

from __future__ import annotations

import re

from bot.alerts.render import escape, plural, shorten
from bot.app.triage import SEVERITIES

ESCALATE = "escalate_form"  # callback_id of the Escalate modal
MUTE = "mute_form"  # callback_id of the Mute modal
SAME_STORY = "same_story_form"  # callback_id of the Same story as… modal
_WHERE = re.compile(r"^([CGD][A-Z0-9]{1,20})\|(\d{1,12}\.\d{1,8})$")
_DURATIONS = {"24h": "24 hours", "7d": "7 days", "forever": "Until unmuted"}


def alert_of(metadata: str) -> tuple[str, str] | None:
    """(channel, message ts) from a modal's private_metadata; None when it is not one we made."""
    m = _WHERE.match(metadata[:64])
    return (m.group(1), m.group(2)) if m else None


def _text(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def _option(value: str, label: str) -> dict:
    return {"text": _text(label), "value": value}


def escalate_modal(channel: str, ts: str, title: str, default_channel: str | None) -> dict:
    channel_input: dict = {
        "type": "conversations_select",
        "action_id": "to",
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
    }
    if default_channel:
        channel_input["initial_conversation"] = default_channel
    return {
        "type": "modal",
        "callback_id": ESCALATE,
        "private_metadata": f"{channel}|{ts}",
        "title": _text("Escalate alert"),
        "submit": _text("Escalate"),
        "close": _text("Cancel"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(shorten(title, 250))}*"}},
            {
                "type": "input",
                "block_id": "reason",
                "label": _text("Reason"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "reason",
                    "multiline": True,
                    "max_length": 1000,
                },
            },
            {
                "type": "input",
                "block_id": "severity",
                "label": _text("Severity"),
                "element": {
                    "type": "static_select",
                    "action_id": "severity",
                    "initial_option": _option("medium", "Medium"),
                    "options": [_option(s, s.capitalize()) for s in SEVERITIES],
                },
            },
            {
                "type": "input",
                "block_id": "to",
                "optional": True,
                "label": _text("Escalate to channel"),
                "hint": _text("Empty: the escalation channel set in the config file."),
                "element": channel_input,
            },
        ],
    }


def mute_modal(channel: str, ts: str, kind: str, sources: list[str]) -> dict:
    """Confirm a mute: how long, and for a source which (the lead one or all of the story's)."""
    blocks: list[dict] = []
    if kind == "story":
        what = [_option("story", "This story's follow-ups")]
        intro = "No more follow-ups of this story in this channel."
    else:
        what = [_option("source", f"Source {shorten(sources[0], 60)}")]
        if len(sources) > 1:
            what.append(_option("all_sources", f"All {plural(len(sources), 'source')} of this story"))
        intro = "No more alerts from the source in this channel, for any story."
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": intro}})
    blocks.append(
        {
            "type": "input",
            "block_id": "target",
            "label": _text("Mute"),
            "element": {
                "type": "radio_buttons",
                "action_id": "target",
                "initial_option": what[0],
                "options": what,
            },
        }
    )
    durations = [_option(k, v) for k, v in _DURATIONS.items()]
    blocks.append(
        {
            "type": "input",
            "block_id": "duration",
            "label": _text("For"),
            "element": {
                "type": "radio_buttons",
                "action_id": "duration",
                "initial_option": durations[0],
                "options": durations,
            },
        }
    )
    return {
        "type": "modal",
        "callback_id": MUTE,
        "private_metadata": f"{channel}|{ts}",
        "title": _text("Mute in this channel"),
        "submit": _text("Mute"),
        "close": _text("Cancel"),
        "blocks": blocks,
    }


def same_story_modal(channel: str, ts: str, title: str, options: list[tuple[str, str]]) -> dict:
    """Pick the recent alert of this channel whose story this alert's story is (``options``:
    (story id, label) pairs, already within Slack's 100 options of 75 characters)."""
    return {
        "type": "modal",
        "callback_id": SAME_STORY,
        "private_metadata": f"{channel}|{ts}",
        "title": _text("Same story as…"),
        "submit": _text("Fold into it"),
        "close": _text("Cancel"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(shorten(title, 250))}*"}},
            {
                "type": "input",
                "block_id": "target",
                "label": _text("is the same story as"),
                "hint": _text("Its reports go to that alert's thread; this alert says where they went."),
                "element": {
                    "type": "static_select",
                    "action_id": "target",
                    "placeholder": _text("A recent alert in this channel"),
                    "options": [_option(value, label) for value, label in options],
                },
            },
        ],
    }


def submitted(values: dict, block: str) -> str:
    """What the form's ``block`` input holds, as text ("" when empty or of an unknown shape)."""
    state = (values.get(block) or {}).get(block) or {}
    if not isinstance(state, dict):
        return ""
    if isinstance(state.get("selected_option"), dict):
        return str(state["selected_option"].get("value") or "")
    return str(state.get("value") or state.get("selected_conversation") or "")


WATCHLIST = "watchlist_form"  # callback_id of the Home tab's watchlist forms
WATCHLIST_FORMS = {  # kind -> (title, submit label, the command it runs)
    "add": ("Add a watchlist", "Add", "watchlist add"),
    "edit": ("Edit a watchlist", "Save", "watchlist edit"),
    "test": ("Test a query", "Test", "query test"),
}
WATCHLIST_ADMIN = ("add", "edit")  # forms that change the catalog: admins only


def watchlist_modal(kind: str) -> dict:
    """Home's form to add or edit a watchlist (admins) or to test a query (anyone)."""
    title, submit, _ = WATCHLIST_FORMS[kind]
    blocks: list[dict] = []
    if kind != "test":
        blocks.append(
            {
                "type": "input",
                "block_id": "name",
                "label": _text("Name"),
                "hint": _text("Letters, digits, - and _, up to 40 characters."),
                "element": {"type": "plain_text_input", "action_id": "name", "max_length": 40},
            }
        )
    blocks.append(
        {
            "type": "input",
            "block_id": "query",
            "label": _text("Query"),
            "hint": _text('For example: sextort* OR "sexual extortion"'),
            "element": {
                "type": "plain_text_input",
                "action_id": "query",
                "multiline": True,
                "max_length": 2000,
            },
        }
    )
    return {
        "type": "modal",
        "callback_id": WATCHLIST,
        "private_metadata": kind,
        "title": _text(title),
        "submit": _text(submit),
        "close": _text("Cancel"),
        "blocks": blocks,
    }


def watchlist_command(kind: str, values: dict) -> str | None:
    """The `/newsalert` command line a submitted watchlist form stands for; None for an odd form."""
    if kind not in WATCHLIST_FORMS:
        return None
    query = " ".join(submitted(values, "query").split())
    name = submitted(values, "name").strip() if kind != "test" else ""
    return " ".join(part for part in (WATCHLIST_FORMS[kind][2], name, query) if part)


def notice_modal(title: str, mrkdwn: str) -> dict:
    """A modal that only says something (a result, a refusal)."""
    return {
        "type": "modal",
        "title": _text(shorten(title, 24)),
        "close": _text("Close"),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": shorten(mrkdwn, 3000)}}],
    }
