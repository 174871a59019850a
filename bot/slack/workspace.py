"""bot.app.context.Workspace answered by the Slack Web API."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger("newsalert.slack")

MAX_MEMBERS = 5000  # members read to decide whether a user is in a private channel


class SlackWorkspace:
    """One per request: it caches conversations.info and users.info answers for that request only."""

    def __init__(self, client: WebClient):
        self.client = client
        self._channels: dict[str, dict] = {}
        self._admins: dict[str, bool] = {}

    def is_workspace_admin(self, user_id: str) -> bool:
        # users:read. Admins and owners may manage watchlists and sources.
        if user_id not in self._admins:
            user = self.client.users_info(user=user_id)["user"]
            self._admins[user_id] = bool(
                user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner")
            )
        return self._admins[user_id]

    def _info(self, channel_id: str) -> dict:
        if channel_id not in self._channels:
            # channels:read / groups:read; a private channel the bot is not in is "channel_not_found".
            self._channels[channel_id] = self.client.conversations_info(channel=channel_id)["channel"]
        return self._channels[channel_id]

    def join(self, channel_id: str) -> str | None:
        try:
            info = self._info(channel_id)
        except SlackApiError as e:
            return "it is private, or I cannot see it" if _error(e) == "channel_not_found" else _error(e)
        if info.get("is_member") or info.get("is_im"):
            return None
        # Not a member: ask to be invited rather than join by itself. Joining would need the
        # channels:join scope, and a channel's members should decide whether the bot is in it.
        if info.get("is_private") or info.get("is_mpim"):
            return "it is private and I am not a member"
        return "I am not a member of this channel"

    def can_see(self, user_id: str, channel_id: str) -> bool:
        return self.visibility(user_id, channel_id) is True

    def visibility(self, user_id: str, channel_id: str) -> bool | None:
        """can_see, and None when Slack could not say just now (rate limited, an error)."""
        try:
            info = self._info(channel_id)
        except SlackApiError as e:
            return False if _error(e) == "channel_not_found" else None
        except OSError:  # no answer at all (after the client's retries): not a "no"
            return None
        if not (info.get("is_private") or info.get("is_im") or info.get("is_mpim")):
            return True  # a public channel: anyone in the workspace can read it
        try:
            cursor, seen = None, 0
            while seen < MAX_MEMBERS:
                page = self.client.conversations_members(channel=channel_id, limit=1000, cursor=cursor)
                members = page.get("members", [])
                if user_id in members:
                    return True
                seen += len(members)
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except SlackApiError as e:
            log.warning("members of channel=%s unreadable: %s", channel_id, _error(e))
        return False

    def permalink(self, channel_id: str, ts: str) -> str | None:
        try:
            return self.client.chat_getPermalink(channel=channel_id, message_ts=ts)["permalink"]
        except SlackApiError as e:
            log.warning("no permalink channel=%s ts=%s: %s", channel_id, ts, _error(e))
            return None


def _error(e: SlackApiError) -> str:
    return str(e.response.get("error", "unknown_error"))
