from __future__ import annotations

from datetime import UTC, datetime

from bot.model import Item, Span, Subscription
from bot.store import Store, migrations, subscription_id

NOW = datetime(2026, 2, 5, 18, 0, tzinfo=UTC)


def item(guid: str = "g1", url: str = "https://n.example/1") -> Item:
    return Item(
        source="S",
        guid=guid,
        url=url,
        title="CSAM story",
        text="Text about CSAM.",
        published=NOW,
        fetched=NOW,
        outlet="BBC",
        headline_only=False,
    )


def test_schema_is_created_once_and_the_file_uses_wal(tmp_path) -> None:
    path = tmp_path / "t.db"
    Store.open(path).close()
    store = Store.open(path)  # re-opening applies nothing new
    assert [m.name for m in migrations.applied(store.db)] == ["m001_initial"]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_items_round_trip_through_the_outbox(tmp_path) -> None:
    store = Store.open(tmp_path / "t.db")
    item_id = store.add_item(item())
    store.add_matches(item_id, {"csam": [Span("text", 11, 15, "CSAM")]})
    store.enqueue_alert(item_id, "C1", ["csam"], NOW)
    (queued,) = store.queued_alerts()
    assert queued.item == item()
    assert queued.spans == (Span("text", 11, 15, "CSAM"),)
    assert queued.watchlists == ("csam",)
    assert store.has_item("S", "g1") and not store.has_item("S", "g2")
    assert store.item_id_for_url("https://n.example/1") == item_id
    assert store.item_id_for_url("") is None
    store.close()


def test_config_subscriptions_are_synced_with_stable_ids(tmp_path) -> None:
    store = Store.open(tmp_path / "t.db")
    a, b = Subscription("C1", ("csam",)), Subscription("C2", ("deepfakes", "csam"))
    store.sync_config_subscriptions([a, b], NOW)
    store.sync_config_subscriptions([b], NOW)
    assert store.realtime_subscriptions() == [b]
    ids = [r["id"] for r in store.db["subscriptions"].rows]
    assert ids == [subscription_id(b)] and len(ids[0]) == 8
    assert subscription_id(Subscription("C2", ("csam", "deepfakes"))) == subscription_id(b)
    store.close()
