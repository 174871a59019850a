"""Composing an alert: the frozen Alert value built from a stored item, and a story's parent message."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.alerts.render import MessageState, SlackMessage, render_slack
from bot.alerts.summarize import summarize
from bot.model import Alert, Item, Span, StoryPost
from bot.store import Store


def build_alert(
    alert_id: int,
    channel: str,
    item: Item,
    spans: Sequence[Span],
    watchlists: Sequence[str],
    reporters: Sequence[str],
    story_id: int = 0,
) -> Alert:
    return Alert(
        id=alert_id,
        channel=channel,
        title=item.title,
        url=item.url,
        source=item.source,
        outlet=item.outlet,
        published=item.published,
        watchlists=tuple(watchlists),
        summary=summarize(item.text, [s for s in spans if s.field == "text"]),
        headline_only=item.headline_only,
        reporters=tuple(reporters),
        story_id=story_id,
        title_bold=tuple((s.start, s.end) for s in spans if s.field == "title"),
        matched=matched_terms(item, spans),
    )


def matched_terms(item: Item, spans: Sequence[Span]) -> tuple[tuple[str, str], ...]:
    """Each matched phrase once, as the item wrote it, with where it was found: title first."""
    out: dict[str, list[str]] = {}
    for span in sorted(spans, key=lambda s: (s.field != "title", s.start)):
        text = item.title if span.field == "title" else item.text
        words = " ".join(text[span.start : span.end].split()) or span.term
        where = "title" if span.field == "title" else "summary"
        places = out.setdefault(words.casefold(), [words])
        if where not in places[1:]:
            places.append(where)
    return tuple((places[0], ", ".join(places[1:])) for places in out.values())


def story_state(store: Store, post: StoryPost, source: str, now: datetime) -> MessageState:
    """Triage and feedback on a story's message in its channel, to show under the alert."""
    return MessageState(
        source=source, **vars(store.people.message_state(post.channel, post.story_id, post.item_id, now))
    )


def render_story_post(store: Store, post: StoryPost, now: datetime) -> SlackMessage:
    """The story's top-level message as it should now read, buttons and triage state included:
    what the Slack app puts in place after a button click (the deliverer renders the same)."""
    parent = post_alert(store, post)
    return render_slack(parent, story_state(store, post, parent.source, now), actions=True)


def post_alert(store: Store, post: StoryPost) -> Alert:
    """The Alert a story's top-level message in a channel shows."""
    item, _ = store.items.item(post.item_id)
    spans = store.items.spans_for(post.item_id, post.watchlists)
    return build_alert(
        0,
        post.channel,
        item,
        spans,
        post.watchlists,
        store.stories.story_sources(post.story_id),
        post.story_id,
    )
