"""Events: App Home is drawn afresh each time someone opens it, on a small pool of its own."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from bot.app.context import AppContext
from bot.slack.listeners.views import publish_home

log = logging.getLogger("newsalert.slack")

# A Home render asks Slack about every subscribed channel (conversations.info), which can be slow
# or rate limited: it runs here, so that Bolt's listener pool stays free to ack slash commands and
# buttons within Slack's 3 seconds however many people open the Home tab at once.
HOME_THREADS = 4


def register(app: App, ctx: AppContext) -> None:
    renders = ThreadPoolExecutor(HOME_THREADS, thread_name_prefix="newsalert-home")

    def render(user: str, client: WebClient) -> None:
        try:
            publish_home(client, user, ctx)
        except Exception:  # one user's Home failing to draw must not be silent, nor stop the others
            log.exception("app home: could not publish the view user=%s", user)

    @app.event("app_home_opened")
    def home_opened(event: dict, client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            renders.submit(render, event["user"], client)
