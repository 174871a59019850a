"""The one relative-time formatter: "just now", "5m ago", "in 2h", "never" — for Slack replies and the CLI."""

from __future__ import annotations

from datetime import datetime

_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def relative(when: datetime | None, now: datetime) -> str:
    """How long ago ``when`` was (or how long until it, when it is later than ``now``)."""
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    if -60 < seconds < 60:
        return "just now" if seconds >= 0 else "in under a minute"
    span = abs(seconds)
    text = next(f"{span // size}{unit}" for unit, size in _UNITS if span >= size)
    return f"{text} ago" if seconds > 0 else f"in {text}"
