"""The SQLite store: schema and migrations, the outbox round trip, the catalog synced from the config."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.ingest.normalize import url_key
from bot.model import Item, Span, Subscription
from bot.store import Store
from bot.store.rows import subscription_id
from bot.store.schema import migrations
from tests.store_checks import has_item, sync_subscriptions

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
    assert migrations.pending(store.db) == []
    assert [m.name for m in migrations.applied(store.db)][:2] == ["m001_initial", "m002_stories"]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_items_round_trip_through_the_outbox(db_target: str) -> None:
    store = Store.open(db_target)
    story = store.stories.new_story(NOW)
    item_id = store.items.add_item(item(), story_id=story)
    store.items.add_matches(item_id, {"csam": [Span("text", 11, 15, "CSAM")]})
    store.outbox.enqueue_alert(item_id, "C1", ["csam"], NOW)
    (queued,) = store.outbox.queued_alerts()
    assert queued.item == item()
    assert queued.spans == (Span("text", 11, 15, "CSAM"),)
    assert queued.watchlists == ("csam",)
    assert has_item(store, "S", "g1") and not has_item(store, "S", "g2")
    key = url_key("https://n.example/1")
    assert store.items.items_by_url_key([key, url_key("https://n.example/2")]) == {key: (item_id, story)}
    assert store.items.items_by_url_key([""]) == {}
    store.close()


def test_config_subscriptions_are_synced_with_stable_ids(db_target: str) -> None:
    store = Store.open(db_target)
    a, b = Subscription("C1", ("csam",)), Subscription("C2", ("deepfakes", "csam"))
    sync_subscriptions(store, [a, b], NOW)
    sync_subscriptions(store, [b], NOW)
    assert store.catalog.realtime_subscriptions() == [b]
    active = [r[0] for r in store.db.execute("SELECT id FROM subscriptions WHERE removed_at IS NULL")]
    assert active == [subscription_id(b)] and len(active[0]) == 8
    assert subscription_id(Subscription("C2", ("csam", "deepfakes"))) == subscription_id(b)
    store.close()


def test_items_stored_before_stories_existed_get_one_story_each(tmp_path) -> None:
    import sqlite_utils

    db = sqlite_utils.Database(tmp_path / "old.db")
    migrations.apply(db, stop_before="m002_stories")
    db["items"].insert_all(
        [
            {
                "source": "S",
                "guid": "a",
                "url": "https://n.example/a",
                "title": "A",
                "published": "x",
                "first_seen": "2026-02-05T18:00:00+00:00",
            },
            {
                "source": "T",
                "guid": "b",
                "url": "https://n.example/a",
                "title": "A",
                "published": "x",
                "first_seen": "2026-02-05T18:01:00+00:00",
                "duplicate_of": 1,
            },
        ]
    )
    db.close()
    store = Store.open(tmp_path / "old.db")
    assert [r["story_id"] for r in store.db["items"].rows] == [1, 1]
    assert store.count("alerts") == 0 and store.db["stories"].count == 1
    store.close()


def test_the_config_file_seeds_the_catalog_and_slack_changes_win(db_target: str) -> None:
    from bot.model import Source, Watchlist

    store = Store.open(db_target)
    sub = Subscription("C1", ("csam",))
    store.catalog.sync_config(
        [Source("A", "https://a.example/feed")], [Watchlist("csam", "CSAM")], [sub], NOW
    )
    assert [s.url for s in store.catalog.active_sources()] == ["https://a.example/feed"]
    # a config edit applies on the next start; an entry gone from the file is removed
    store.catalog.sync_config(
        [Source("A", "https://a.example/new"), Source("B", "https://b.example/feed")],
        [Watchlist("csam", "CSAM OR CSEM")],
        [sub],
        NOW,
    )
    assert [s.url for s in store.catalog.active_sources()] == [
        "https://a.example/new",
        "https://b.example/feed",
    ]
    assert store.catalog.active_watchlists()[0].query == "CSAM OR CSEM"
    store.catalog.sync_config(
        [Source("B", "https://b.example/feed")], [Watchlist("csam", "CSAM")], [sub], NOW
    )
    assert [s.name for s in store.catalog.active_sources()] == ["B"]
    # someone unsubscribes the channel from Slack: the file still lists it, the removal stands
    store.db.execute("UPDATE subscriptions SET removed_at = ?, changed_by = 'U1'", [NOW.isoformat()])
    store.catalog.sync_config(
        [Source("B", "https://b.example/feed")], [Watchlist("csam", "CSAM")], [sub], NOW
    )
    assert store.catalog.realtime_subscriptions() == []
    store.close()


def test_an_upgraded_database_keeps_only_the_matched_items_fingerprints(tmp_path) -> None:
    import sqlite_utils

    db = sqlite_utils.Database(tmp_path / "old.db")
    migrations.apply(db, stop_before="m013_index_matched_items_only")
    # As earlier versions left it: every item fingerprinted, and counted in token_df.
    for item_id, tokens in ((1, "unicef deepfak"), (2, "footbal leagu"), (3, "unicef report")):
        db["stories"].insert({"id": item_id, "first_seen": "2026-02-05T18:00:00+00:00", "last_seen": "x"})
        db["items"].insert(
            {
                "id": item_id,
                "source": "S",
                "guid": str(item_id),
                "title": "t",
                "published": "x",
                "first_seen": "2026-02-05T18:00:00+00:00",
                "story_id": item_id,
            }
        )
        db["fingerprints"].insert(
            {
                "item_id": item_id,
                "story_id": item_id,
                "seen": "2026-02-05T18:00:00+00:00",
                "title": tokens,
                "lead": "",
            }
        )
    db["matches"].insert_all([{"item_id": 1, "watchlist": "unicef"}, {"item_id": 3, "watchlist": "unicef"}])
    db["token_df"].insert_all(
        [
            {"token": t, "df": n}
            for t, n in {"unicef": 2, "deepfak": 1, "footbal": 1, "leagu": 1, "report": 1}.items()
        ]
        + [{"token": "\x00total", "df": 3}]
    )
    db.close()
    store = Store.open(tmp_path / "old.db")
    assert [r["item_id"] for r in store.db["fingerprints"].rows] == [1, 3]
    df = {r["token"]: r["df"] for r in store.db["token_df"].rows}
    assert df == {"unicef": 2, "deepfak": 1, "report": 1, "\x00total": 2}
    store.close()


def test_an_alert_carries_only_the_spans_of_its_channels_watchlists(db_target: str) -> None:
    store = Store.open(db_target)
    item_id = store.items.add_item(item(), story_id=store.stories.new_story(NOW))
    csam, story = Span("text", 11, 15, "CSAM"), Span("title", 5, 10, "story")
    store.items.add_matches(item_id, {"csam": [csam], "stories": [story]})
    store.outbox.enqueue_alert(item_id, "C1", ["csam"], NOW)
    store.outbox.enqueue_alert(item_id, "C2", ["csam", "stories"], NOW)
    assert [q.spans for q in store.outbox.queued_alerts()] == [(csam,), (csam, story)]
    assert store.items.spans_for(item_id, ["stories"]) == (story,)
    assert store.items.spans_for(item_id, []) == ()
    store.close()


def test_a_merge_carries_a_claim_or_story_mute_only_where_the_target_has_none(tmp_path) -> None:
    store = Store.open(tmp_path / "t.db")
    folded, target = store.stories.new_story(NOW), store.stories.new_story(NOW)
    f1, t1 = (
        store.items.add_item(item(f"g{n}", f"https://n.example/{n}"), story_id=s)
        for n, s in ((1, folded), (2, target))
    )
    people = store.people
    people.set_triage(f1, "C1", "claimed", "U1", NOW)
    people.set_triage(t1, "C1", "unclaimed", "U2", NOW)  # released: nobody holds it
    assert people.carry_triage(f1, t1, "C1") == ("claimed", "U1")
    people.set_triage(t1, "C1", "done", "U2", NOW)
    people.set_triage(f1, "C1", "escalated", "U1", NOW)
    assert people.carry_triage(f1, t1, "C1") is None  # the target keeps its own
    assert people.message_state("C1", target, t1, NOW).triage == "done"
    people.set_triage(f1, "C2", "done", "U1", NOW)  # saw only the folded alert's reports
    assert (
        people.carry_triage(f1, t1, "C2") is None
        and people.message_state("C2", target, t1, NOW).triage is None
    )

    later = NOW.replace(hour=20)
    people.mute("C1", "story", str(folded), "U1", NOW, until=later)
    assert people.carry_story_mute(folded, target, "C1", NOW) == "U1"
    assert people.alert_muted("C1", target, "S", NOW) == "story muted"
    assert people.mute_ends("C1", target, "S", NOW) == later  # for as long as it was set
    people.mute("C2", "story", str(target), "U2", NOW, until=later)
    people.mute("C2", "story", str(folded), "U1", NOW)  # for ever, but the target has its own
    assert people.carry_story_mute(folded, target, "C2", NOW) is None
    assert people.mute_ends("C2", target, "S", NOW) == later
    rows = store.db.execute("SELECT channel, target, user_id FROM mutes ORDER BY 1").fetchall()
    assert rows == [("C1", str(target), "U1"), ("C2", str(target), "U2")]  # the folded ones are gone
    store.close()
