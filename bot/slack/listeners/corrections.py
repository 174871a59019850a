"""Story corrections in Slack: the "Not this story" button on a thread reply, and "Same story as…"
(the alert menu's choice, or the message shortcut) with its modal; bot.app.corrections does the work.
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.alerts.render import SPLIT_ACTION
from bot.app import corrections, modals
from bot.app.context import AppContext
from bot.slack.workspace import SlackWorkspace

log = logging.getLogger("newsalert.slack")

SHORTCUT = "same_story"  # callback_id of the message shortcut (manifest.yml)


def register(app: App, ctx: AppContext) -> None:
    @app.action(SPLIT_ACTION)
    def not_this_story(ack: Ack, body: dict, client: WebClient) -> None:
        ack()
        where = where_of(body)
        if where is None:
            return
        user = body["user"]["id"]
        result = corrections.split(
            user=user, channel=where[0], message_ts=where[1], ctx=ctx, workspace=SlackWorkspace(client)
        )
        apply(result, client, where[0], user, "not this story")

    @app.shortcut(SHORTCUT)
    def same_story_shortcut(ack: Ack, body: dict, client: WebClient) -> None:
        ack()
        channel = str((body.get("channel") or {}).get("id") or "")
        ts = str((body.get("message") or {}).get("ts") or "")
        if channel and ts:
            open_same_story(body, channel, ts, client, ctx)

    @app.view(modals.SAME_STORY)
    def same_story_submitted(ack: Ack, body: dict, view: dict, client: WebClient) -> None:
        ack()
        where, user = modals.alert_of(str(view.get("private_metadata") or "")), body["user"]["id"]
        if where is None:
            return
        values = (view.get("state") or {}).get("values") or {}
        result = corrections.merge(
            user=user,
            channel=where[0],
            message_ts=where[1],
            target=modals.submitted(values, "target")[:40],
            ctx=ctx,
            workspace=SlackWorkspace(client),
        )
        apply(result, client, where[0], user, "same story")


def where_of(body: dict) -> tuple[str, str] | None:
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    return (str(channel), str(ts)) if channel and ts else None


def open_same_story(body: dict, channel: str, ts: str, client: WebClient, ctx: AppContext) -> None:
    """The Same story as… modal for the alert ``ts``: the menu's choice and the shortcut open it."""
    user = body["user"]["id"]
    menu = corrections.merge_menu(ctx, channel, ts)
    if menu is None:
        notice(client, channel, user, "“Same story as…” works on a story's top-level alert from newsalert.")
        return
    title, options = menu
    if not options:
        notice(client, channel, user, "No other recent alert in this channel to fold it into.")
        return
    try:
        client.views_open(
            trigger_id=body["trigger_id"], view=modals.same_story_modal(channel, ts, title, options)
        )
    except SlackApiError as e:
        log.warning("views.open same story refused: %s", e.response.get("error"))
        notice(client, channel, user, "Slack did not open the form; try the menu again.")


def apply(result: corrections.Correction, client: WebClient, channel: str, user: str, what: str) -> None:
    """Change the messages the correction changed, then tell the person who clicked."""
    text = result.notice
    for edit in result.edits:
        try:
            client.chat_update(
                channel=edit.channel, ts=edit.ts, text=edit.message.text, blocks=edit.message.blocks
            )
        except SlackApiError as e:  # recorded all the same; the deliverer's next update redraws parents
            log.warning("%s: chat.update channel=%s refused: %s", what, edit.channel, e.response.get("error"))
        except OSError as e:
            log.warning("%s: chat.update channel=%s failed: %s", what, edit.channel, e)
    if text:
        notice(client, channel, user, text)


def notice(client: WebClient, channel: str, user: str, text: str) -> None:
    try:
        client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as e:
        log.warning("ephemeral notice failed: %s", e.response.get("error"))
