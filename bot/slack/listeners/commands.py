"""`/newsalert`: ack at once (Slack wants it within 3 s), then run the command and respond.

A long answer is one page of blocks with "Next page" buttons; a click on one runs the command
again for that page and replaces the reply in place (``respond(replace_original=True)``).
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.app.commands import handle, pending_message
from bot.app.context import COMMAND, AppContext, Reply
from bot.app.paging import PAGE_ACTIONS, parse_cursor
from bot.slack.workspace import SlackWorkspace

log = logging.getLogger("newsalert.slack")

STALE_PAGE = "That page button is not one I can show any more; run the command again."


def register(app: App, ctx: AppContext) -> None:
    @app.command(COMMAND)
    def newsalert(ack: Ack, command: dict, respond: Respond, client: WebClient) -> None:
        text = command.get("text") or ""
        user, channel = command["user_id"], command["channel_id"]
        workspace = SlackWorkspace(client)
        # The ack is the HTTP answer (or the Socket Mode envelope ack); the real reply follows
        # through response_url, so a slow command (a fetch, a search) never misses the 3 s.
        pending = pending_message(text, user=user, ctx=ctx)
        if pending:
            ack(text=pending)
        else:
            ack()
        send(respond, run(text, user, channel, ctx, workspace, page=1))

    for action_id in PAGE_ACTIONS:

        @app.action(action_id)
        def page_button(ack: Ack, body: dict, action: dict, respond: Respond, client: WebClient) -> None:
            ack()
            user = body["user"]["id"]
            channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
                "channel_id", ""
            )
            cursor = parse_cursor(str(action.get("value") or ""))
            if cursor is None:
                reply = Reply(STALE_PAGE)
            else:
                reply = run(cursor.command, user, channel, ctx, SlackWorkspace(client), page=cursor.page)
            send(respond, reply, replace=True)


def run(
    text: str, user: str, channel: str, ctx: AppContext, workspace: SlackWorkspace, *, page: int
) -> Reply:
    try:
        return handle(text, user=user, channel=channel, ctx=ctx, workspace=workspace, page=page)
    except Exception:
        log.exception("command failed user=%s channel=%s text=%r", user, channel, text)
        return Reply("Sorry, that failed on newsalert's side; the error is in its log.")


def send(respond: Respond, reply: Reply, *, replace: bool = False) -> None:
    extra: dict = {"blocks": reply.blocks} if reply.blocks else {}
    if replace:
        extra["replace_original"] = True
    respond(
        text=reply.text,
        response_type="in_channel" if reply.in_channel and not replace else "ephemeral",
        unfurl_links=False,
        unfurl_media=False,
        **extra,
    )
