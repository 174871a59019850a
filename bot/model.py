"""Plain, immutable values that the pipeline stages hand to each other.

fetch -> Fetched; parse -> Entry; normalize -> Item; match -> Span; alerts.compose -> Alert (what
render and the sinks need, and nothing more); and the rows the store hands back, as values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# What a watchlist may be called, from Slack or the config file: a word that is safe to print in
# any message (no <, >, & or spaces) and to type after `watchlist:` in a search.
WATCHLIST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
WATCHLIST_NAME_RULE = "letters, digits, - and _, up to 40 characters"

SourceType = Literal["feed", "jsonfeed", "wordpress"]
SOURCE_TYPES: tuple[str, ...] = ("feed", "jsonfeed", "wordpress")


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    type: SourceType = "feed"
    interval: int = 900  # seconds between polls
    # Adaptive polling's floor and ceiling for this source; None: from [defaults] (bot.ingest.schedule).
    min_interval: int | None = None
    max_interval: int | None = None


@dataclass(frozen=True)
class Watchlist:
    name: str
    query: str
    description: str = ""


@dataclass(frozen=True)
class Subscription:
    channel: str
    watchlists: tuple[str, ...]
    mode: str = "realtime"  # or "digest"
    schedule: str = ""  # digests: "daily 09:00", "weekdays 08:30", "weekly mon 09:00" or cron
    timezone: str = "UTC"
    skip_empty: bool = False  # digests: post nothing for an empty period
    top: int = 15  # digests: stories shown before "and N more"


@dataclass(frozen=True)
class Fetched:
    """One HTTP answer. ``body`` is empty when ``not_modified`` (HTTP 304)."""

    url: str
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    # Set when every redirect hop from the configured URL was permanent (301/308): the URL
    # the source should be stored under from now on. None without redirects or after a 302/307.
    permanent_url: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True)
class FeedHints:
    """What a feed says about itself, outside its entries: how often it may be polled
    (RSS ``<ttl>``, ``<sy:updatePeriod>``/``<sy:updateFrequency>``, in seconds) and where it is
    pushed (the WebSub hubs it advertises, and its own canonical ``rel="self"`` URL)."""

    ttl: int | None = None
    update_period: int | None = None  # sy:updatePeriod / sy:updateFrequency
    hubs: tuple[str, ...] = ()
    self_url: str | None = None


@dataclass(frozen=True)
class Entry:
    """One entry as the feed gave it: HTML where the feed has HTML, no cleaning yet."""

    guid: str
    link: str
    title: str
    summary: str = ""  # HTML or text
    content: str = ""  # HTML or text; the fuller body when the feed has one
    published: datetime | None = None  # UTC-aware when known
    outlet: str = ""  # aggregator items: the publisher named in <source>
    outlet_url: str = ""


@dataclass(frozen=True)
class Item:
    """A normalized item: plain text, canonical URL, UTC times."""

    source: str  # Source.name
    guid: str
    url: str  # canonical; "" when the entry had no usable link
    title: str
    text: str  # plain text body; "" when the entry is headline only
    published: datetime  # UTC; the fetch time when the feed gave none
    fetched: datetime  # UTC
    outlet: str = ""  # publisher, for aggregator items; else ""
    headline_only: bool = False


@dataclass(frozen=True)
class Span:
    """A matched term: ``field`` is "title" or "text", offsets index that string."""

    field: str
    start: int
    end: int
    term: str


@dataclass(frozen=True)
class Summary:
    """Extractive summary; ``bold`` are (start, end) ranges of matched terms in ``text``."""

    text: str
    bold: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Alert:
    """One message to one channel about one item. Everything here is unescaped feed text."""

    id: int
    channel: str
    title: str
    url: str
    source: str
    outlet: str
    published: datetime
    watchlists: tuple[str, ...]
    summary: Summary
    headline_only: bool = False
    # Everyone who reported the story so far (outlets for aggregator items), first first.
    reporters: tuple[str, ...] = ()
    story_id: int = 0
    # (start, end) of matched words in ``title``, and (words, "title" | "summary") for the
    # "Matched:" line: only from the watchlists of this alert's channel.
    title_bold: tuple[tuple[int, int], ...] = ()
    matched: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SourceState:
    name: str
    etag: str | None = None
    last_modified: str | None = None
    last_success: datetime | None = None
    consecutive_failures: int = 0


@dataclass(frozen=True)
class QueuedAlert:
    """An outbox row joined with its item: what delivery needs to render and post."""

    id: int
    channel: str
    watchlists: tuple[str, ...]
    attempts: int
    item: Item
    spans: tuple[Span, ...]
    story_id: int
    item_id: int
    in_flight: bool = False
    plain_text: bool = False
    created_at: datetime | None = None
    last_error: str = ""
    next_attempt_at: datetime | None = None
    summary_count: int = 0  # > 0: stands for this many items of a flooding source (outbox.py)


@dataclass(frozen=True)
class StoryPost:
    """The top-level Slack message of a story in one channel."""

    story_id: int
    channel: str
    item_id: int
    ts: str
    watchlists: tuple[str, ...]


@dataclass(frozen=True)
class StoryMove:
    """A message an analyst's story correction moved away from (bot/app/corrections.py).

    ``split``: a thread reply whose item became its own alert (``alert_id``, re-delivered);
    ``merge``: a story's parent folded into the thread whose parent is ``target_ts``.
    """

    id: int
    kind: Literal["split", "merge"]
    item_id: int
    channel: str
    old_ts: str
    user_id: str
    created_at: datetime
    alert_id: int | None = None
    target_ts: str | None = None
    new_ts: str | None = None  # split: the ts of the item's own alert, once posted


# Rows the store returns to its callers, as values: no caller indexes a row by column name.


@dataclass(frozen=True)
class SourceRow:
    """A source of the catalog with its fetch state; ``items``: how many it brought lately."""

    name: str
    url: str
    type: str = "feed"
    interval: int = 900
    origin: str | None = None
    added_at: datetime | None = None
    last_polled: datetime | None = None
    last_success: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    next_poll_at: datetime | None = None
    disabled_at: datetime | None = None
    disabled_reason: str = ""
    items: int = 0
    poll_interval: int | None = None  # adaptive polling's last decision, in seconds
    poll_reason: str = ""  # and why ("busy", "max-age, ceiling" …: bot/ingest/schedule.py)


@dataclass(frozen=True)
class CatalogSource:
    """A source row as an import sees it, removed ones included."""

    name: str
    url: str
    removed: bool


@dataclass(frozen=True)
class WatchlistRow:
    name: str
    query: str
    description: str = ""
    removed: bool = False


@dataclass(frozen=True)
class OutboxSummary:
    queued: int = 0
    dead: int = 0
    oldest_created_at: datetime | None = None  # of the oldest queued alert
    oldest_channel: str = ""
    oldest_error: str = ""


@dataclass(frozen=True)
class Mute:
    kind: str  # "story" (target: its id) or "source" (target: its name)
    target: str
    user: str
    until: datetime | None = None
    title: str = ""  # a story mute: the story's first title


@dataclass(frozen=True)
class MessageMarks:
    """What people did to one alert in its channel: triage, mutes, not-relevant flags."""

    triage: str | None = None  # claimed | done | escalated
    triage_by: str | None = None
    story_muted_by: str | None = None
    source_muted_by: str | None = None
    not_relevant_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class PostedAlert:
    """A story's top-level message in a channel, with its item and triage state (App Home)."""

    story_id: int
    channel: str
    item_id: int
    ts: str
    posted_at: datetime
    watchlists: tuple[str, ...]
    title: str
    url: str
    source: str
    outlet: str
    state: str | None = None
    state_by: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    user: str
    channel: str | None
    action: str
    detail: str


@dataclass(frozen=True)
class ItemText:
    """What search confirms a candidate with."""

    title: str
    text: str
    source: str
    url: str


@dataclass(frozen=True)
class MatchedItem:
    """An item that matched a watchlist, with its story (for export)."""

    story_id: int
    story_first_seen: datetime
    item_id: int
    title: str
    url: str
    first_seen: datetime


@dataclass(frozen=True)
class HubSubscription:
    """A WebSub subscription of one source's topic at its hub (bot/ingest/websub.py)."""

    source: str
    hub: str
    topic: str
    callback: str  # the last part of the callback URL, unguessable
    secret: str  # hub.secret: every push must be signed with it
    state: str  # requested | active | denied | failed | unsubscribing
    requested_at: datetime
    lease_seconds: int | None = None
    verified_at: datetime | None = None
    expires_at: datetime | None = None
    retry_at: datetime | None = None
    attempts: int = 0
    last_error: str = ""
