"""Views: publishing the App Home tab (views.publish), and its paging buttons."""

from __future__ import annotations

import json
import re

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.app.context import AppContext
from bot.app.home import HOME_LISTS, home_view, parse_home_page
from bot.slack.workspace import SlackWorkspace


def publish_home(client: WebClient, user: str, ctx: AppContext, pages: dict[str, int] | None = None) -> None:
    workspace = SlackWorkspace(client)
    with ctx.store() as store:
        view = home_view(store, user, lambda channel: workspace.visibility(user, channel), ctx.now(), pages)
    client.views_publish(user_id=user, view=view)


def register(app: App, ctx: AppContext) -> None:
    @app.action(re.compile(r"^home_page_"))
    def home_page(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        pages = _pages((body.get("view") or {}).get("private_metadata") or "")
        if (found := parse_home_page(str(action.get("value") or ""))) is not None:
            pages[found[0]] = found[1]
        publish_home(client, body["user"]["id"], ctx, pages)


def _pages(metadata: str) -> dict[str, int]:
    """The pages Home showed, from its private_metadata; anything odd is page 1."""
    try:
        found = json.loads(metadata[:3000])
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if k in HOME_LISTS and isinstance(v, int) and 1 <= v <= 10_000}
