"""How command answers read: help, status, source health lines, search hits and query errors (Slack mrkdwn).

Every string that came from a feed, a config file or a person is escaped (render.escape) here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from bot.alerts.render import emphasize, escape, escape_url, format_time, shorten
from bot.app.context import COMMAND
from bot.config import format_duration
from bot.errors import QueryError
from bot.match.backtest import Hit
from bot.ops import health as status
from bot.ops.health import SourceHealth
from bot.timefmt import relative

HELP_LINE = (
    f"Try `{COMMAND} help`. Commands: subscribe, unsubscribe, list, watchlists, sources, search, "
    "query test, mute source, unmute source, status; for admins: watchlist add|edit|remove, "
    "source add|remove."
)

HELP = f"""*newsalert* posts news alerts for trust &amp; safety work. Commands:
• `{COMMAND} subscribe csam deepfakes` — this channel gets realtime alerts for these watchlists
• `{COMMAND} unsubscribe deepfakes` — it stops getting them
• `{COMMAND} subscribe csam digest daily 09:00 Europe/Berlin` — a daily briefing instead (also \
`weekdays 08:30`, `weekly mon 09:00` or cron); `{COMMAND} unsubscribe digest ID` stops it
• `{COMMAND} list` — this channel's subscriptions and mutes
• `{COMMAND} watchlists` — every watchlist and its query
• `{COMMAND} sources` — every source and its health (last success, last error, next poll)
• `{COMMAND} search unicef deepfake* since:7d` — the latest matching stories (default: 30 days)
• `{COMMAND} query test "child abuse material" NEAR/5 (AI OR generated)` — what a query would \
have matched in the last 30 days
• `{COMMAND} mute source Daily Mail for 7d`, `{COMMAND} unmute source Daily Mail` — in this channel
• `{COMMAND} status` — last poll, queued alerts, failing sources, broken subscriptions, \
not-relevant rates
Admins only:
• `{COMMAND} watchlist add sextortion sextort* OR "sexual extortion"`
• `{COMMAND} watchlist edit sextortion sextort* OR "sexual extortion" OR "financial sextortion"`
• `{COMMAND} watchlist remove sextortion`
• `{COMMAND} source add https://example.org/feed.xml Example News`, `{COMMAND} source remove Example News`
Anyone in a channel may subscribe, unsubscribe and mute there. Buttons on each alert claim it, mark it \
done, escalate it, mute its story or source here, or flag it as not relevant."""

REFUSAL = (
    "Only newsalert admins can add, edit or remove watchlists and sources: the users listed in the "
    "config file's `[slack] admins`, and workspace admins and owners. Ask one of them; "
    f"`{COMMAND} watchlists` and `{COMMAND} sources` show what there is."
)


def code_list(names: Sequence[str]) -> str:
    return ", ".join(f"`{escape(n)}`" for n in names)


def source_health_line(source: SourceHealth, now: datetime) -> str:
    """One source for `sources` and App Home: state, last success, last error, next poll."""
    if source.disabled:
        icon, next_poll = "⛔", "disabled (" + escape(source.disabled) + ")"
    else:
        icon = {"failing": "⚠️", "ok": "✅"}.get(source.state, "⏳")
        due = source.next_poll
        next_poll = "soon" if due is None or due <= now else relative(due, now)
    # Adaptive polling's last decision and why (bot/ingest/schedule.py); before it, the configured interval.
    every = format_duration(source.poll_interval or source.interval)
    if source.poll_reason:
        every += f" ({escape(source.poll_reason)})"
    line = (
        f"{icon} *{escape(source.name)}* ({escape(source.type)}, every {every}) — "
        f"last success {relative(source.last_success, now)}"
    )
    if source.failures:
        line += (
            f" · last error {relative(source.last_error_at, now)}: {escape(shorten(source.last_error, 160))}"
            f" ({source.failures} in a row)"
        )
    return line + f" · next poll {next_poll}"


def status_lines(report: status.Health, rates: dict[str, tuple[int, int]], now: datetime) -> list[str]:
    """bot.status.Health (and the not-relevant rates) as lines of a Slack message, headline first."""
    polls = [t for s in report.sources for t in (s.last_success, s.last_error_at) if t is not None]
    failing = [s for s in report.sources if s.failures or s.disabled]
    if report.needs_human:
        verdict = "⚠️ needs a human"
    elif failing:  # working, but not "healthy" above a list of failing sources
        verdict = f"⚠️ {len(failing)} of {len(report.sources)} sources failing"
    else:
        verdict = "✅ healthy"
    lines = [
        "*newsalert status* — " + verdict,
        f"Last poll: {relative(max(polls), now) if polls else 'never'}",
        f"Queued alerts: {report.outbox_depth}"
        + (f" (oldest queued {relative(report.oldest_queued, now)})" if report.oldest_queued else "")
        + (f" · {report.dead_letters} undeliverable" if report.dead_letters else ""),
    ]
    if decided := [s for s in report.sources if s.poll_interval]:
        low, high = min(s.poll_interval or 0 for s in decided), max(s.poll_interval or 0 for s in decided)
        reasons = Counter(s.poll_reason for s in decided).most_common()
        lines.append(
            f"Poll intervals: {format_duration(low)} to {format_duration(high)} ("
            + ", ".join(f"{escape(why)} {n}" for why, n in reasons)
            + ")"
        )
    if failing:
        lines.append(f"Failing sources ({len(failing)}):")
        for s in failing:
            why = (
                f"disabled: {s.disabled}" if s.disabled else f"{s.failures} failures in a row: {s.last_error}"
            )
            lines.append(
                f"• *{escape(s.name)}* — {escape(shorten(why, 200))} ({relative(s.last_error_at, now)})"
            )
    else:
        lines.append(f"Failing sources: none of {len(report.sources)}")
    if report.broken:
        lines.append("Broken subscriptions:")
        lines += [f"• <#{c}>: {escape(why)}" for c, why in report.broken if re.match(r"^[CGD][A-Z0-9]+$", c)]
    else:
        lines.append("Broken subscriptions: none")
    if report.problems:
        lines.append("Needs a human:")
        lines += [f"• {escape(p)}" for p in report.problems]
    if rates:
        lines.append("Not relevant (alerts flagged / alerts posted), per watchlist:")
        for watchlist, (flagged, posted) in rates.items():
            share = f"{flagged / posted:.0%}" if posted else "–"
            lines.append(f"• `{escape(watchlist)}`: {flagged} / {posted} ({share})")
    return lines


# -- admins ----------------------------------------------------------------------------------------


def hit_line(hit: Hit) -> str:
    item = hit.item
    bold = [(s.start, s.end) for s in hit.spans if s.field == "title"]
    title = emphasize(item.title, bold) if len(item.title) <= 250 else escape(shorten(item.title, 250))
    link = f"<{escape_url(item.url)}|{title or '(untitled)'}>" if item.url else title
    who = item.outlet or item.source
    return f"• {link} — {escape(who)} · {format_time(item.published)}"


def query_error(e: QueryError) -> str:
    named = f"watchlist `{escape(e.watchlist)}`: " if e.watchlist else ""
    text = f"Query error: {named}{escape(e.problem)} at {e.where}."
    if pointer := e.pointer():
        text += "\n```" + "\n".join(escape(line) for line in pointer) + "```"
    return text
