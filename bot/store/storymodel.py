"""The story model's records: what put each item in its story, the fitted model versions (with the
date and figures each was fitted with) and the analysts' corrections, kept as labels."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

from bot.store.db import Repository, iso
from bot.stories.decide import Decision, Match
from bot.stories.labeled import LabelItem, StoryLabel
from bot.stories.model import StoryModel, shipped


class StoryModelRepo(Repository):
    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        super().__init__(store)
        self._model: tuple[int, StoryModel] | None = None  # (story_models row id or 0, the model)

    def save_decision(self, item_id: int, story_id: int, decision: Decision) -> None:
        """What put the item in its story (or left it on its own): `newsalert story ID --why`."""
        best = decision.best
        # vars(), not asdict(): asdict deep-copies, and was a fifth of a clustered item's cost.
        detail = {
            "best": vars(best) if best else None,
            "rejected": vars(decision.rejected) if decision.rejected else None,
            "compared": decision.compared,
        }
        self.db.execute(
            """INSERT INTO story_decisions (item_id, story_id, probability, matched_item, detail)
               VALUES (?, ?, ?, ?, ?) ON CONFLICT(item_id) DO UPDATE SET story_id = excluded.story_id,
               probability = excluded.probability, matched_item = excluded.matched_item,
               detail = excluded.detail""",
            [
                item_id,
                story_id,
                best.probability if best else None,
                best.item_id if best else None,
                json.dumps(detail),
            ],
        )

    def decisions(self, story_id: int) -> dict[int, tuple[Match | None, Match | None, int]]:
        """item id -> (what put it in the story, the best story it was not put in, items compared)."""
        rows = self._all(
            """SELECT d.item_id, d.detail FROM story_decisions d JOIN items i ON i.id = d.item_id
               WHERE i.story_id = ?""",
            [story_id],
        )
        out = {}
        for row in rows:
            detail = json.loads(row["detail"])
            best, rejected = (Match(**d) if d else None for d in (detail.get("best"), detail.get("rejected")))
            out[row["item_id"]] = (best, rejected, int(detail.get("compared", 0)))
        return out

    def record_label(self, item_a: int, item_b: int, same: bool, user_id: str, now: datetime) -> int:
        """Remember an analyst's correction: the two items are one story, or two."""
        copies = [self._label_item(i) for i in (item_a, item_b)]
        return self._insert_id(
            "INSERT INTO story_labels (same, a, b, user_id, created_at) VALUES (?, ?, ?, ?, ?)",
            [int(same), *(json.dumps(asdict(c), default=str) for c in copies), user_id, iso(now)],
        )

    def _label_item(self, item_id: int) -> LabelItem:
        row = self._one("SELECT source, outlet, title, text, first_seen FROM items WHERE id = ?", [item_id])
        if row is None:
            raise KeyError(item_id)
        via = row["source"] if row["outlet"] else ""
        return LabelItem(
            row["outlet"] or row["source"], via, row["title"], row["text"] or "", row["first_seen"]
        )

    def labels(self) -> list[StoryLabel]:
        """Every recorded correction, oldest first."""
        out = []
        for row in self._all("SELECT id, same, a, b, user_id, created_at FROM story_labels ORDER BY id"):
            a, b = (LabelItem(**json.loads(row[k])) for k in ("a", "b"))
            out.append(
                StoryLabel(row["id"], bool(row["same"]), a, b, row["user_id"] or "", row["created_at"])
            )
        return out

    def save_model(self, model: StoryModel, now: datetime) -> int:
        """Keep a fitted model, with its date and figures, and make it the one the bot uses."""
        self.db.execute("UPDATE story_models SET active = 0 WHERE active = 1")
        return self._insert_id(
            "INSERT INTO story_models (fitted, model, figures, created_at, active) VALUES (?, ?, ?, ?, 1)",
            [model.fitted, model.to_json(), json.dumps(model.figures), iso(now)],
        )

    def model(self) -> StoryModel:
        """The model the decision uses: the last one `newsalert stories fit` kept, else the shipped one."""
        row = self._one("SELECT max(id) AS id FROM story_models WHERE active = 1")
        key = row["id"] if row and row["id"] is not None else 0
        if self._model is None or self._model[0] != key:
            self._model = (key, self.active_model() or shipped())
        return self._model[1]

    def active_model(self) -> StoryModel | None:
        """The model `newsalert stories fit` kept last, if any (else the shipped one is used)."""
        row = self._one("SELECT id, model FROM story_models WHERE active = 1 ORDER BY id DESC LIMIT 1")
        return StoryModel.from_json(row["model"], f"story_models row {row['id']}") if row else None
