"""Events: App Home is drawn afresh each time someone opens it."""

from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient

from bot.app.context import AppContext
from bot.slack.listeners.views import publish_home


def register(app: App, ctx: AppContext) -> None:
    @app.event("app_home_opened")
    def home_opened(event: dict, client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            publish_home(client, event["user"], ctx)
