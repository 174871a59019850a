"""`/newsalert`: ack at once (Slack wants it within 3 s), then run the command and respond."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.app.commands import handle, pending_message
from bot.app.context import COMMAND, AppContext, Reply
from bot.slack.workspace import SlackWorkspace

log = logging.getLogger("newsalert.slack")


def register(app: App, ctx: AppContext) -> None:
    @app.command(COMMAND)
    def newsalert(ack: Ack, command: dict, respond: Respond, client: WebClient) -> None:
        text = command.get("text") or ""
        # The ack is the HTTP answer (or the Socket Mode envelope ack); the real reply follows
        # through response_url, so a slow command (a fetch, a search) never misses the 3 s.
        pending = pending_message(text)
        if pending:
            ack(text=pending)
        else:
            ack()
        user, channel = command["user_id"], command["channel_id"]
        try:
            reply = handle(text, user=user, channel=channel, ctx=ctx, workspace=SlackWorkspace(client))
        except Exception:
            log.exception("command failed user=%s channel=%s text=%r", user, channel, text)
            reply = Reply("Sorry, that failed on newsalert's side; the error is in its log.")
        respond(
            text=reply.text,
            response_type="in_channel" if reply.in_channel else "ephemeral",
            unfurl_links=False,
            unfurl_media=False,
        )
