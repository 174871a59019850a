"""Turning rows into bot.model values and back: the one place that knows how a value is stored."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime

from bot.model import Item, SourceRow, Span, Subscription


def subscription_id(sub: Subscription) -> str:
    """Short and stable across restarts for the same config entry."""
    fields: list = [sub.channel, sorted(sub.watchlists), sub.mode]
    if sub.mode == "digest":  # realtime ids predate digests and must not change
        fields += [sub.schedule, sub.timezone]
    key = json.dumps(fields)
    return hashlib.sha1(key.encode()).hexdigest()[:8]


def subscription_rows(subs: Sequence[Subscription]) -> dict[str, dict]:
    return {
        subscription_id(s): {
            "id": subscription_id(s),
            "channel": s.channel,
            "watchlists": json.dumps(list(s.watchlists)),
            "mode": s.mode,
            "schedule": s.schedule or None,
            "timezone": s.timezone if s.mode == "digest" else None,
            "skip_empty": int(s.skip_empty),
            "top": s.top,
        }
        for s in subs
    }


def subscription_from_row(r: dict) -> Subscription:
    return Subscription(
        channel=r["channel"],
        watchlists=tuple(json.loads(r["watchlists"])),
        mode=r["mode"],
        schedule=r.get("schedule") or "",
        timezone=r.get("timezone") or "UTC",
        skip_empty=bool(r.get("skip_empty")),
        top=r.get("top") or 15,
    )


def item_from_row(row: dict) -> Item:
    return Item(
        source=row["source"],
        guid=row["guid"],
        url=row["url"] or "",
        title=row["title"],
        text=row["text"] or "",
        published=datetime.fromisoformat(row["published"]),
        fetched=datetime.fromisoformat(row["first_seen"]),
        outlet=row["outlet"] or "",
        headline_only=bool(row["headline_only"]),
    )


def spans_to_json(spans: Sequence[Span]) -> str:
    return json.dumps([[s.field, s.start, s.end, s.term] for s in spans])


def spans_from_json(text: str | None) -> list[Span]:
    return [Span(f, start, end, term) for f, start, end, term in json.loads(text or "[]")]


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def source_row(r: dict) -> SourceRow:
    return SourceRow(
        name=r["name"],
        url=r["url"],
        type=r.get("type") or "feed",
        interval=r.get("interval") or 900,
        origin=r.get("origin"),
        added_at=_when(r.get("added_at")),
        last_polled=_when(r.get("last_polled")),
        last_success=_when(r.get("last_success")),
        last_error=r.get("last_error") or "",
        last_error_at=_when(r.get("last_error_at")),
        consecutive_failures=r.get("consecutive_failures") or 0,
        next_poll_at=_when(r.get("next_poll_at")),
        disabled_at=_when(r.get("disabled_at")),
        disabled_reason=r.get("disabled_reason") or "",
        items=r.get("items") or 0,
        poll_interval=r.get("poll_interval"),
        poll_reason=r.get("poll_reason") or "",
    )
