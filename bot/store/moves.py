"""Messages a story correction moved away from: split replies and folded parents, kept so that a
second click on one is answered instead of applied again, and so that a split reply is edited once
its item's own alert is posted."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.model import StoryMove
from bot.store.db import Repository, iso


class MoveRepo(Repository):
    def add_move(
        self,
        kind: str,
        item_id: int,
        channel: str,
        old_ts: str,
        user_id: str,
        now: datetime,
        *,
        alert_id: int | None = None,
        target_ts: str | None = None,
    ) -> None:
        """Remember a message a correction moved away from (a merge's is already edited)."""
        self.db.execute(
            """INSERT INTO story_moves (kind, item_id, channel, old_ts, alert_id, target_ts, user_id,
                                        created_at, edited_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                kind,
                item_id,
                channel,
                old_ts,
                alert_id,
                target_ts,
                user_id,
                iso(now),
                iso(now) if kind == "merge" else None,
            ],
        )

    def move_at(self, channel: str, ts: str) -> StoryMove | None:
        """The correction that moved the message ``ts`` in ``channel`` away, if one did."""
        rows = self._moves("m.channel = ? AND m.old_ts = ?", [channel, ts])
        return rows[0] if rows else None

    def moves_to_edit(self, channel: str) -> list[StoryMove]:
        """Split replies in ``channel`` whose item's own alert is posted, not yet edited to say so."""
        return self._moves(
            "m.channel = ? AND m.kind = 'split' AND m.edited_at IS NULL AND a.status = 'sent'", [channel]
        )

    def channels_to_edit(self) -> list[str]:
        """Channels with a split reply still to edit (moves_to_edit): the deliverer visits them even
        with nothing queued, so an edit Slack failed is retried without waiting for a new alert."""
        rows = self._all(
            """SELECT DISTINCT m.channel FROM story_moves m JOIN alerts a ON a.id = m.alert_id
               WHERE m.kind = 'split' AND m.edited_at IS NULL AND a.status = 'sent' ORDER BY m.channel"""
        )
        return [r["channel"] for r in rows]

    def split_stories(self, story_ids: Sequence[int]) -> set[int]:
        """Which of these stories hold a report an analyst took out of another ("Not this story")."""
        if not story_ids:
            return set()
        marks = ",".join("?" * len(story_ids))
        rows = self._all(
            f"""SELECT DISTINCT i.story_id FROM story_moves m JOIN items i ON i.id = m.item_id
                WHERE m.kind = 'split' AND i.story_id IN ({marks})""",
            list(story_ids),
        )
        return {r["story_id"] for r in rows}

    def mark_move_edited(self, move_id: int, now: datetime) -> None:
        self.db.execute("UPDATE story_moves SET edited_at = ? WHERE id = ?", [iso(now), move_id])

    def _moves(self, where: str, params: list) -> list[StoryMove]:
        rows = self._all(
            f"""SELECT m.*, a.ts AS new_ts FROM story_moves m LEFT JOIN alerts a ON a.id = m.alert_id
                WHERE {where} ORDER BY m.id""",
            params,
        )
        return [
            StoryMove(
                id=r["id"],
                kind=r["kind"],
                item_id=r["item_id"],
                channel=r["channel"],
                old_ts=r["old_ts"],
                user_id=r["user_id"],
                created_at=datetime.fromisoformat(r["created_at"]),
                alert_id=r["alert_id"],
                target_ts=r["target_ts"],
                new_ts=r["new_ts"],
            )
            for r in rows
        ]
