"""What people do from Slack: mutes, feedback, triage states and the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.model import AuditEntry, MessageMarks, Mute
from bot.store.db import Repository, from_iso, iso


class PeopleRepo(Repository):
    def mute(
        self, channel: str, kind: str, target: str, user: str, now: datetime, until: datetime | None = None
    ) -> None:
        """Mute a story ('story', its id) or a source ('source', its name) in one channel."""
        self.db.execute(
            """INSERT INTO mutes (channel, kind, target, user_id, created_at, until) VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT(channel, kind, target) DO UPDATE SET user_id = excluded.user_id,
                    created_at = excluded.created_at, until = excluded.until""",
            [channel, kind, target, user, iso(now), iso(until) if until else None],
        )

    def unmute(self, channel: str, kind: str, target: str) -> bool:
        cursor = self.db.execute(
            "DELETE FROM mutes WHERE channel = ? AND kind = ? AND target = ?", [channel, kind, target]
        )
        return cursor.rowcount == 1

    def channel_mutes(self, channel: str, now: datetime) -> list[Mute]:
        """The mutes in force in ``channel``; story mutes carry the story's first title."""
        rows = self._all(
            f"""SELECT m.*, (SELECT title FROM items WHERE story_id = {self.dialect.integer_of("m.target")}
                            ORDER BY id LIMIT 1) AS title
               FROM mutes m WHERE m.channel = ? AND (m.until IS NULL OR m.until > ?)
               ORDER BY m.kind, m.created_at""",
            [channel, iso(now)],
        )
        return [
            Mute(r["kind"], r["target"], r["user_id"], from_iso(r["until"]), r["title"] or "") for r in rows
        ]

    def alert_muted(self, channel: str, story_id: int, source: str, now: datetime) -> str | None:
        """Why an alert must not be posted in ``channel`` (its story or its source is muted), or None."""
        row = self._one(
            """SELECT kind, target FROM mutes WHERE channel = ? AND (until IS NULL OR until > ?)
               AND ((kind = 'story' AND target = ?) OR (kind = 'source' AND target = ?))""",
            [channel, iso(now), str(story_id), source],
        )
        if row is None:
            return None
        return "story muted" if row["kind"] == "story" else f"source {row['target']} muted"

    def mute_ends(self, channel: str, story_id: int, source: str, now: datetime) -> datetime | None:
        """When the mutes in force on this story or source in ``channel`` all end; None when one
        of them is for ever (or none is in force)."""
        rows = self._all(
            """SELECT until FROM mutes WHERE channel = ? AND (until IS NULL OR until > ?)
               AND ((kind = 'story' AND target = ?) OR (kind = 'source' AND target = ?))""",
            [channel, iso(now), str(story_id), source],
        )
        ends = [from_iso(r["until"]) for r in rows]
        return None if not ends or None in ends else max(e for e in ends if e is not None)

    def channels_muting_source(self, source: str, now: datetime) -> set[str]:
        rows = self._all(
            """SELECT channel FROM mutes WHERE kind = 'source' AND target = ?
               AND (until IS NULL OR until > ?)""",
            [source, iso(now)],
        )
        return {r["channel"] for r in rows}

    def add_feedback(
        self, item_id: int, channel: str, watchlists: Sequence[str], user: str, kind: str, now: datetime
    ) -> int:
        """Record feedback on an alert for each of its watchlists; returns how many rows were new."""
        added = 0
        with self.transaction():
            for watchlist in dict.fromkeys(watchlists):
                cursor = self.db.execute(
                    """INSERT INTO feedback (item_id, channel, watchlist, user_id, kind, created_at)
                       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    [item_id, channel, watchlist, user, kind, iso(now)],
                )
                added += cursor.rowcount
        return added

    def not_relevant_rates(self) -> dict[str, tuple[int, int]]:
        """watchlist -> (alerts marked not relevant, alerts posted), over every story message."""
        posted = {
            r["watchlist"]: r["n"]
            for r in self._all(
                f"""SELECT j.value AS watchlist, count(*) AS n
                    FROM story_posts, {self.dialect.json_texts("story_posts.watchlists", "j")}
                    GROUP BY j.value"""
            )
        }
        flagged = {
            r["watchlist"]: r["n"]
            for r in self._all(
                """SELECT watchlist, count(DISTINCT item_id || ' ' || channel) AS n FROM feedback
                   WHERE kind = 'not_relevant' GROUP BY watchlist"""
            )
        }
        return {w: (flagged.get(w, 0), posted.get(w, 0)) for w in sorted(set(posted) | set(flagged))}

    def set_triage(self, item_id: int, channel: str, state: str, user: str, now: datetime) -> None:
        self.db.execute(
            """INSERT INTO triage (item_id, channel, state, user_id, updated_at) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT(item_id, channel) DO UPDATE SET state = excluded.state, user_id = excluded.user_id,
                    updated_at = excluded.updated_at""",
            [item_id, channel, state, user, iso(now)],
        )

    def carry_triage(self, from_item: int, to_item: int, channel: str) -> tuple[str, str] | None:
        """A merge from Slack: the folded alert's claim or escalation in ``channel`` becomes the
        target alert's when the target has none in force (no state, unclaimed or reopened). A
        "done" is not carried: whoever marked it saw only the folded alert's reports. Returns the
        (state, user) carried, or None."""
        cursor = self.db.execute(
            """INSERT INTO triage (item_id, channel, state, user_id, updated_at)
               SELECT ?, channel, state, user_id, updated_at FROM triage
               WHERE item_id = ? AND channel = ? AND state IN ('claimed', 'escalated')
               ON CONFLICT(item_id, channel) DO UPDATE SET state = excluded.state,
                    user_id = excluded.user_id, updated_at = excluded.updated_at
               WHERE triage.state IN ('unclaimed', 'reopened')""",
            [to_item, from_item, channel],
        )
        if cursor.rowcount != 1:
            return None
        row = self._one(
            "SELECT state, user_id FROM triage WHERE item_id = ? AND channel = ?", [to_item, channel]
        )
        return (row["state"], row["user_id"]) if row else None

    def carry_story_mute(self, from_story: int, to_story: int, channel: str, now: datetime) -> str | None:
        """A merge from Slack: the folded story's mute in ``channel`` (who set it, until when) now
        mutes the story it joined, unless that story has a mute of its own in force there, which
        it keeps. Either way the folded story's mute goes (its story has no items left). Returns
        the user whose mute was carried, or None."""
        params = [channel, str(from_story)]
        row = self._one(
            """SELECT user_id FROM mutes WHERE channel = ? AND kind = 'story' AND target = ?
               AND (until IS NULL OR until > ?)""",
            [*params, iso(now)],
        )
        own = self._one(
            """SELECT 1 AS x FROM mutes WHERE channel = ? AND kind = 'story' AND target = ?
               AND (until IS NULL OR until > ?)""",
            [channel, str(to_story), iso(now)],
        )
        carried = row is not None and own is None
        if carried:
            self.db.execute(
                """INSERT INTO mutes (channel, kind, target, user_id, created_at, until)
                   SELECT channel, kind, ?, user_id, created_at, until FROM mutes
                   WHERE channel = ? AND kind = 'story' AND target = ?
                   ON CONFLICT(channel, kind, target) DO UPDATE SET user_id = excluded.user_id,
                        created_at = excluded.created_at, until = excluded.until""",
                [str(to_story), *params],
            )
        self.db.execute("DELETE FROM mutes WHERE channel = ? AND kind = 'story' AND target = ?", params)
        return row["user_id"] if carried and row is not None else None

    def message_state(self, channel: str, story_id: int, item_id: int, now: datetime) -> MessageMarks:
        """Who triaged, muted or flagged the alert on ``item_id`` in ``channel`` (render.MessageState)."""
        triage = self._one(
            "SELECT state, user_id FROM triage WHERE item_id = ? AND channel = ?", [item_id, channel]
        )
        source = self._one("SELECT source FROM items WHERE id = ?", [item_id])
        mutes = {
            r["kind"]: r["user_id"]
            for r in self._all(
                """SELECT kind, user_id FROM mutes WHERE channel = ? AND (until IS NULL OR until > ?)
                   AND ((kind = 'story' AND target = ?) OR (kind = 'source' AND target = ?))""",
                [channel, iso(now), str(story_id), source["source"] if source else ""],
            )
        }
        flagged = self._all(
            """SELECT user_id, min(id) AS first FROM feedback WHERE item_id = ? AND channel = ?
               AND kind = 'not_relevant' GROUP BY user_id ORDER BY first""",
            [item_id, channel],
        )
        return MessageMarks(
            triage=triage["state"] if triage else None,
            triage_by=triage["user_id"] if triage else None,
            story_muted_by=mutes.get("story"),
            source_muted_by=mutes.get("source"),
            not_relevant_by=tuple(r["user_id"] for r in flagged),
        )

    def record_audit(self, user: str, channel: str | None, action: str, detail: str, now: datetime) -> None:
        self.db.execute(
            "INSERT INTO audit (at, user_id, channel, action, detail) VALUES (?, ?, ?, ?, ?)",
            [iso(now), user, channel, action, detail],
        )

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """The latest changes made from Slack, newest first."""
        rows = self._all("SELECT * FROM audit ORDER BY id DESC LIMIT ?", [limit])
        return [
            AuditEntry(datetime.fromisoformat(r["at"]), r["user_id"], r["channel"], r["action"], r["detail"])
            for r in rows
        ]
