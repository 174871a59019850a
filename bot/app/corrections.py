"""Correcting the story decision from Slack, without Slack: "Not this story" on a thread reply and
"Same story as…" on a story's top-level alert.

Each correction, in one transaction: changes the stories (split_item / merge_stories), keeps the
pair as a label for `newsalert stories fit`, writes an audit row, records the messages it moved
away from (store.moves: a second click is answered, not applied again) and puts the moved alerts
back in the outbox, so the deliverer posts them where they now belong with its usual pacing,
ordering and crash reconciliation. It answers with the messages to change at once (chat.update)
and a note for the person who clicked; bot/slack/listeners/corrections.py does the Slack part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.alerts.compose import post_alert, render_story_post
from bot.alerts.render import SlackMessage, escape, escape_url, mention, plural, render_folded, shorten
from bot.app.context import AppContext, Workspace
from bot.model import StoryPost
from bot.store import Store

GONE = "newsalert has no record of this message any more."
STALE = "That choice is not one newsalert offers any more; open the alert's menu again."
MENU_OPTIONS = 100  # Slack's limit for a static_select's options
OPTION_TEXT = 75  # Slack's limit for an option's text
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{1,20}$")
_TS = re.compile(r"^\d{1,12}\.\d{1,8}$")


@dataclass(frozen=True)
class Edit:
    channel: str
    ts: str
    message: SlackMessage


@dataclass
class Correction:
    edits: list[Edit] = field(default_factory=list)  # messages to change now (chat.update)
    notice: str | None = None  # to the person who clicked only


def _where_ok(channel: str, ts: str) -> bool:
    # Channel and ts come from Slack's signed payload, but are still bounded before any lookup.
    return bool(_CHANNEL.match(channel[:32]) and _TS.match(ts[:32]))


def _already(store: Store, channel: str, ts: str, workspace: Workspace) -> str:
    """What to say about a message that is no longer a story's alert or a reply of one."""
    move = store.moves.move_at(channel, ts)
    if move is None:
        return GONE
    if move.kind == "split":
        return f"{mention(move.user_id)} already moved this report to its own alert."
    link = workspace.permalink(channel, move.target_ts) if move.target_ts else None
    where = f"<{escape_url(link)}|another story>" if link else "another story"
    return f"{mention(move.user_id)} already folded this alert into {where}."


def split(*, user: str, channel: str, message_ts: str, ctx: AppContext, workspace: Workspace) -> Correction:
    """ "Not this story" on the thread reply ``message_ts``: its item becomes a story of its own, with
    its own top-level alert in every channel that got the reply."""
    if not _where_ok(channel, message_ts):
        return Correction(notice=GONE)
    now = ctx.now()
    with ctx.store() as store:
        with store.transaction():
            found = store.outbox.sent_alert_at(channel, message_ts)
            if found is None:
                return Correction(notice=_already(store, channel, message_ts, workspace))
            _, item_id, story = found
            parent = store.stories.story_post(story, channel)
            if parent is None or parent.ts == message_ts:
                return Correction(
                    notice="“Not this story” takes a report out of a story's thread; this message is "
                    "the story's own alert (use its menu's “Same story as…” to fold it into another)."
                )
            item, _ = store.items.item(item_id)
            new_story = store.stories.split_item(item_id, now)
            # The pair an analyst judged: the reply and the thread's parent, as they saw them.
            store.story_model.record_label(item_id, parent.item_id, False, user, now)
            channels = []
            for alert_id, _, where, ts in store.outbox.sent_alerts_of([item_id]):
                post = store.stories.story_post(story, where)
                if post is not None and post.item_id == item_id:
                    # There it was the story's first alert: that message stays, as its own story's.
                    store.stories.move_story_post(story, where, new_story)
                    continue
                store.outbox.requeue_alert(alert_id, now)
                channels.append(where)
                if post is None or ts != post.ts:  # a copy folded into the parent's count had no reply
                    store.moves.add_move("split", item_id, where, ts, user, now, alert_id=alert_id)
            store.people.record_audit(
                user,
                channel,
                "not this story",
                f"item {item_id} out of story {story} into story {new_story}: {shorten(item.title, 120)}",
                now,
            )
        # The parents it left show one source fewer.
        edits = [
            Edit(p.channel, p.ts, render_story_post(store, p, now))
            for p in store.stories.story_posts_of(story)
        ]
    where = "this channel" if channels == [channel] else plural(len(channels), "channel")
    return Correction(
        edits=edits,
        notice=f"Moved to its own alert in {where}; remembered as a different story for the next "
        "`newsalert stories fit`.",
    )


def merge_menu(ctx: AppContext, channel: str, ts: str) -> tuple[str, list[tuple[str, str]]] | None:
    """The alert's title and the recent top-level alerts of its channel it could be folded into, as
    (value, label) options within Slack's limits; None when newsalert has no record of the alert."""
    if not _where_ok(channel, ts):
        return None
    with ctx.store() as store:
        post = store.stories.story_post_at(channel, ts)
        if post is None:
            return None
        title = store.items.item(post.item_id)[0].title
        latest = store.stories.latest_story_posts(limit=MENU_OPTIONS + 1, channels=[channel])
    options = [
        (
            str(p.story_id),
            shorten(" ".join(f"{p.title or '(untitled)'} — {p.outlet or p.source}".split()), OPTION_TEXT),
        )
        for p in latest
        if p.story_id != post.story_id
    ]
    return title, options[:MENU_OPTIONS]


def merge(
    *, user: str, channel: str, message_ts: str, target: str, ctx: AppContext, workspace: Workspace
) -> Correction:
    """ "Same story as…": the alert ``message_ts``'s story joins the story whose alert in the same
    channel the menu's ``target`` (a story id) names. Its reports go to that thread, here and in
    every channel that had both; its own alert says where it went."""
    if not _where_ok(channel, message_ts):
        return Correction(notice=GONE)
    if not (target.isdigit() and len(target) <= 18):
        return Correction(notice=STALE)
    now = ctx.now()
    with ctx.store() as store:
        with store.transaction():
            post = store.stories.story_post_at(channel, message_ts)
            if post is None:
                return Correction(notice=_already(store, channel, message_ts, workspace))
            into = store.stories.story_post(int(target), channel)
            if into is None:
                return Correction(notice=STALE)
            if into.story_id == post.story_id:
                return Correction(notice="It is that story already.")
            source, story = post.story_id, into.story_id
            posts = store.stories.story_posts_of(source)
            moved = store.stories.merge_stories(source, story)
            store.story_model.record_label(post.item_id, into.item_id, True, user, now)
            sent = store.outbox.sent_alerts_of(moved)
            folded: list[tuple[StoryPost, StoryPost]] = []
            kept: list[StoryPost] = []
            carried: list[str] = []  # what of the folded alert's triage now shows on the merged one
            for old in posts:
                if muter := store.people.carry_story_mute(source, story, old.channel, now):
                    carried.append(f"the story mute of {mention(muter)} in <#{old.channel}>")
                parent = store.stories.story_post(story, old.channel)
                if parent is None:
                    # A channel that never got the other story: its message now stands for both
                    # (its claim is on that message already).
                    store.stories.move_story_post(source, old.channel, story)
                    kept.append(StoryPost(story, old.channel, old.item_id, old.ts, old.watchlists))
                    continue
                if state := store.people.carry_triage(old.item_id, parent.item_id, old.channel):
                    carried.append(f"{state[0]} by {mention(state[1])} in <#{old.channel}>")
                for alert_id, _, where, _ in sent:
                    if where == old.channel:
                        store.outbox.requeue_alert(alert_id, now)
                store.stories.delete_story_post(source, old.channel)
                store.moves.add_move(
                    "merge", old.item_id, old.channel, old.ts, user, now, target_ts=parent.ts
                )
                folded.append((old, parent))
            titles = [store.items.item(p.item_id)[0].title for p in (post, into)]
            store.people.record_audit(
                user,
                channel,
                "same story",
                f"story {source} into story {story}: {shorten(titles[0], 80)} → {shorten(titles[1], 80)}"
                + "".join(f"; carried over {c}" for c in carried),
                now,
            )
        edits = []
        for old, parent in folded:
            link = workspace.permalink(parent.channel, parent.ts)
            edits.append(
                Edit(old.channel, old.ts, render_folded(post_alert(store, old), titles[1], link, user))
            )
            edits.append(Edit(parent.channel, parent.ts, render_story_post(store, parent, now)))
        edits += [Edit(p.channel, p.ts, render_story_post(store, p, now)) for p in kept]
    others = len(folded) - 1
    also = f" and in {plural(others, 'other channel')}" if others > 0 else ""
    return Correction(
        edits=edits,
        notice=f"Folded into “{escape(shorten(titles[1], 150))}”: its reports go to that thread here{also}; "
        "remembered as the same story for the next `newsalert stories fit`."
        + (" Carried over to the merged story: " + "; ".join(carried) + "." if carried else ""),
    )
