"""Looks into the store that only tests need (the bot itself never asks these questions)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from bot.model import Subscription
from bot.store import Store


def has_item(store: Store, source: str, guid: str) -> bool:
    return (
        store.db.execute("SELECT 1 FROM items WHERE source = ? AND guid = ?", [source, guid]).fetchone()
        is not None
    )


def story_of(store: Store, item_id: int) -> int:
    return store.db.execute("SELECT story_id FROM items WHERE id = ?", [item_id]).fetchone()[0]


def table_rows(store: Store, table: str, order_by: str = "id") -> list[dict]:
    """Every row of ``table`` as a dict, on either backend."""
    cursor = store.db.execute(f"SELECT * FROM {table} ORDER BY {order_by}")
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def row(store: Store, table: str, row_id: int) -> dict:
    """The row of ``table`` whose id is ``row_id``."""
    found = [r for r in table_rows(store, table) if r["id"] == row_id]
    assert found, f"no {table} row {row_id}"
    return found[0]


def broken_subscriptions(store: Store) -> list[tuple[str, str]]:
    rows = store.db.execute(
        "SELECT DISTINCT channel, broken FROM subscriptions WHERE broken IS NOT NULL ORDER BY channel"
    )
    return [(channel, why) for channel, why in rows]


def fts_consistent(store: Store) -> bool:
    """FTS5's own check that items_fts matches the items table."""
    try:
        store.db.execute("INSERT INTO items_fts (items_fts, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError:
        return False
    return True


def sync_subscriptions(store: Store, subs: Sequence[Subscription], now: datetime) -> None:
    """The config file's subscriptions changed, its sources and watchlists did not."""
    store.catalog.sync_config(store.catalog.active_sources(), store.catalog.active_watchlists(), subs, now)
