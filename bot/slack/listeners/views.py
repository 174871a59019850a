"""Views: the App Home tab (views.publish), its paging buttons, and its watchlist forms (modals)."""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.app import modals
from bot.app.commands import handle
from bot.app.context import AppContext
from bot.app.home import HOME_LISTS, home_view, parse_home_page
from bot.app.replies import REFUSAL
from bot.slack.workspace import SlackWorkspace

log = logging.getLogger("newsalert.slack")
HOME = "home"  # the "channel" a change made from App Home is audited under


def publish_home(client: WebClient, user: str, ctx: AppContext, pages: dict[str, int] | None = None) -> None:
    workspace = SlackWorkspace(client)
    with ctx.store() as store:
        view = home_view(store, user, lambda channel: workspace.visibility(user, channel), ctx.now(), pages)
    client.views_publish(user_id=user, view=view)


def register(app: App, ctx: AppContext) -> None:
    # Like a Home open (events.py), a page of Home is drawn off Bolt's listener pool: it asks Slack
    # about every subscribed channel, and that pool must stay free to ack within 3 seconds.
    renders = ThreadPoolExecutor(2, thread_name_prefix="newsalert-home-page")

    def render(user: str, client: WebClient, pages: dict[str, int]) -> None:
        try:
            publish_home(client, user, ctx, pages)
        except Exception:
            log.exception("app home: could not publish a page user=%s", user)

    @app.action(re.compile(r"^home_page_"))
    def home_page(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        pages = _pages((body.get("view") or {}).get("private_metadata") or "")
        if (found := parse_home_page(str(action.get("value") or ""))) is not None:
            pages[found[0]] = found[1]
        renders.submit(render, body["user"]["id"], client, pages)

    @app.action(re.compile(r"^home_watchlist_(add|edit|test)$"))
    def watchlist_form(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        kind, user = action["action_id"].removeprefix("home_watchlist_"), body["user"]["id"]
        if kind in modals.WATCHLIST_ADMIN and not ctx.is_admin(user, SlackWorkspace(client)):
            view = modals.notice_modal("Admins only", REFUSAL)
        else:
            view = modals.watchlist_modal(kind)
        try:
            client.views_open(trigger_id=body["trigger_id"], view=view)
        except SlackApiError as e:
            log.warning("views.open watchlist %s refused: %s", kind, e.response.get("error"))

    @app.view(modals.WATCHLIST)
    def watchlist_submitted(ack: Ack, body: dict, view: dict, client: WebClient) -> None:
        kind, user = str(view.get("private_metadata") or ""), body["user"]["id"]
        command = modals.watchlist_command(kind, (view.get("state") or {}).get("values") or {})
        if command is None:
            ack()
            return
        # The same command as typed in Slack: the same checks (admins only, the name rule, the
        # query's syntax), the same audit, and its answer shown in place of the form.
        try:
            reply = handle(command, user=user, channel=HOME, ctx=ctx, workspace=SlackWorkspace(client))
            text = reply.text
        except Exception:
            log.exception("watchlist form failed user=%s command=%r", user, command)
            text = "Sorry, that failed on newsalert's side; the error is in its log."
        ack(response_action="update", view=modals.notice_modal(modals.WATCHLIST_FORMS[kind][0], text))
        if kind in modals.WATCHLIST_ADMIN:
            renders.submit(render, user, client, {})  # the list under it changed


def _pages(metadata: str) -> dict[str, int]:
    """The pages Home showed, from its private_metadata; anything odd is page 1."""
    try:
        found = json.loads(metadata[:3000])
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if k in HOME_LISTS and isinstance(v, int) and 1 <= v <= 10_000}
