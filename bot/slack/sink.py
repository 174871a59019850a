"""The Slack Web API side of delivery: SlackSink, on clients from bot/slack/client.py (the one factory)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.alerts.render import MessageState, SlackMessage, render_plain, render_reply, render_slack
from bot.alerts.sink import METADATA_EVENT, ConsoleSink, RateLimiter, Sink, alert_payload
from bot.config import Settings
from bot.errors import Rejected, RetryLater, SlackAuthError
from bot.model import Alert
from bot.slack.client import web_client

log = logging.getLogger("newsalert")

# Errors that no retry will fix until a human acts (re-install, re-invite, unarchive).
AUTH_ERRORS = {
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "org_login_required",
    "ekm_access_denied",
}


class SlackSink:
    name = "slack"
    paced = True

    def __init__(self, token: str, base_url: str, *, timeout: int = 30):
        # Posts get no automatic retry: a retried post whose first answer was lost would post twice.
        # The outbox retries them instead, after looking for the first one (find_posted).
        self.client = web_client(token, base_url, posts=True, timeout=timeout)
        self.reachable = False  # set by every answered call, cleared by every unanswered one
        # Reads and chat.update are idempotent, so these may retry on their own: rate limits
        # (honouring Retry-After), 5xx, and dropped connections.
        self.reader = web_client(token, base_url, timeout=timeout)
        # chat.update is Tier 3 (about 50 a minute): a poll that threads 70 follow-ups would update
        # their parents faster than that, so updates are paced per channel like posts.
        self.update_pace = RateLimiter(rate=1 / 1.2)

    def check_auth(self) -> dict:
        """auth.test once at start so a bad token fails loudly rather than on every alert."""
        return self._call(self.reader.auth_test).data

    def post(self, alert: Alert, *, plain: bool = False) -> str:
        message = render_slack(alert, actions=True)  # triage and feedback buttons on every alert
        return self._post(alert, render_plain(message) if plain else message)

    def reply(self, alert: Alert, parent: Alert, thread_ts: str, *, plain: bool = False) -> str:
        message = render_reply(alert)
        return self._post(alert, render_plain(message) if plain else message, thread_ts=thread_ts)

    def update(self, parent: Alert, ts: str, state: MessageState | None = None) -> None:
        message = render_slack(parent, state, actions=True)
        self.update_pace.wait(parent.channel)
        self._call(
            self.reader.chat_update, channel=parent.channel, ts=ts, text=message.text, blocks=message.blocks
        )

    def edit(self, channel: str, ts: str, message: SlackMessage) -> None:
        self.update_pace.wait(channel)
        self._call(self.reader.chat_update, channel=channel, ts=ts, text=message.text, blocks=message.blocks)

    def permalink(self, channel: str, ts: str) -> str | None:
        try:
            return str(self._call(self.reader.chat_getPermalink, channel=channel, message_ts=ts)["permalink"])
        except (RetryLater, Rejected) as e:  # the note goes without its link rather than not at all
            log.warning("no permalink channel=%s ts=%s: %s", channel, ts, e)
            return None

    def find_posted(self, alert: Alert, since: datetime, thread_ts: str | None) -> str | None:
        return self.find_message(
            alert.channel, since, METADATA_EVENT, alert_payload(alert), thread_ts=thread_ts
        )

    def post_message(
        self,
        channel: str,
        message: SlackMessage,
        event_type: str,
        payload: dict,
        *,
        thread_ts: str | None = None,
    ) -> str:
        """Post one message, text only and unfurls off, tagged with metadata to find it again."""
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        response = self._call(
            self.client.chat_postMessage,
            channel=channel,
            text=message.text,
            blocks=message.blocks or None,
            unfurl_links=False,
            unfurl_media=False,
            metadata={"event_type": event_type, "event_payload": payload},
            **extra,
        )
        return str(response["ts"])

    def find_message(
        self, channel: str, since: datetime, event_type: str, payload: dict, *, thread_ts: str | None = None
    ) -> str | None:
        """The ts of a message this bot posted with this metadata since ``since``, if any.

        Needs channels:history (and groups:history for private channels) to read metadata.
        """
        kwargs: dict[str, Any] = {
            "channel": channel,
            "include_all_metadata": True,
            "limit": 200,
            "oldest": f"{since.timestamp():.6f}",
        }
        if thread_ts:
            response = self._call(self.reader.conversations_replies, ts=thread_ts, **kwargs)
        else:
            response = self._call(self.reader.conversations_history, **kwargs)
        for message in response.get("messages", []):
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == event_type and (metadata.get("event_payload") or {}) == payload:
                return str(message["ts"])
        return None

    def _post(self, alert: Alert, message: SlackMessage, thread_ts: str | None = None) -> str:
        return self.post_message(
            alert.channel, message, METADATA_EVENT, alert_payload(alert), thread_ts=thread_ts
        )

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        """Call the Web API, turning its failures into RetryLater / Rejected / SlackAuthError."""
        try:
            response = method(**kwargs)
            self.reachable = True
            return response
        except SlackApiError as e:
            # Slack answered (a 5xx is Slack not working; anything else, Slack is there).
            self.reachable = e.response.status_code < 500
            error = e.response.get("error", "unknown_error")
            if error in AUTH_ERRORS:
                raise SlackAuthError(f"Slack rejected the bot token: {error}") from None
            if e.response.status_code == 429 or error == "ratelimited":
                retry_after = _seconds(e.response.headers.get("Retry-After"))
                raise RetryLater(
                    f"rate limited (Retry-After {retry_after}s)", retry_after=retry_after
                ) from None
            if e.response.status_code >= 500:
                raise RetryLater(f"Slack HTTP {e.response.status_code}: {error}") from None
            raise Rejected(error) from None
        except Exception as e:  # no answer: refused, reset, timed out — it may or may not have arrived
            self.reachable = False
            raise RetryLater(f"{type(e).__name__}: {e}", maybe_posted=True) from None


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value or 1))
    except ValueError:
        return 1.0


def make_sink(settings: Settings) -> Sink:
    """Slack when a token is set (checked with auth.test), else the console."""
    if not settings.slack_token:
        log.warning("SLACK_BOT_TOKEN is not set: alerts are printed to the console")
        return ConsoleSink()
    sink = SlackSink(settings.slack_token, settings.slack_api_url)
    try:
        who = sink.check_auth()
        log.info(
            "slack connected team=%r bot_user=%r api=%s",
            who.get("team"),
            who.get("user"),
            settings.slack_api_url,
        )
    except RetryLater as e:
        # Unreachable is not unauthorized: keep polling, alerts wait in the outbox.
        log.warning("slack unreachable, alerts will queue: %s", e)
    return sink
