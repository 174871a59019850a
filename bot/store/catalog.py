"""The catalog: sources, watchlists and subscriptions, from the config file, Slack or OPML."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from bot.model import CatalogSource, Source, Subscription, Watchlist, WatchlistRow
from bot.store.db import Repository, from_iso, iso
from bot.store.rows import (
    subscription_from_row,
    subscription_id,
    subscription_rows,
)


class CatalogRepo(Repository):
    def sync_config(
        self,
        sources: Sequence[Source],
        watchlists: Sequence[Watchlist],
        subscriptions: Sequence[Subscription],
        now: datetime,
    ) -> None:
        """Make the config file's rows match the file; rows made or changed from Slack stay as they are.

        For each kind: a row someone changed from Slack (changed_by set) or that came from
        elsewhere is left alone; any other row listed in the file takes the file's values and is
        active; a config row no longer in the file is marked removed.
        """
        with self.transaction():
            self._sync(
                "sources",
                "name",
                {
                    # A restart gives a source disabled as gone (HTTP 410) one more try.
                    s.name: {
                        "name": s.name,
                        "url": s.url,
                        "type": s.type,
                        "interval": s.interval,
                        "min_interval": s.min_interval,
                        "max_interval": s.max_interval,
                        "disabled_at": None,
                        "disabled_reason": None,
                    }
                    for s in sources
                },
                now,
            )
            self._sync(
                "watchlists",
                "name",
                {
                    w.name: {"name": w.name, "query": w.query, "description": w.description}
                    for w in watchlists
                },
                now,
            )
            self._sync("subscriptions", "id", subscription_rows(subscriptions), now)

    def _sync(self, table: str, key: str, wanted: dict[str, dict], now: datetime) -> None:
        existing = {
            r[key]: r for r in self._all(f"SELECT {key}, origin, removed_at, changed_by FROM {table}")
        }
        for name, row in existing.items():
            if (
                row["origin"] == "config"
                and not row["changed_by"]
                and name not in wanted
                and not row["removed_at"]
            ):
                self.db.execute(f"UPDATE {table} SET removed_at = ? WHERE {key} = ?", [iso(now), name])
        for name, values in wanted.items():
            row = existing.get(name)
            if row is not None and (row["changed_by"] or row["origin"] not in (None, "config")):
                continue
            stamp = {"sources": "added_at", "watchlists": "updated_at", "subscriptions": "created_at"}[table]
            record = {**values, "origin": "config", "removed_at": None, stamp: iso(now)}
            columns = ", ".join(record)
            # The first-seen stamp is set by the insert only: an update keeps the original.
            updates = ", ".join(f"{c} = excluded.{c}" for c in record if c not in (key, stamp))
            self.db.execute(
                f"""INSERT INTO {table} ({columns}) VALUES ({", ".join("?" * len(record))})
                    ON CONFLICT({key}) DO UPDATE SET {updates}""",
                list(record.values()),
            )

    def active_sources(self, due_by: datetime | None = None) -> list[Source]:
        """Every active source; with ``due_by``, only those whose next poll is due by then."""
        due = "" if due_by is None else "AND (next_poll_at IS NULL OR next_poll_at <= :due)"
        rows = self._all(
            f"""SELECT name, url, type, interval, min_interval, max_interval FROM sources
                WHERE origin IS NOT NULL AND removed_at IS NULL AND disabled_at IS NULL {due}
                ORDER BY added_at, name""",
            {"due": iso(due_by) if due_by else None},
        )
        return [
            Source(
                r["name"],
                r["url"],
                r["type"] or "feed",
                r["interval"] or 900,
                min_interval=r["min_interval"],
                max_interval=r["max_interval"],
            )
            for r in rows
        ]

    def active_watchlists(self) -> list[Watchlist]:
        rows = self._all("SELECT * FROM watchlists WHERE removed_at IS NULL ORDER BY rowid")
        return [Watchlist(r["name"], r["query"], r["description"] or "") for r in rows]

    def realtime_subscriptions(self) -> list[Subscription]:
        rows = self._all(
            """SELECT * FROM subscriptions WHERE mode = 'realtime' AND removed_at IS NULL
               ORDER BY created_at, id"""
        )
        return [subscription_from_row(r) for r in rows]

    def set_channel_broken(self, channel: str, reason: str | None) -> None:
        """Mark (or, with None, clear) every subscription of ``channel`` as undeliverable."""
        self.db.execute("UPDATE subscriptions SET broken = ? WHERE channel = ?", [reason, channel])

    def subscriptions(self) -> list[tuple[str, Subscription, datetime, datetime | None]]:
        """(id, subscription, created_at, digest covered until) of every active subscription."""
        rows = self._all("SELECT * FROM subscriptions WHERE removed_at IS NULL ORDER BY created_at, id")
        return [
            (
                r["id"],
                subscription_from_row(r),
                datetime.fromisoformat(r["created_at"]),
                from_iso(r["digest_covered_until"]),
            )
            for r in rows
        ]

    def channel_subscriptions(self, channel: str) -> list[tuple[str, str, str | None]]:
        """(watchlist, origin, changed_by) of every realtime subscription of ``channel``."""
        rows = self._all(
            """SELECT watchlists, origin, changed_by FROM subscriptions
               WHERE channel = ? AND mode = 'realtime' AND removed_at IS NULL ORDER BY created_at, id""",
            [channel],
        )
        seen: dict[str, tuple[str, str, str | None]] = {}
        for r in rows:
            for name in json.loads(r["watchlists"]):
                seen.setdefault(name, (name, r["origin"], r["changed_by"]))
        return list(seen.values())

    def subscribe(self, channel: str, watchlists: Sequence[str], user: str, now: datetime) -> list[str]:
        """Add realtime subscriptions of ``channel``; returns the watchlists it did not have yet."""
        with self.transaction():
            have = {name for name, _, _ in self.channel_subscriptions(channel)}
            added = [w for w in dict.fromkeys(watchlists) if w not in have]
            for name in added:
                self._slack_subscription(channel, name, user, now)
        return added

    def unsubscribe(self, channel: str, watchlists: Sequence[str], user: str, now: datetime) -> list[str]:
        """Remove realtime subscriptions of ``channel``; returns the watchlists it did have.

        A row listing several watchlists (as the config file writes them) is marked removed as a
        whole and the ones still wanted come back as rows of their own, made from Slack.
        """
        drop = set(watchlists)
        with self.transaction():
            rows = self._all(
                """SELECT id, watchlists FROM subscriptions
                   WHERE channel = ? AND mode = 'realtime' AND removed_at IS NULL""",
                [channel],
            )
            removed: list[str] = []
            keep: list[str] = []
            untouched: set[str] = set()
            for r in rows:
                names = json.loads(r["watchlists"])
                if drop.isdisjoint(names):
                    untouched.update(names)
                    continue
                self.db.execute(
                    "UPDATE subscriptions SET removed_at = ?, changed_by = ? WHERE id = ?",
                    [iso(now), user, r["id"]],
                )
                removed += [n for n in names if n in drop]
                keep += [n for n in names if n not in drop]
            for name in dict.fromkeys(keep):
                if name not in untouched:
                    self._slack_subscription(channel, name, user, now)
        return [w for w in dict.fromkeys(watchlists) if w in removed]

    def _slack_subscription(self, channel: str, watchlist: str, user: str, now: datetime) -> None:
        # The id a config entry for this one watchlist would have: re-subscribing revives that row.
        sub_id = subscription_id(Subscription(channel, (watchlist,)))
        self.db.execute(
            """INSERT INTO subscriptions (id, channel, watchlists, mode, origin, created_at, changed_by)
               VALUES (?, ?, ?, 'realtime', 'slack', ?, ?)
               ON CONFLICT(id) DO UPDATE SET removed_at = NULL, broken = NULL,
                    changed_by = excluded.changed_by""",
            [sub_id, channel, json.dumps([watchlist]), iso(now), user],
        )

    def subscribe_digest(self, sub: Subscription, user: str, now: datetime) -> str:
        """Add (or revive) a digest subscription made from Slack; returns its id."""
        sid = subscription_id(sub)
        self.db.execute(
            """INSERT INTO subscriptions (id, channel, watchlists, mode, schedule, timezone, skip_empty, top,
                                          origin, created_at, changed_by)
               VALUES (?, ?, ?, 'digest', ?, ?, ?, ?, 'slack', ?, ?)
               ON CONFLICT(id) DO UPDATE SET removed_at = NULL, broken = NULL,
                    changed_by = excluded.changed_by""",
            [
                sid,
                sub.channel,
                json.dumps(list(sub.watchlists)),
                sub.schedule,
                sub.timezone,
                int(sub.skip_empty),
                sub.top,
                iso(now),
                user,
            ],
        )
        return sid

    def unsubscribe_digest(self, channel: str, subscription_id: str, user: str, now: datetime) -> bool:
        cursor = self.db.execute(
            """UPDATE subscriptions SET removed_at = ?, changed_by = ?
               WHERE id = ? AND channel = ? AND mode = 'digest' AND removed_at IS NULL""",
            [iso(now), user, subscription_id, channel],
        )
        return cursor.rowcount == 1

    def watchlist_row(self, name: str) -> WatchlistRow | None:
        """The watchlist of that name, a removed one included."""
        r = self._one("SELECT * FROM watchlists WHERE name = ?", [name])
        if r is None:
            return None
        return WatchlistRow(r["name"], r["query"], r["description"] or "", r["removed_at"] is not None)

    def save_watchlist(self, name: str, query: str, user: str, now: datetime) -> None:
        """Add (or revive, or change the query of) a watchlist from Slack."""
        self.db.execute(
            """INSERT INTO watchlists (name, query, description, origin, updated_at, changed_by)
               VALUES (?, ?, '', 'slack', ?, ?)
               ON CONFLICT(name) DO UPDATE SET query = excluded.query, removed_at = NULL,
                    changed_by = excluded.changed_by, updated_at = excluded.updated_at""",
            [name, query, iso(now), user],
        )

    def remove_watchlist(self, name: str, user: str, now: datetime) -> bool:
        cursor = self.db.execute(
            "UPDATE watchlists SET removed_at = ?, changed_by = ? WHERE name = ? AND removed_at IS NULL",
            [iso(now), user, name],
        )
        return cursor.rowcount == 1

    def channels_subscribed_to(self, watchlist: str) -> list[str]:
        return sorted({s.channel for s in self.realtime_subscriptions() if watchlist in s.watchlists})

    def add_source(self, source: Source, user: str, now: datetime) -> None:
        """Add (or revive) a source from Slack. Validators are reset: the URL may have changed."""
        self.db.execute(
            """INSERT INTO sources (name, url, type, interval, origin, added_at, changed_by,
                                    consecutive_failures)
               VALUES (?, ?, ?, ?, 'slack', ?, ?, 0)
               ON CONFLICT(name) DO UPDATE SET url = excluded.url, type = excluded.type,
                    interval = excluded.interval, origin = COALESCE(sources.origin, 'slack'),
                    removed_at = NULL, changed_by = excluded.changed_by, added_at = excluded.added_at,
                    etag = NULL, last_modified = NULL, disabled_at = NULL, disabled_reason = NULL""",
            [source.name, source.url, source.type, source.interval, iso(now), user],
        )

    def remove_source(self, name: str, user: str, now: datetime) -> bool:
        cursor = self.db.execute(
            """UPDATE sources SET removed_at = ?, changed_by = ?
               WHERE name = ? AND origin IS NOT NULL AND removed_at IS NULL""",
            [iso(now), user, name],
        )
        return cursor.rowcount == 1

    def broken_active_subscriptions(self) -> list[tuple[str, str]]:
        """(channel, why) of active subscriptions that cannot be delivered."""
        rows = self._all(
            """SELECT DISTINCT channel, broken FROM subscriptions
               WHERE broken IS NOT NULL AND removed_at IS NULL ORDER BY channel"""
        )
        return [(r["channel"], r["broken"]) for r in rows]

    def source_catalog(self) -> list[CatalogSource]:
        """Every source row, removed ones included (for imports)."""
        rows = self._all("SELECT name, url, removed_at FROM sources ORDER BY name")
        return [CatalogSource(r["name"], r["url"], r["removed_at"] is not None) for r in rows]

    def import_source(self, source: Source, now: datetime) -> None:
        """Add a source from an OPML import, or bring back the removed row of the same name."""
        self.db.execute(
            """INSERT INTO sources (name, url, type, interval, origin, added_at, consecutive_failures)
               VALUES (?, ?, ?, ?, 'opml', ?, 0)
               ON CONFLICT(name) DO UPDATE SET url = excluded.url, type = excluded.type,
                    interval = excluded.interval, origin = 'opml', added_at = excluded.added_at,
                    removed_at = NULL, changed_by = NULL, etag = NULL, last_modified = NULL,
                    disabled_at = NULL, disabled_reason = NULL, next_poll_at = NULL
               WHERE sources.removed_at IS NOT NULL OR sources.origin IS NULL""",
            [source.name, source.url, source.type, source.interval, iso(now)],
        )
