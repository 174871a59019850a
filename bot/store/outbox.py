"""The alert outbox: queueing, per-channel claims, attempts, retries and dead letters."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

from bot.model import OutboxSummary, QueuedAlert, Span
from bot.store.db import Repository, from_iso, iso
from bot.store.rows import (
    item_from_row,
    spans_from_json,
)


class OutboxRepo(Repository):
    def enqueue_alert(
        self,
        item_id: int,
        channel: str,
        watchlists: Iterable[str],
        now: datetime,
        *,
        summary_count: int | None = None,
    ) -> bool:
        """Queue one alert; False when this item already has one for this channel.

        Only that conflict is tolerated: any other failure (a NOT NULL column a newer version
        added, a full disk) raises, so the item's transaction rolls back and it is fetched again.
        """
        cursor = self.db.execute(
            """INSERT INTO alerts (item_id, channel, watchlists, status, created_at, attempts, summary_count)
               VALUES (?, ?, ?, 'queued', ?, 0, ?) ON CONFLICT(item_id, channel) DO NOTHING""",
            [item_id, channel, json.dumps(list(watchlists)), iso(now), summary_count],
        )
        return cursor.rowcount == 1

    def channels_with_pending_alerts(self, now: datetime) -> list[str]:
        """Channels whose oldest queued alert is due (a channel waits behind its first alert)."""
        rows = self._all(
            """SELECT a.channel FROM alerts a
               JOIN (SELECT channel, min(id) AS first FROM alerts WHERE status = 'queued' GROUP BY channel) f
                 ON a.id = f.first
               WHERE a.next_attempt_at IS NULL OR a.next_attempt_at <= ? ORDER BY a.id""",
            [iso(now)],
        )
        return [r["channel"] for r in rows]

    def claim_channel(
        self,
        channel: str,
        worker: str,
        now: datetime,
        *,
        stale_before: datetime,
        dead_workers: Iterable[str] = (),
    ) -> bool:
        """Become the one deliverer of ``channel``; False while another live worker holds it."""
        dead = list(dead_workers)
        marks = ",".join("?" * len(dead)) or "NULL"
        with self.transaction():
            self.db.execute(
                f"""INSERT INTO channel_claims (channel, worker, claimed_at) VALUES (?, ?, ?)
                    ON CONFLICT(channel) DO UPDATE
                    SET worker = excluded.worker, claimed_at = excluded.claimed_at
                    WHERE channel_claims.worker = excluded.worker OR channel_claims.claimed_at < ?
                       OR channel_claims.worker IN ({marks})""",
                [channel, worker, iso(now), iso(stale_before), *dead],
            )
            row = self._one("SELECT worker FROM channel_claims WHERE channel = ?", [channel])
        return row is not None and row["worker"] == worker

    def claim_holders(self) -> list[str]:
        return [r["worker"] for r in self._all("SELECT DISTINCT worker FROM channel_claims")]

    def release_channel(self, channel: str, worker: str) -> None:
        self.db.execute("DELETE FROM channel_claims WHERE channel = ? AND worker = ?", [channel, worker])

    def pending_alerts(self, channel: str, now: datetime, limit: int = 200) -> list[QueuedAlert]:
        """The channel's queued alerts in fair order (fair_order) up to the first one not yet due.

        An alert waiting for its retry time holds back the ones after it: the channel waits.
        """
        rows = self._all(
            """SELECT a.id, a.next_attempt_at, i.source, i.story_id FROM alerts a
               JOIN items i ON i.id = a.item_id
               WHERE a.status = 'queued' AND a.channel = ? ORDER BY a.id""",
            [channel],
        )
        ids: list[int] = []
        for r in fair_order(rows):
            due = from_iso(r["next_attempt_at"])
            if len(ids) >= limit or (due is not None and due > now):
                break
            ids.append(r["id"])
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        by_id = {q.id: q for q in self._queued(f"a.id IN ({marks})", ids, len(ids))}
        return [by_id[i] for i in ids]

    def queued_alerts(self, limit: int = 500) -> list[QueuedAlert]:
        return self._queued("a.status = 'queued'", [], limit)

    def dead_alerts(self, limit: int = 500) -> list[QueuedAlert]:
        return self._queued("a.status = 'dead'", [], limit)

    def _queued(self, where: str, params: list, limit: int) -> list[QueuedAlert]:
        rows = self._all(
            f"""SELECT a.id AS alert_id, a.channel, a.watchlists AS alert_watchlists, a.attempts,
                       a.in_flight, a.plain_text, a.created_at AS alert_created, a.last_error,
                       a.next_attempt_at, a.summary_count, i.*
                FROM alerts a JOIN items i ON i.id = a.item_id
                WHERE {where} ORDER BY a.id LIMIT ?""",
            [*params, limit],
        )
        # Spans per (item, watchlist): an alert highlights only its own channel's watchlists' terms.
        spans_by_match: dict[tuple[int, str], list[Span]] = {}
        ids = sorted({r["id"] for r in rows})
        if ids:
            marks = ",".join("?" * len(ids))
            sql = f"SELECT item_id, watchlist, spans FROM matches WHERE item_id IN ({marks})"
            for m in self._all(sql, ids):
                spans_by_match[(m["item_id"], m["watchlist"])] = spans_from_json(m["spans"])

        def spans(row: dict) -> tuple[Span, ...]:
            names = json.loads(row["alert_watchlists"])
            found = {s for w in names for s in spans_by_match.get((row["id"], w), [])}
            return tuple(sorted(found, key=lambda s: (s.field, s.start)))

        return [
            QueuedAlert(
                id=r["alert_id"],
                channel=r["channel"],
                watchlists=tuple(json.loads(r["alert_watchlists"])),
                attempts=r["attempts"],
                item=item_from_row(r),
                spans=spans(r),
                story_id=r["story_id"],
                item_id=r["id"],
                in_flight=bool(r["in_flight"]),
                plain_text=bool(r["plain_text"]),
                created_at=datetime.fromisoformat(r["alert_created"]),
                last_error=r["last_error"] or "",
                next_attempt_at=from_iso(r["next_attempt_at"]),
                summary_count=r["summary_count"] or 0,
            )
            for r in rows
        ]

    def mark_alert_in_flight(self, alert_id: int) -> None:
        self.db.execute("UPDATE alerts SET in_flight = 1 WHERE id = ?", [alert_id])

    def thread_titles(self, story_id: int, channel: str) -> list[str]:
        """The headlines a channel was shown of a story: its parent's and the replies posted in its
        thread (copies folded into the parent's count were not shown, so they do not count)."""
        rows = self._all(
            f"""SELECT i.title FROM alerts a JOIN items i ON i.id = a.item_id
               JOIN story_posts p ON p.story_id = i.story_id AND p.channel = a.channel
               WHERE i.story_id = ? AND a.channel = ? AND a.status = 'sent'
                 AND (a.item_id = p.item_id OR {self.dialect.distinct("a.ts", "p.ts")})
               ORDER BY a.id""",
            [story_id, channel],
        )
        return [r["title"] for r in rows]

    def sent_alert_at(self, channel: str, ts: str) -> tuple[int, int, int] | None:
        """(alert id, item id, story id) of the alert delivered as the message ``ts`` in ``channel``.

        A copy folded into its parent's count shares the parent's ts: the parent's own alert
        (the story post's item) is preferred, so a parent is never taken for a reply.
        """
        row = self._one(
            """SELECT a.id, a.item_id, i.story_id FROM alerts a JOIN items i ON i.id = a.item_id
               LEFT JOIN story_posts p ON p.channel = a.channel AND p.ts = a.ts AND p.item_id = a.item_id
               WHERE a.channel = ? AND a.ts = ? AND a.status = 'sent'
               ORDER BY p.item_id IS NULL, a.id LIMIT 1""",
            [channel, ts],
        )
        return (row["id"], row["item_id"], row["story_id"]) if row else None

    def sent_alerts_of(self, item_ids: Sequence[int]) -> list[tuple[int, int, str, str]]:
        """(alert id, item id, channel, ts) of every delivered alert of these items, oldest first."""
        if not item_ids:
            return []
        marks = ",".join("?" * len(item_ids))
        rows = self._all(
            f"""SELECT id, item_id, channel, ts FROM alerts
                WHERE item_id IN ({marks}) AND status = 'sent' ORDER BY id""",
            list(item_ids),
        )
        return [(r["id"], r["item_id"], r["channel"], r["ts"]) for r in rows]

    def requeue_alert(self, alert_id: int, now: datetime) -> None:
        """Deliver a sent alert again, from scratch (a story correction moved its item): it goes
        through the channel's queue like any other, so pacing and ordering hold.

        Queued again ``now``: the delivery latency measured is the correction's, and a lost answer
        is looked for in the messages posted since then, not since the first delivery.
        """
        self.db.execute(
            """UPDATE alerts SET status = 'queued', ts = NULL, sent_at = NULL, attempts = 0, in_flight = 0,
                   plain_text = 0, next_attempt_at = NULL, outage = 0, last_error = NULL, created_at = ?
               WHERE id = ? AND status = 'sent'""",
            [iso(now), alert_id],
        )

    def mark_alert_sent(self, alert_id: int, ts: str, now: datetime) -> None:
        self.db.execute(
            """UPDATE alerts SET status = 'sent', ts = ?, sent_at = ?, attempts = attempts + 1, in_flight = 0,
                   next_attempt_at = NULL WHERE id = ?""",
            [ts, iso(now), alert_id],
        )

    def mark_alert_retry(
        self, alert_id: int, error: str, *, not_before: datetime, in_flight: bool, outage: bool = False
    ) -> None:
        """A failed attempt; the alert stays queued until ``not_before``.

        ``in_flight`` stays set when the attempt may have reached Slack (no answer came back);
        ``outage``: the wait is for Slack to come back (clear_outage_backoff ends it early).
        """
        self.db.execute(
            """UPDATE alerts SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, in_flight = ?,
                   outage = ? WHERE id = ?""",
            [error, iso(not_before), int(in_flight), int(outage), alert_id],
        )

    def clear_outage_backoff(self) -> int:
        """Slack answers again: alerts waiting out an outage are due now (rate limits still hold)."""
        cursor = self.db.execute(
            """UPDATE alerts SET next_attempt_at = NULL, outage = 0
               WHERE status = 'queued' AND outage = 1 AND next_attempt_at IS NOT NULL"""
        )
        return cursor.rowcount

    def recent_floods(self, since: datetime) -> list[tuple[str, str, int]]:
        """(source, channel, items summarised) of flood summaries queued since ``since``."""
        rows = self._all(
            """SELECT i.source, a.channel, sum(a.summary_count) AS n FROM alerts a
               JOIN items i ON i.id = a.item_id
               WHERE a.summary_count > 0 AND a.created_at >= ? GROUP BY i.source, a.channel
               ORDER BY n DESC""",
            [iso(since)],
        )
        return [(r["source"], r["channel"], r["n"]) for r in rows]

    def mark_alert_plain_text(self, alert_id: int, error: str) -> None:
        self.db.execute(
            """UPDATE alerts SET plain_text = 1, attempts = attempts + 1, last_error = ?, in_flight = 0
               WHERE id = ?""",
            [error, alert_id],
        )

    def mark_alert_dead(self, alert_id: int, error: str) -> None:
        """A dead letter: kept, listed by `newsalert outbox`, retried only by a human."""
        self.db.execute(
            """UPDATE alerts SET status = 'dead', attempts = attempts + 1, last_error = ?, in_flight = 0
               WHERE id = ?""",
            [error, alert_id],
        )

    def retry_dead_alerts(self, alert_ids: Sequence[int] = ()) -> int:
        """Queue dead letters again (all when no ids are given) and clear their channels' broken mark."""
        where = f"id IN ({','.join('?' * len(alert_ids))})" if alert_ids else "TRUE"
        with self.transaction():
            channels = [
                r["channel"]
                for r in self._all(
                    f"SELECT DISTINCT channel FROM alerts WHERE status = 'dead' AND {where}", list(alert_ids)
                )
            ]
            cursor = self.db.execute(
                f"""UPDATE alerts SET status = 'queued', next_attempt_at = NULL, plain_text = 0, attempts = 0
                    WHERE status = 'dead' AND {where}""",
                list(alert_ids),
            )
            for channel in channels:
                self._store.catalog.set_channel_broken(channel, None)
        return cursor.rowcount

    def hold_alert(self, alert_id: int, reason: str, until: datetime) -> None:
        """Not posted yet, on purpose: a mute that ends at ``until``; no attempt is counted."""
        self.db.execute(
            "UPDATE alerts SET last_error = ?, next_attempt_at = ? WHERE id = ?",
            [reason, iso(until), alert_id],
        )

    def mark_alert_muted(self, alert_id: int, reason: str) -> None:
        """Not posted, on purpose: a mute. Kept (status 'muted') so the outbox tells why."""
        self.db.execute(
            "UPDATE alerts SET status = 'muted', last_error = ?, in_flight = 0 WHERE id = ?",
            [reason, alert_id],
        )

    def outbox_summary(self) -> OutboxSummary:
        """How many alerts are queued and dead, and the oldest queued one."""
        counts = {
            r["status"]: r["n"]
            for r in self._all(
                "SELECT status, count(*) AS n FROM alerts WHERE status IN ('queued', 'dead') GROUP BY status"
            )
        }
        oldest = self._one(
            """SELECT created_at, channel, last_error FROM alerts WHERE status = 'queued'
               ORDER BY created_at, id LIMIT 1"""
        )
        return OutboxSummary(
            queued=counts.get("queued", 0),
            dead=counts.get("dead", 0),
            oldest_created_at=from_iso(oldest["created_at"]) if oldest else None,
            oldest_channel=oldest["channel"] if oldest else "",
            oldest_error=(oldest["last_error"] or "") if oldest else "",
        )


def fair_order(rows: Sequence[dict]) -> list[dict]:
    """Queued alerts (oldest first, with "id", "source" and "story_id") served round-robin by source.

    One source's flood cannot push another's alert behind its own: each turn takes the oldest
    alert of every source. Within a source, and within a story (whose reports may come from
    several sources), the queue's order holds, so a story's parent goes before its replies: an
    alert that comes up before an older one of its story waits for it.
    """
    turns: dict[str, int] = {}
    placed = []
    for r in rows:
        turn = turns.get(r["source"], 0)
        turns[r["source"]] = turn + 1
        placed.append((turn, r["id"], r))
    placed.sort(key=lambda p: (p[0], p[1]))
    story_queue: dict[int, list[int]] = {}
    for r in rows:
        story_queue.setdefault(r["story_id"], []).append(r["id"])
    early: dict[int, list[dict]] = {}  # story -> its alerts that came up before an older one
    ordered: list[dict] = []
    for _, _, r in placed:
        queue = story_queue[r["story_id"]]
        if queue[0] != r["id"]:
            early.setdefault(r["story_id"], []).append(r)
            continue
        ordered.append(r)
        queue.pop(0)
        held = sorted(early.get(r["story_id"], []), key=lambda w: w["id"])
        while held and queue and held[0]["id"] == queue[0]:
            ordered.append(held.pop(0))
            queue.pop(0)
        early[r["story_id"]] = held
    return ordered
