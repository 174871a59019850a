"""The buttons on every alert: record the click (bot.triage), then update the message to show it."""

from __future__ import annotations

import logging
import re

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.app.context import AppContext
from bot.app.triage import click
from bot.slack.workspace import SlackWorkspace

log = logging.getLogger("newsalert.slack")


def register(app: App, ctx: AppContext) -> None:
    @app.action(re.compile(r"^alert_"))
    def alert_button(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        user = body["user"]["id"]
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
        if not channel or not ts:
            return  # not a click on a message (nothing of ours to update)
        result = click(
            action["action_id"],
            user=user,
            channel=channel,
            message_ts=ts,
            value=str(action.get("value") or ""),
            ctx=ctx,
            workspace=SlackWorkspace(client),
        )
        notice = result.notice
        try:
            if result.message is not None:
                client.chat_update(
                    channel=channel, ts=ts, text=result.message.text, blocks=result.message.blocks
                )
            for post in result.posts:
                client.chat_postMessage(
                    channel=post.channel, text=post.text, unfurl_links=False, unfurl_media=False
                )
        except SlackApiError as e:
            error = e.response.get("error", "unknown_error")
            log.warning("button %s: Slack refused: %s", action["action_id"], error)
            notice = f"Recorded, but Slack refused to show it: {error}."
        if notice:
            try:
                client.chat_postEphemeral(channel=channel, user=user, text=notice)
            except SlackApiError as e:
                log.warning("ephemeral notice failed: %s", e.response.get("error"))
