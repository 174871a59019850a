"""Per-source fetch state: validators, successes and failures, backoff, the last body's hash,
and what adaptive polling decided (next poll, interval, reason) and needs (feed hints, rates)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from bot.model import FeedHints, SourceRow, SourceState
from bot.store.db import Repository, from_iso, iso
from bot.store.rows import source_row


class SourceRepo(Repository):
    def source_state(self, name: str) -> SourceState:
        row = self._one("SELECT * FROM sources WHERE name = ?", [name])
        if row is None:
            return SourceState(name)
        return SourceState(
            name=name,
            etag=row["etag"],
            last_modified=row["last_modified"],
            last_success=from_iso(row["last_success"]),
            consecutive_failures=row["consecutive_failures"] or 0,
        )

    def record_fetch_success(
        self,
        name: str,
        url: str,
        now: datetime,
        *,
        etag: str | None,
        last_modified: str | None,
    ) -> None:
        self.db.execute(
            """INSERT INTO sources (name, url, etag, last_modified, last_polled, last_success,
                                    consecutive_failures)
               VALUES (:name, :url, :etag, :lm, :now, :now, 0)
               ON CONFLICT(name) DO UPDATE SET etag = :etag, last_modified = :lm,
                    last_polled = :now, last_success = :now, consecutive_failures = 0, next_poll_at = NULL""",
            {"name": name, "url": url, "etag": etag, "lm": last_modified, "now": iso(now)},
        )

    def record_fetch_failure(
        self,
        name: str,
        url: str,
        now: datetime,
        reason: str,
        *,
        retry_at: datetime | None = None,
        disable: bool = False,
    ) -> None:
        """A failed fetch; ``retry_at`` holds the source back (backoff), ``disable`` stops it (410)."""
        self.db.execute(
            """INSERT INTO sources (name, url, last_polled, last_error, last_error_at, consecutive_failures,
                                    next_poll_at, disabled_at, disabled_reason)
               VALUES (:name, :url, :now, :reason, :now, 1, :retry, :disabled, :why)
               ON CONFLICT(name) DO UPDATE SET last_polled = :now, last_error = :reason,
                    last_error_at = :now, consecutive_failures = sources.consecutive_failures + 1,
                    next_poll_at = :retry, disabled_at = :disabled, disabled_reason = :why""",
            {
                "name": name,
                "url": url,
                "now": iso(now),
                "reason": reason,
                "retry": iso(retry_at) if retry_at else None,
                "disabled": iso(now) if disable else None,
                "why": reason if disable else None,
            },
        )

    def move_source(self, name: str, url: str) -> None:
        """A permanent redirect: fetch the new address from now on (and forget the old validators)."""
        self.db.execute(
            "UPDATE sources SET url = ?, etag = NULL, last_modified = NULL WHERE name = ?", [url, name]
        )

    def source_due(self, name: str, now: datetime) -> bool:
        row = self._one("SELECT next_poll_at, disabled_at FROM sources WHERE name = ?", [name])
        if row is None:
            return True
        return row["disabled_at"] is None and (row["next_poll_at"] is None or row["next_poll_at"] <= iso(now))

    def listed(self) -> list[SourceRow]:
        """Every source of the catalog that is not removed (disabled ones included), by name."""
        return self.source_health_rows(datetime.max.replace(tzinfo=UTC))

    def source_health_rows(self, since: datetime) -> list[SourceRow]:
        """Every active source with its fetch state and ``items``: how many it brought since ``since``."""
        rows = self._all(
            f"""SELECT s.*, coalesce(n.items, 0) AS items FROM sources s
               LEFT JOIN (SELECT source, count(*) AS items FROM items WHERE first_seen >= ? GROUP BY source) n
                 ON n.source = s.name
               WHERE s.origin IS NOT NULL AND s.removed_at IS NULL
               ORDER BY {self.dialect.nocase("s.name")}""",
            [iso(since)],
        )
        return [source_row(r) for r in rows]

    def body_hash(self, name: str) -> str | None:
        """The hash recorded by set_body_hash() for the source's last ingested 200 body."""
        row = self._one("SELECT body_hash FROM sources WHERE name = ?", [name])
        return row["body_hash"] if row else None

    def set_body_hash(self, name: str, body_hash: str | None) -> None:
        """Record it in the transaction that stores the body's items (so never without them)."""
        self.db.execute("UPDATE sources SET body_hash = ? WHERE name = ?", [body_hash, name])

    # --- adaptive polling (bot/ingest/schedule.py) ---------------------------------------------

    def due_names(self, now: datetime) -> set[str]:
        """Sources whose next poll is due (or was never decided), disabled ones excepted."""
        rows = self._all(
            """SELECT name FROM sources WHERE disabled_at IS NULL
               AND (next_poll_at IS NULL OR next_poll_at <= ?)""",
            [iso(now)],
        )
        return {r["name"] for r in rows}

    def set_next_polls(self, decisions: Iterable[tuple[str, datetime, int, str]]) -> None:
        """(name, next poll, effective interval in seconds, why) of each source just decided."""
        self._many(
            "UPDATE sources SET next_poll_at = ?, poll_interval = ?, poll_reason = ? WHERE name = ?",
            [(iso(at), interval, why, name) for name, at, interval, why in decisions],
        )

    def stored_feed_hints(self, names: Iterable[str]) -> dict[str, FeedHints]:
        """The hints of each source's last body read (a 304 has none of its own)."""
        wanted = set(names)
        rows = self._all(
            "SELECT name, feed_ttl, feed_update_period, websub_hub, websub_topic FROM sources"
            " WHERE feed_ttl IS NOT NULL OR feed_update_period IS NOT NULL OR websub_hub IS NOT NULL"
        )
        return {
            r["name"]: FeedHints(
                ttl=r["feed_ttl"],
                update_period=r["feed_update_period"],
                hubs=(r["websub_hub"],) if r["websub_hub"] else (),
                self_url=r["websub_topic"],
            )
            for r in rows
            if r["name"] in wanted
        }

    def record_feed_hints(self, hints: Iterable[tuple[str, FeedHints, str]]) -> None:
        """(name, hints, topic) from bodies just read: the first hub and the topic to subscribe to."""
        self._many(
            """UPDATE sources SET feed_ttl = ?, feed_update_period = ?, websub_hub = ?, websub_topic = ?
               WHERE name = ?""",
            [
                (h.ttl, h.update_period, h.hubs[0] if h.hubs else None, topic if h.hubs else None, name)
                for name, h, topic in hints
            ],
        )

    def publishing_counts(self, since: datetime) -> dict[str, tuple[int, int]]:
        """name -> (items published and first seen since ``since``, configured interval) of every
        active source that has been read at least once: the inputs of its publishing rate."""
        rows = self._all(
            """SELECT s.name, s.interval, coalesce(n.items, 0) AS items FROM sources s
               LEFT JOIN (SELECT source, count(*) AS items FROM items
                          WHERE first_seen >= :since AND published >= :since GROUP BY source) n
                 ON n.source = s.name
               WHERE s.last_success IS NOT NULL AND s.origin IS NOT NULL AND s.removed_at IS NULL
                 AND s.disabled_at IS NULL""",
            {"since": iso(since)},
        )
        return {r["name"]: (r["items"], r["interval"] or 900) for r in rows}
