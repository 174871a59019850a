"""Bolt listeners, by kind. ``register_listeners`` wires them all to one App."""

from __future__ import annotations

from slack_bolt import App

from bot.app.context import AppContext
from bot.slack.listeners import actions, commands, corrections, events, views


def register_listeners(app: App, ctx: AppContext) -> None:
    commands.register(app, ctx)
    actions.register(app, ctx)
    corrections.register(app, ctx)
    events.register(app, ctx)
    views.register(app, ctx)
