"""What the Slack app's core runs with, without Slack: the context, the workspace questions, a reply."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from bot.config import Settings
from bot.errors import FetchError
from bot.model import Fetched, Source
from bot.store import Store

log = logging.getLogger("newsalert.commands")

COMMAND = "/newsalert"


class Workspace(Protocol):
    """What a command needs to ask Slack. bot/slack/workspace.py answers with the Web API."""

    def is_workspace_admin(self, user_id: str) -> bool:
        """users.info: a workspace admin or owner."""
        ...

    def join(self, channel_id: str) -> str | None:
        """Make sure the bot can post in the channel; None when it can, else why not."""
        ...

    def can_see(self, user_id: str, channel_id: str) -> bool:
        """The user may see the channel (public, or a private one they are in)."""
        ...

    def permalink(self, channel_id: str, ts: str) -> str | None: ...


@dataclass(frozen=True)
class Reply:
    text: str  # mrkdwn; the fallback when there are blocks
    in_channel: bool = False  # shown to the channel: the command changed what it receives
    blocks: list[dict] | None = None  # a page of a long answer, with its paging buttons


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _nothing() -> None:
    pass


@dataclass
class AppContext:
    """What the Slack app's core logic runs with: settings, the database, and hooks to the runner."""

    settings: Settings
    # Called after sources change, so the running scheduler polls new ones without a restart.
    catalog_changed: Callable[[], None] = _nothing
    now: Callable[[], datetime] = _utcnow
    fetch: Callable[[Settings, Source], Fetched | FetchError] | None = None  # tests replace the network

    def store(self) -> Store:
        # One connection per request (`with ctx.store() as store`): listeners run on Bolt's
        # worker threads, the poll on its own, and a SQLite connection belongs to one thread.
        return Store.open(self.settings.db_path)

    def is_admin(self, user_id: str, workspace: Workspace) -> bool:
        """Listed in [slack] admins, or a workspace admin/owner per users.info: either suffices."""
        if user_id in self.settings.slack_admins:
            return True
        try:
            return workspace.is_workspace_admin(user_id)
        except Exception as e:  # Slack unreachable: refuse, and say so in the log
            log.warning("admin check failed user=%s: %s", user_id, e)
            return False


@dataclass(frozen=True)
class Invocation:
    user: str
    channel: str
    text: str
    page: int = 1  # which page of a long answer (bot.app.paging)


Handler = Callable[[str, Invocation, AppContext, Workspace], Reply]
