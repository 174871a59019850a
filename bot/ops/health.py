"""Health: is the bot doing its job, and does anything need a human?

`newsalert status` prints it as a table (exit code 1 when a human is needed, so it works as a
health check); `GET /healthz` returns it as JSON. "Healthy" means alerts can flow; anything else needs
a human: no poll succeeded for three intervals, a watchlist disabled because it cannot compile, an
alert queued for over an hour (the outbox is stuck), dead letters, a subscription whose channel
cannot be posted to, a source failing for a day or more (or disabled because the web says it is
gone). Notes (a source flooding a channel) are shown but do not make it unhealthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TextIO

from bot.config import format_duration
from bot.model import SourceRow
from bot.store import Store
from bot.timefmt import relative
from bot.urls import redact

SOURCE_FAILING = timedelta(hours=24)
ALERT_WAITING = timedelta(hours=1)
POLL_SILENCE = 3  # poll intervals without one successful fetch before polling counts as stopped
FLOOD_WINDOW = timedelta(hours=24)  # flood summaries this recent are named in `status`


@dataclass(frozen=True)
class SourceHealth:
    """The one reading of a source's health: `status`, `/healthz`, `sources` and App Home show this."""

    name: str
    url: str
    last_success: datetime | None
    last_error: str
    last_error_at: datetime | None
    failures: int  # consecutive
    next_poll: datetime | None  # None: disabled, or never polled yet
    items_24h: int
    disabled: str = ""  # why it is no longer polled (HTTP 410 Gone)
    failing_since: datetime | None = None  # set while failing
    type: str = "feed"
    interval: int = 900
    added_at: datetime | None = None

    @property
    def failing(self) -> bool:
        """Its last fetch failed (a success resets the count), or it is disabled."""
        return self.failures > 0 or bool(self.disabled)

    @property
    def state(self) -> str:
        """disabled | failing | ok | new (never fetched yet)."""
        if self.disabled:
            return "disabled"
        if self.failures:
            return "failing"
        return "ok" if self.last_success else "new"

    poll_interval: int | None = None  # seconds: adaptive polling's last decision (None before it)
    poll_reason: str = ""  # why: "busy", "max-age", "ttl, ceiling" … (bot/ingest/schedule.py)

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "url": redact(self.url),  # /healthz and `status --json` are read by monitoring: no secrets
            "state": self.state,
            "last_success": _iso(self.last_success),
            "last_error": self.last_error or None,
            "last_error_at": _iso(self.last_error_at),
            "consecutive_failures": self.failures,
            "next_poll": _iso(self.next_poll),
            "items_24h": self.items_24h,
            "disabled": self.disabled or None,
            "poll_interval": self.poll_interval,
            "poll_reason": self.poll_reason or None,
        }


@dataclass(frozen=True)
class Health:
    checked_at: datetime
    sources: tuple[SourceHealth, ...] = ()
    outbox_depth: int = 0
    oldest_queued: datetime | None = None
    dead_letters: int = 0
    broken: tuple[tuple[str, str], ...] = ()  # (channel, why)
    problems: tuple[str, ...] = field(default=())
    disabled_watchlists: tuple[tuple[str, str], ...] = ()  # (name, why)
    floods: tuple[tuple[str, str, int], ...] = ()  # (source, channel, items summarised)
    notes: tuple[str, ...] = ()

    @property
    def needs_human(self) -> bool:
        return bool(self.problems)

    def as_json(self) -> dict:
        return {
            "needs_human": self.needs_human,
            "problems": list(self.problems),
            "checked_at": _iso(self.checked_at),
            "sources": [s.as_json() for s in self.sources],
            "outbox": {
                "depth": self.outbox_depth,
                "oldest_queued": _iso(self.oldest_queued),
                "dead_letters": self.dead_letters,
            },
            "broken_subscriptions": [{"channel": c, "reason": why} for c, why in self.broken],
            "disabled_watchlists": [{"name": n, "reason": why} for n, why in self.disabled_watchlists],
            "floods": [{"source": s, "channel": c, "summarised": n} for s, c, n in self.floods],
            "notes": list(self.notes),
        }


def health(store: Store, now: datetime | None = None) -> Health:
    now = now or datetime.now(UTC)
    sources = tuple(source_health(store, now))
    outbox = store.outbox.outbox_summary()
    oldest_at = outbox.oldest_created_at
    broken = tuple(store.catalog.broken_active_subscriptions())
    problems: list[str] = []
    for s in sources:
        if s.disabled:
            problems.append(f'source "{s.name}" disabled: {s.disabled}')
        elif s.failing_since is not None and now - s.failing_since >= SOURCE_FAILING:
            problems.append(f'source "{s.name}" failing for {_hours(now - s.failing_since)}: {s.last_error}')
    if oldest_at is not None and now - oldest_at > ALERT_WAITING:
        why = f": {outbox.oldest_error}" if outbox.oldest_error else ""
        problems.append(
            f"alert queued for {_hours(now - oldest_at)} in channel {outbox.oldest_channel} "
            f"({outbox.queued} waiting){why}"
        )
    problems += [f"subscription of channel {channel} broken: {why}" for channel, why in broken]
    if silence := _polls_stopped(sources, now):
        problems.insert(0, silence)
    disabled_watchlists = tuple(store.faults.watchlist_faults())
    problems += [f'watchlist "{name}" disabled: {why}' for name, why in disabled_watchlists]
    if outbox.dead:
        problems.append(f"{outbox.dead} alerts dead-lettered (see `newsalert outbox`)")
    floods = tuple(store.outbox.recent_floods(now - FLOOD_WINDOW))
    notes = tuple(
        f'source "{source}" flooded channel {channel}: {n} matching items summarised, not posted'
        for source, channel, n in floods
    )
    return Health(
        checked_at=now,
        sources=sources,
        outbox_depth=outbox.queued,
        oldest_queued=oldest_at,
        dead_letters=outbox.dead,
        broken=broken,
        problems=tuple(problems),
        disabled_watchlists=disabled_watchlists,
        floods=floods,
        notes=notes,
    )


def _polls_stopped(sources: tuple[SourceHealth, ...], now: datetime) -> str:
    """A problem when no source has been fetched successfully for POLL_SILENCE intervals."""
    active = [s for s in sources if not s.disabled]
    if not active:
        return ""
    interval = timedelta(seconds=min(s.interval for s in active))
    successes = [s.last_success for s in active if s.last_success]
    since = max(successes) if successes else min((s.added_at for s in active if s.added_at), default=None)
    if since is None or now - since <= POLL_SILENCE * interval:
        return ""
    last = f"the last one {_hours(now - since)} ago" if successes else "none ever"
    return f"no poll has succeeded for {POLL_SILENCE} poll intervals ({last})"


def source_health(store: Store, now: datetime) -> list[SourceHealth]:
    """Every active source's health, by name."""
    return [_source(row) for row in store.sources.source_health_rows(now - timedelta(hours=24))]


def _source(row: SourceRow) -> SourceHealth:
    failures = row.consecutive_failures
    interval = timedelta(seconds=row.interval)
    disabled = (row.disabled_reason or row.last_error or "disabled") if row.disabled_at else ""
    # Failing since the last success; a source that never succeeded, since it was added.
    failing_since = (row.last_success or row.added_at or row.last_error_at) if failures else None
    next_poll = None
    if not disabled:
        # Set after every poll since adaptive polling; a database from before has only backoffs.
        next_poll = row.next_poll_at or (row.last_polled + interval if row.last_polled else None)
    return SourceHealth(
        name=row.name,
        url=row.url,
        last_success=row.last_success,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        failures=failures,
        next_poll=next_poll,
        items_24h=row.items,
        disabled=disabled,
        failing_since=failing_since,
        type=row.type,
        interval=row.interval,
        added_at=row.added_at,
        poll_interval=row.poll_interval,
        poll_reason=row.poll_reason,
    )


def healthz(store_path: str, scheduler_alive: bool) -> tuple[int, dict]:
    """For `GET /healthz`: 200 only when alerts can flow, 503 with the same problems as
    `newsalert status` otherwise (the scheduler died, polls stopped, a watchlist disabled, the
    outbox stuck, dead letters, an unreadable database), so a monitor pages someone."""
    if not scheduler_alive:
        return 503, {
            "status": "down",
            "scheduler": "dead",
            "needs_human": True,
            "problems": ["scheduler stopped"],
        }
    try:
        store = Store.open_readonly(store_path)
        try:
            verdict = health(store).as_json()
        finally:
            store.close()
    except Exception as e:  # a health check reports what is wrong; it never fails itself
        verdict = {"needs_human": True, "problems": [f"database unreadable: {e}"]}
    if verdict["needs_human"]:
        return 503, {"status": "degraded", "scheduler": "alive", **verdict}
    return 200, {"status": "ok", "scheduler": "alive", **verdict}


# ---------------------------------------------------------------------------------------------------------
# The table of `newsalert status`


def print_health(report: Health, out: TextIO | None = None) -> None:
    from rich.console import Console  # imported here: only this command draws tables
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, highlight=False)
    if not console.is_terminal:
        console.width = 160  # a log file or a pipe: do not fold the table to 80 columns
    now = report.checked_at
    table = Table(title="sources", title_justify="left", show_edge=False)
    for header, justify in [
        ("source", "left"),
        ("last success", "left"),
        ("last error", "left"),
        ("failures", "right"),
        ("next poll", "left"),
        ("interval", "left"),
        ("items 24 h", "right"),
    ]:
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for s in report.sources:
        error = f"{relative(s.last_error_at, now)}: {s.last_error}" if s.last_error and s.failures else ""
        next_poll = "disabled" if s.disabled else (_due(s.next_poll, now) if s.next_poll else "at start")
        # Text(): names and errors come from feeds and people, never read as rich markup.
        every = f"{format_duration(s.poll_interval)} ({s.poll_reason})" if s.poll_interval else "-"
        last = relative(s.last_success, now)
        cells = [s.name, last, error, str(s.failures), next_poll, every, str(s.items_24h)]
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table)
    oldest = f", oldest queued {relative(report.oldest_queued, now)}" if report.oldest_queued else ""
    dead = f", {report.dead_letters} dead letters" if report.dead_letters else ""
    console.print(f"\noutbox: {report.outbox_depth} queued{oldest}{dead}")
    broken = ", ".join(f"{c} ({why})" for c, why in report.broken) or "none"
    console.print(f"broken subscriptions: {broken}", markup=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    if report.needs_human:
        console.print("\n[bold]needs a human:[/bold]")
        for problem in report.problems:
            console.print(f"  - {problem}", markup=False)
    else:
        console.print("\nhealthy")


def _due(when: datetime, now: datetime) -> str:
    return "due now" if when <= now else relative(when, now)


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{delta.total_seconds() / 60:.0f} min"


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None
