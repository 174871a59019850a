"""WebSub subscriptions: one per source, with its hub, topic, callback, secret and lease."""

from __future__ import annotations

from datetime import datetime

from bot.model import HubSubscription
from bot.store.db import Repository, from_iso, iso


def _subscription(row: dict) -> HubSubscription:
    return HubSubscription(
        source=row["source"],
        hub=row["hub"],
        topic=row["topic"],
        callback=row["callback"],
        secret=row["secret"],
        state=row["state"],
        requested_at=datetime.fromisoformat(row["requested_at"]),
        lease_seconds=row["lease_seconds"],
        verified_at=from_iso(row["verified_at"]),
        expires_at=from_iso(row["expires_at"]),
        retry_at=from_iso(row["retry_at"]),
        attempts=row["attempts"] or 0,
        last_error=row["last_error"] or "",
    )


class WebSubRepo(Repository):
    def by_callback(self, callback: str) -> HubSubscription | None:
        row = self._one("SELECT * FROM websub WHERE callback = ?", [callback])
        return _subscription(row) if row else None

    def subscriptions(self) -> list[HubSubscription]:
        return [_subscription(r) for r in self._all("SELECT * FROM websub ORDER BY source")]

    def advertised_hubs(self) -> dict[str, tuple[str, str]]:
        """source -> (hub, topic) of every active source whose feed advertises a hub."""
        rows = self._all(
            """SELECT name, websub_hub, websub_topic FROM sources
               WHERE websub_hub IS NOT NULL AND websub_topic IS NOT NULL AND origin IS NOT NULL
                 AND removed_at IS NULL AND disabled_at IS NULL"""
        )
        return {r["name"]: (r["websub_hub"], r["websub_topic"]) for r in rows}

    def live_sources(self, now: datetime) -> set[str]:
        """Sources pushed to us under a lease that has not run out (being renewed included)."""
        rows = self._all(
            "SELECT source FROM websub WHERE state IN ('active', 'renewing') AND expires_at > ?", [iso(now)]
        )
        return {r["source"] for r in rows}

    def record_request(self, sub: HubSubscription) -> None:
        """A (re)subscription or unsubscription was sent: the hub's verification is awaited.
        A renewal keeps the lease it had until the hub confirms the new one."""
        self.db.execute(
            """INSERT INTO websub (source, hub, topic, callback, secret, state, lease_seconds, requested_at)
               VALUES (:source, :hub, :topic, :callback, :secret, :state, :lease, :at)
               ON CONFLICT(source) DO UPDATE SET hub = :hub, topic = :topic, callback = :callback,
                    secret = :secret, state = :state, lease_seconds = :lease, requested_at = :at,
                    retry_at = NULL""",
            {
                "source": sub.source,
                "hub": sub.hub,
                "topic": sub.topic,
                "callback": sub.callback,
                "secret": sub.secret,
                "state": sub.state,
                "lease": sub.lease_seconds,
                "at": iso(sub.requested_at),
            },
        )

    def record_verified(self, source: str, lease_seconds: int, now: datetime, expires_at: datetime) -> None:
        self.db.execute(
            """UPDATE websub SET state = 'active', lease_seconds = ?, verified_at = ?, expires_at = ?,
                    attempts = 0, last_error = NULL, retry_at = NULL WHERE source = ?""",
            [lease_seconds, iso(now), iso(expires_at), source],
        )

    def record_failure(self, source: str, state: str, error: str, retry_at: datetime) -> None:
        """The hub refused (``denied``) or could not be reached (``failed``): try again later."""
        self.db.execute(
            """UPDATE websub SET state = ?, last_error = ?, retry_at = ?, attempts = attempts + 1,
                    expires_at = CASE WHEN ? = 'denied' THEN NULL ELSE expires_at END
               WHERE source = ?""",
            [state, error, iso(retry_at), state, source],
        )

    def delete(self, source: str) -> None:
        self.db.execute("DELETE FROM websub WHERE source = ?", [source])
