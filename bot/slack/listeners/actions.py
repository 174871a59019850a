"""The controls on every alert: record a click (bot.app.triage), then update the message to show it.

Claim/Unclaim, Done/Reopen and the menu's Not relevant act at once; the menu's Escalate and Mute
open a modal (views.open with the click's trigger_id) and act when it is submitted; its Same story
as… opens the modal of listeners/corrections.py.
"""

from __future__ import annotations

import logging
import re

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.app import modals, triage
from bot.app.context import AppContext
from bot.slack.client import posting_client
from bot.slack.listeners import corrections
from bot.slack.workspace import SlackWorkspace

log = logging.getLogger("newsalert.slack")


def register(app: App, ctx: AppContext) -> None:
    @app.action(
        re.compile(r"^alert_(claim|unclaim|done|reopen|not_relevant|mute_story|mute_source|escalate)$")
    )
    def alert_button(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        where = _where(body)
        if where is None:
            return  # not a click on a message (nothing of ours to update)
        channel, ts = where
        action_id = action["action_id"]
        if action_id in ("alert_escalate", "alert_mute_story", "alert_mute_source"):
            # Buttons of alerts posted before the menu existed: open the same dialogs.
            _menu(action_id.removeprefix("alert_"), body, channel, ts, client, ctx)
            return
        result = triage.click(
            action_id,
            user=body["user"]["id"],
            channel=channel,
            message_ts=ts,
            value=str(action.get("value") or ""),
            ctx=ctx,
            workspace=SlackWorkspace(client),
        )
        _apply(result, client, channel, ts, body["user"]["id"], action_id)

    @app.action("alert_more")
    def alert_menu(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        where = _where(body)
        if where is None:
            return
        choice = str((action.get("selected_option") or {}).get("value") or "")[:40].partition("|")[0]
        _menu(choice, body, *where, client, ctx)

    @app.view(modals.ESCALATE)
    def escalate_submitted(ack: Ack, body: dict, view: dict, client: WebClient) -> None:
        values = (view.get("state") or {}).get("values") or {}
        reason = modals.submitted(values, "reason")
        if not reason.strip():
            ack(response_action="errors", errors={"reason": "Say why, for whoever picks it up."})
            return
        ack()
        where, user = modals.alert_of(str(view.get("private_metadata") or "")), body["user"]["id"]
        if where is None:
            return
        to = modals.submitted(values, "to")
        result = triage.escalate(
            user=user,
            channel=where[0],
            message_ts=where[1],
            reason=reason,
            severity=modals.submitted(values, "severity"),
            to_channel=to if re.fullmatch(r"[CG][A-Z0-9]{1,20}", to) else None,
            ctx=ctx,
            workspace=SlackWorkspace(client),
        )
        _apply(result, client, where[0], where[1], user, "escalate")

    @app.view(modals.MUTE)
    def mute_submitted(ack: Ack, body: dict, view: dict, client: WebClient) -> None:
        ack()
        where, user = modals.alert_of(str(view.get("private_metadata") or "")), body["user"]["id"]
        if where is None:
            return
        values = (view.get("state") or {}).get("values") or {}
        result = triage.mute(
            user=user,
            channel=where[0],
            message_ts=where[1],
            target=modals.submitted(values, "target"),
            duration=modals.submitted(values, "duration"),
            ctx=ctx,
        )
        _apply(result, client, where[0], where[1], user, "mute")


def _where(body: dict) -> tuple[str, str] | None:
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    return (channel, ts) if channel and ts else None


def _menu(choice: str, body: dict, channel: str, ts: str, client: WebClient, ctx: AppContext) -> None:
    """One of the alert menu's choices: Not relevant at once, the others through a dialog."""
    user = body["user"]["id"]
    if choice == "not_relevant":
        result = triage.click(
            "alert_not_relevant",
            user=user,
            channel=channel,
            message_ts=ts,
            value="",
            ctx=ctx,
            workspace=SlackWorkspace(client),
        )
        _apply(result, client, channel, ts, user, choice)
        return
    if choice == "same_story":
        corrections.open_same_story(body, channel, ts, client, ctx)
        return
    sources = triage.mutable_sources(ctx, channel, ts)
    if sources is None:
        _notice(client, channel, user, triage.GONE)
        return
    if choice == "escalate":
        title = ((body.get("message") or {}).get("text") or "").split(" — ")[0]
        view = modals.escalate_modal(channel, ts, title, ctx.settings.escalation_channel)
    elif choice in ("mute_story", "mute_source"):
        view = modals.mute_modal(channel, ts, choice.removeprefix("mute_"), sources)
    else:
        _notice(client, channel, user, "That menu choice is not one newsalert knows.")
        return
    try:
        client.views_open(trigger_id=body["trigger_id"], view=view)
    except SlackApiError as e:
        log.warning("views.open %s refused: %s", choice, e.response.get("error"))
        _notice(client, channel, user, "Slack did not open the form; try the menu again.")


def _apply(result: triage.Click, client: WebClient, channel: str, ts: str, user: str, what: str) -> None:
    notice = result.notice
    try:
        if result.message is not None:
            client.chat_update(channel=channel, ts=ts, text=result.message.text, blocks=result.message.blocks)
        poster = posting_client(client) if result.posts else None
        for post in result.posts:
            assert poster is not None
            poster.chat_postMessage(
                channel=post.channel, text=post.text, unfurl_links=False, unfurl_media=False
            )
    except SlackApiError as e:
        error = e.response.get("error", "unknown_error")
        log.warning("alert %s: Slack refused: %s", what, error)
        notice = f"Recorded, but Slack refused to show it: {error}."
    except OSError as e:  # the post's connection dropped: not retried, it may have gone through
        log.warning("alert %s: connection failed: %s", what, e)
        notice = "Recorded, but the connection to Slack dropped; check the channel before trying again."
    if notice:
        _notice(client, channel, user, notice)


def _notice(client: WebClient, channel: str, user: str, text: str) -> None:
    try:
        client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as e:
        log.warning("ephemeral notice failed: %s", e.response.get("error"))
