"""The controls on an alert, without Slack: claim/unclaim, done/reopen, escalate, mute, not relevant.

A click is recorded in SQLite (triage, mutes, feedback, audit) and answered with the alert as it
should now read (render.MessageState under it: who did what), any message to post (an
escalation) and a note for the person who clicked. bot/slack/listeners/actions.py does the posting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from bot.alerts.compose import render_story_post
from bot.alerts.render import (
    TRIAGE_BUTTONS,
    SlackMessage,
    escape,
    escape_url,
    format_time,
    mention,
    plural,
    shorten,
)
from bot.app.context import AppContext, Workspace
from bot.model import StoryPost
from bot.store import Store

ACTIONS = (*TRIAGE_BUTTONS, "alert_not_relevant")
_STATES = {
    "alert_claim": "claimed",
    "alert_unclaim": "unclaimed",
    "alert_done": "done",
    "alert_reopen": "reopened",
}
MUTE_DURATIONS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "forever": None}
MUTE_TARGETS = ("story", "source", "all_sources")
SEVERITIES = ("low", "medium", "high", "critical")
REASON_LIMIT = 1000  # characters of an escalation reason kept (Slack's input allows 3,000)


@dataclass(frozen=True)
class Post:
    channel: str
    text: str  # mrkdwn; posted with unfurls off


@dataclass
class Click:
    message: SlackMessage | None = None  # the clicked alert, re-rendered (chat.update)
    posts: list[Post] = field(default_factory=list)
    notice: str | None = None  # to the person who clicked only


def _post_of(store: Store, channel: str, message_ts: str, value: str) -> StoryPost | None:
    # The message is found by where it is, not by the button's value: a value is only a hint.
    post = store.stories.story_post_at(channel, message_ts)
    if post is None and value.isdigit() and len(value) <= 18:  # a story id, not a 5,000-digit one
        post = store.stories.story_post(int(value), channel)
    return post


GONE = "newsalert has no record of this alert any more."


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
    """Apply one button click (a triage step, or Not relevant) on the alert ``message_ts``."""
    if action not in ACTIONS:
        return Click(notice="That button is not one newsalert knows.")
    now = ctx.now()
    with ctx.store() as store:
        post = _post_of(store, channel, message_ts, value)
        if post is None:
            return Click(notice=GONE)
        item, _ = store.items.item(post.item_id)
        result = Click()
        with store.transaction():
            if action in _STATES:
                store.people.set_triage(post.item_id, channel, _STATES[action], user, now)
                detail = f"story {post.story_id}: {shorten(item.title, 120)}"
                store.people.record_audit(user, channel, action.removeprefix("alert_"), detail, now)
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
    return result


def escalate(
    *,
    user: str,
    channel: str,
    message_ts: str,
    reason: str,
    severity: str,
    to_channel: str | None,
    ctx: AppContext,
    workspace: Workspace,
) -> Click:
    """The Escalate modal was submitted: record it and say what to post where."""
    target = to_channel or ctx.settings.escalation_channel
    if not target:
        return Click(
            notice="No escalation channel is set and none was chosen: pick one in the form, or an admin "
            "sets `[slack] escalation_channel` in the config file."
        )
    severity = severity if severity in SEVERITIES else "medium"
    reason = " ".join(reason.split())[:REASON_LIMIT]
    now = ctx.now()
    with ctx.store() as store:
        post = _post_of(store, channel, message_ts, "")
        if post is None:
            return Click(notice=GONE)
        item, _ = store.items.item(post.item_id)
        with store.transaction():
            store.people.set_triage(post.item_id, channel, "escalated", user, now)
            detail = f"story {post.story_id} to {target} ({severity}): {shorten(reason, 200)}"
            store.people.record_audit(user, channel, "escalate", detail, now)
        message = render_story_post(store, post, now)
    link = workspace.permalink(channel, message_ts) or item.url
    title = escape(shorten(item.title, 200)) or "(untitled)"
    alert = f"<{escape_url(link)}|{title}>" if link else title
    text = (
        f":rotating_light: *{severity.capitalize()}* — {mention(user)} escalated an alert from "
        f"<#{channel}>: {alert}\n>{escape(reason) or '_no reason given_'}"
    )
    return Click(message=message, posts=[Post(target, text)], notice=f"Escalated to <#{target}>.")


def mute(
    *,
    user: str,
    channel: str,
    message_ts: str,
    target: str,
    duration: str,
    ctx: AppContext,
) -> Click:
    """The mute dialog was confirmed: mute the story, its lead source or all its sources here."""
    if target not in MUTE_TARGETS or duration not in MUTE_DURATIONS:
        return Click(notice="That mute is not one newsalert offers; use the alert's menu again.")
    now = ctx.now()
    span = MUTE_DURATIONS[duration]
    until = now + span if span else None
    how_long = f" until {format_time(until)}" if until else ""
    with ctx.store() as store:
        post = _post_of(store, channel, message_ts, "")
        if post is None:
            return Click(notice=GONE)
        item, _ = store.items.item(post.item_id)
        with store.transaction():
            if target == "story":
                store.people.mute(channel, "story", str(post.story_id), user, now, until)
                store.people.record_audit(
                    user, channel, "mute story", f"story {post.story_id} {duration}: {item.title}", now
                )
                notice = f"Muted{how_long}: no follow-ups of this story in this channel."
            else:
                names = [item.source]
                if target == "all_sources":
                    names = list(
                        dict.fromkeys(
                            [item.source, *(i.source for _, i, _ in store.stories.story_items(post.story_id))]
                        )
                    )
                for name in names:
                    store.people.mute(channel, "source", name, user, now, until)
                    store.people.record_audit(user, channel, "mute source", f"{name} {duration}", now)
                shown = escape(names[0]) if len(names) == 1 else plural(len(names), "source")
                notice = (
                    f"No alerts from {shown} in this channel{how_long}. "
                    "`/newsalert list` shows the mutes; `/newsalert unmute source NAME` undoes one."
                )
        message = render_story_post(store, post, now)
    return Click(message=message, notice=notice)


def mutable_sources(ctx: AppContext, channel: str, message_ts: str) -> list[str] | None:
    """The sources (feed names, what a source mute names) of the alert's story, its own first; None
    when newsalert has no record of the alert."""
    with ctx.store() as store:
        post = _post_of(store, channel, message_ts, "")
        if post is None:
            return None
        item, _ = store.items.item(post.item_id)
        return list(
            dict.fromkeys([item.source, *(i.source for _, i, _ in store.stories.story_items(post.story_id))])
        )
