"""The buttons on an alert, without Slack: claim, done, escalate, mute story, mute source, not relevant.

A click is recorded in SQLite (triage, mutes, feedback, audit) and answered with the alert as it
should now read (render.MessageState under it: who did what), any message to post (an
escalation) and a note for the person who clicked. bot/slack/listeners/actions.py does the posting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.alerts.compose import render_story_post
from bot.alerts.render import (
    FEEDBACK_BUTTONS,
    TRIAGE_BUTTONS,
    SlackMessage,
    escape,
    escape_url,
    mention,
    shorten,
)
from bot.app.context import AppContext, Workspace

ACTIONS = (*TRIAGE_BUTTONS, *FEEDBACK_BUTTONS)
_STATES = {"alert_claim": "claimed", "alert_done": "done", "alert_escalate": "escalated"}


@dataclass(frozen=True)
class Post:
    channel: str
    text: str  # mrkdwn; posted with unfurls off


@dataclass
class Click:
    message: SlackMessage | None = None  # the clicked alert, re-rendered (chat.update)
    posts: list[Post] = field(default_factory=list)
    notice: str | None = None  # to the person who clicked only


def click(
    action: str,
    *,
    user: str,
    channel: str,
    message_ts: str,
    value: str,
    ctx: AppContext,
    workspace: Workspace,
) -> Click:
    """Apply one button click on the alert ``message_ts`` in ``channel``."""
    if action not in ACTIONS:
        return Click(notice="That button is not one newsalert knows.")
    now = ctx.now()
    with ctx.store() as store:
        # The message is found by where it is, not by the button's value: a value is only a hint.
        post = store.stories.story_post_at(channel, message_ts)
        if post is None and value.isdigit() and len(value) <= 18:  # a story id, not a 5,000-digit one
            post = store.stories.story_post(int(value), channel)
        if post is None:
            return Click(notice="newsalert has no record of this alert any more.")
        item, _ = store.items.item(post.item_id)
        result = Click()
        with store.transaction():
            if action == "alert_escalate" and not ctx.settings.escalation_channel:
                return Click(
                    notice="No escalation channel is set: an admin sets `[slack] escalation_channel` "
                    "in the config file."
                )
            if action in _STATES:
                store.people.set_triage(post.item_id, channel, _STATES[action], user, now)
                detail = f"story {post.story_id}: {shorten(item.title, 120)}"
                store.people.record_audit(user, channel, action.removeprefix("alert_"), detail, now)
            elif action == "alert_mute_story":
                store.people.mute(channel, "story", str(post.story_id), user, now)
                store.people.record_audit(
                    user, channel, "mute story", f"story {post.story_id}: {item.title}", now
                )
                result.notice = "Muted: no more follow-ups of this story in this channel."
            elif action == "alert_mute_source":
                store.people.mute(channel, "source", item.source, user, now)
                store.people.record_audit(user, channel, "mute source", item.source, now)
                result.notice = (
                    f"No more alerts from {escape(item.source)} in this channel. "
                    f"`/newsalert unmute source {escape(item.source)}` undoes it."
                )
            else:
                store.people.add_feedback(post.item_id, channel, post.watchlists, user, "not_relevant", now)
                store.people.record_audit(
                    user, channel, "not relevant", f"{', '.join(post.watchlists)}: {item.title}", now
                )
                result.notice = (
                    "Thanks: counted against "
                    + ", ".join(f"`{escape(w)}`" for w in post.watchlists)
                    + " in `/newsalert status`, so its query can be tuned."
                )
        result.message = render_story_post(store, post, now)
    if action == "alert_escalate":
        assert ctx.settings.escalation_channel
        link = workspace.permalink(channel, message_ts) or item.url
        title = escape(shorten(item.title, 200)) or "(untitled)"
        alert = f"<{escape_url(link)}|{title}>" if link else title
        result.posts.append(
            Post(
                ctx.settings.escalation_channel,
                f":rotating_light: {mention(user)} escalated an alert from <#{channel}>: {alert}",
            )
        )
        result.notice = f"Escalated to <#{ctx.settings.escalation_channel}>."
    return result
