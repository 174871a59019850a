"""Views: publishing the App Home tab (views.publish)."""

from __future__ import annotations

from slack_sdk import WebClient

from bot.app.context import AppContext
from bot.app.home import home_view
from bot.slack.workspace import SlackWorkspace


def publish_home(client: WebClient, user: str, ctx: AppContext) -> None:
    workspace = SlackWorkspace(client)
    with ctx.store() as store:
        view = home_view(store, user, lambda channel: workspace.can_see(user, channel), ctx.now())
    client.views_publish(user_id=user, view=view)
