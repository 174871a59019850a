"""The schema: every table, index and trigger, as named sqlite-utils migrations applied in order.

Each migration runs once, in its own transaction, recorded by name in `_sqlite_migrations`.
"""

from __future__ import annotations

import re
from collections import Counter

import sqlite_utils
from sqlite_utils import Migrations

from bot.ingest.normalize import url_key

TOTAL = "\x00total"  # token_df row counting all fingerprints: the N of IDF
PRUNED = "\x00pruned"  # token_df row counting the deletions of fingerprints (retention)

# Applied in the order they are registered below, which is the order they first shipped in, not
# their numbers: m008 shipped before m006 was finished, and m007 (history) after m009 (digests).
# Databases in use applied them in this order; a new database must get the same schema the same
# way, so the order stays as it is and each new migration is appended at the end.
migrations = Migrations("newsalert")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["sources"].create(
        {
            "name": str,
            "url": str,
            "etag": str,
            "last_modified": str,
            "last_polled": str,
            "last_success": str,
            "last_error": str,
            "last_error_at": str,
            "consecutive_failures": int,
        },
        pk="name",
        not_null={"url"},
        defaults={"consecutive_failures": 0},
    )
    db["items"].create(
        {
            "id": int,
            "source": str,
            "guid": str,
            "url": str,
            "title": str,
            "text": str,
            "outlet": str,
            "headline_only": int,
            "published": str,
            "first_seen": str,  # when the bot first stored it: digests and history key on this
            "duplicate_of": int,  # same canonical URL already stored from another source
        },
        pk="id",
        not_null={"source", "guid", "title", "published", "first_seen"},
        foreign_keys=[("duplicate_of", "items", "id")],
    )
    db["items"].create_index(["source", "guid"], unique=True)
    db["items"].create_index(["url"])
    db["items"].create_index(["first_seen"])
    db["matches"].create(
        {"item_id": int, "watchlist": str, "spans": str},
        pk=("item_id", "watchlist"),
        foreign_keys=[("item_id", "items", "id")],
    )
    db["matches"].create_index(["watchlist"])
    # Subscriptions come from the config file today and from Slack later (origin); digests
    # will add mode/schedule rows, so they get their own table with a short stable id.
    db["subscriptions"].create(
        {
            "id": str,
            "channel": str,
            "watchlists": str,  # JSON list of names
            "mode": str,
            "origin": str,
            "created_at": str,
            "broken": str,  # why delivery to this channel cannot work, when it cannot
        },
        pk="id",
        not_null={"channel", "watchlists", "mode", "origin", "created_at"},
    )
    db["subscriptions"].create_index(["channel"])
    # The outbox: one row per (item, channel). Rows are written in the same transaction as the
    # item, so an item is never stored without its alerts (and never alerted twice).
    db["alerts"].create(
        {
            "id": int,
            "item_id": int,
            "channel": str,
            "watchlists": str,  # JSON list, the subscribed watchlists this item matched
            "status": str,  # queued | sent | failed
            "created_at": str,
            "attempts": int,
            "last_error": str,
            "sent_at": str,
            "ts": str,  # Slack message ts (or "console")
        },
        pk="id",
        not_null={"item_id", "channel", "watchlists", "status", "created_at"},
        defaults={"attempts": 0, "status": "queued"},
        foreign_keys=[("item_id", "items", "id")],
    )
    db["alerts"].create_index(["item_id", "channel"], unique=True)
    db["alerts"].create_index(["status"])


@migrations()
def m002_stories(db: sqlite_utils.Database) -> None:
    """Stories: every item belongs to one; Slack threads hang off one message per story and channel."""
    db["stories"].create(
        {"id": int, "first_seen": str, "last_seen": str},
        pk="id",
        not_null={"first_seen", "last_seen"},
    )
    db["items"].add_column("story_id", int, fk="stories", fk_col="id")
    # Existing items become one story each; exact duplicates join their original's story.
    db.execute(
        "INSERT INTO stories (id, first_seen, last_seen) SELECT id, first_seen, first_seen FROM items "
        "WHERE duplicate_of IS NULL"
    )
    db.execute("UPDATE items SET story_id = COALESCE(duplicate_of, id)")
    db["items"].create_index(["story_id"])
    # The near-duplicate index: each item's fingerprint, and an inverted index of its tokens.
    db["fingerprints"].create(
        {"item_id": int, "story_id": int, "seen": str, "title": str, "lead": str},
        pk="item_id",
        not_null={"story_id", "seen", "title", "lead"},
    )
    db["fingerprints"].create_index(["seen"])
    db["story_tokens"].create({"token": str, "seen": str, "item_id": int}, pk=("token", "seen", "item_id"))
    db["token_df"].create({"token": str, "df": int}, pk="token", not_null={"df"})
    # One top-level message per (story, channel): follow-ups reply in its thread and update it.
    db["story_posts"].create(
        {"story_id": int, "channel": str, "item_id": int, "ts": str, "watchlists": str, "posted_at": str},
        pk=("story_id", "channel"),
        not_null={"item_id", "ts", "watchlists", "posted_at"},
    )


@migrations()
def m003_delivery_protocol(db: sqlite_utils.Database) -> None:
    """Claims, retries and dead letters for the outbox."""
    db["alerts"].add_column("next_attempt_at", str)  # not before this (backoff); NULL = now
    # 1 from just before a post until its outcome is known: a crash or a lost answer leaves it set,
    # and the next attempt first looks in Slack for the message before posting again.
    db["alerts"].add_column("in_flight", int, not_null_default=0)
    db["alerts"].add_column("plain_text", int, not_null_default=0)  # Block Kit rejected: text only
    db.execute("UPDATE alerts SET status = 'dead' WHERE status = 'failed'")
    # One deliverer per channel at a time: keeps a story's parent before its replies, keeps the
    # per-channel rate, and lets two `newsalert run` share a database without double posts.
    db["channel_claims"].create(
        {"channel": str, "worker": str, "claimed_at": str}, pk="channel", not_null={"worker", "claimed_at"}
    )


@migrations()
def m004_url_key(db: sqlite_utils.Database) -> None:
    """Dedup on a key that AMP, mobile and www. variants of one page share (normalize.url_key)."""
    db["items"].add_column("url_key", str)
    for row in list(db.query("SELECT id, url FROM items")):
        db.execute("UPDATE items SET url_key = ? WHERE id = ?", [url_key(row["url"] or ""), row["id"]])
    db["items"].create_index(["url_key"])


@migrations()
def m005_catalog(db: sqlite_utils.Database) -> None:
    """Sources, watchlists and subscriptions live in the database; the config file seeds them.

    ``origin`` says where a row came from (config, slack, opml). ``changed_by`` is set when a
    person changed or removed it from Slack: from then on the database's copy wins over the
    config file, so a subscription removed in Slack stays removed though the file still lists it.
    ``removed_at`` keeps removed rows (and that memory) instead of deleting them.
    """
    for column, kind in [
        ("type", str),
        ("interval", int),
        ("origin", str),
        ("removed_at", str),
        ("changed_by", str),
        ("added_at", str),
    ]:
        db["sources"].add_column(column, kind)
    db["watchlists"].create(
        {
            "name": str,
            "query": str,
            "description": str,
            "origin": str,
            "removed_at": str,
            "changed_by": str,
            "updated_at": str,
        },
        pk="name",
        not_null={"query", "origin"},
    )
    db["subscriptions"].add_column("removed_at", str)
    db["subscriptions"].add_column("changed_by", str)


@migrations()
def m008_source_health(db: sqlite_utils.Database) -> None:
    """When a failing source may be fetched again, and sources the web says are gone."""
    db["sources"].add_column("next_poll_at", str)  # backoff / Retry-After; NULL = at its interval
    db["sources"].add_column("disabled_at", str)  # HTTP 410: not polled again until re-added
    db["sources"].add_column("disabled_reason", str)


@migrations()
def m006_slack_app(db: sqlite_utils.Database) -> None:
    """What people do from Slack: mutes, not-relevant feedback, triage of alerts, and an audit trail.

    ``feedback`` and ``triage`` key on the item of the story's top-level message in a channel
    (story_posts.item_id), which is what the buttons sit on; `newsalert export` reads both.
    """
    # kind: 'story' (target = story id) or 'source' (target = source name); until NULL = for good.
    db["mutes"].create(
        {"channel": str, "kind": str, "target": str, "user_id": str, "created_at": str, "until": str},
        pk=("channel", "kind", "target"),
        not_null={"user_id", "created_at"},
    )
    db["feedback"].create(
        {
            "id": int,
            "item_id": int,
            "channel": str,
            "watchlist": str,
            "user_id": str,
            "kind": str,  # 'not_relevant'
            "created_at": str,
        },
        pk="id",
        not_null={"item_id", "channel", "watchlist", "user_id", "kind", "created_at"},
        foreign_keys=[("item_id", "items", "id")],
    )
    # One vote per person per alert and watchlist: a second click changes nothing.
    db["feedback"].create_index(["item_id", "channel", "watchlist", "user_id", "kind"], unique=True)
    db["feedback"].create_index(["watchlist"])
    db["triage"].create(
        {"item_id": int, "channel": str, "state": str, "user_id": str, "updated_at": str},
        pk=("item_id", "channel"),
        not_null={"state", "user_id", "updated_at"},
        foreign_keys=[("item_id", "items", "id")],
    )
    db["audit"].create(
        {"id": int, "at": str, "user_id": str, "channel": str, "action": str, "detail": str},
        pk="id",
        not_null={"at", "user_id", "action"},
    )
    db["audit"].create_index(["at"])


@migrations()
def m009_digests(db: sqlite_utils.Database) -> None:
    """Digest subscriptions, and the digests sent: each one's window, so coverage is exact."""
    for column, kind in [
        ("schedule", str),
        ("timezone", str),
        ("skip_empty", int),
        ("top", int),
        ("digest_covered_until", str),
    ]:
        db["subscriptions"].add_column(column, kind)
    db["digests"].create(
        {
            "id": int,
            "subscription_id": str,
            "window_start": str,
            "window_end": str,
            "status": str,
            "ts": str,
            "created_at": str,
        },
        pk="id",
        not_null={"subscription_id", "window_start", "window_end", "status", "created_at"},
    )
    db["digests"].create_index(["subscription_id", "status"])


# Search (bot/history.py) takes its candidates from FTS5 and confirms each with the watchlist
# matcher, so FTS5 must see at least the words the matcher sees. Its unicode61 tokenizer splits and
# folds every character in FTS_PLAIN the way bot.query does, except those in FTS_NOT_PLAIN
# (tests/test_history.py checks each one against the SQLite in use). An item with any other
# character (fullwidth letters, Hebrew points, Cyrillic "й", soft hyphens …), or with an "&…;" the
# matcher would decode as an HTML entity, is listed in items_fts_fallback: search always hands it to
# the matcher. Frozen with m007: changing these needs a migration that recreates the triggers.
FTS_PLAIN = (
    (0x01, 0x24F),  # ASCII, Latin-1, Latin Extended-A/B
    (0x1E00, 0x1EFF),  # Latin Extended Additional
    (0x2000, 0x205F),  # general punctuation (dashes, curly quotes, spaces)
    (0x20A0, 0x20B9),  # currency signs
    (0x2190, 0x23F3),  # arrows, technical symbols
    (0x24EB, 0x26FF),  # box drawing, shapes, miscellaneous symbols
    (0x2701, 0x2B4C),  # dingbats, more arrows
)
FTS_NOT_PLAIN = (
    (0xAA, 0xAA),  # ª: the matcher folds compatibility forms (NFKD), FTS5 keeps them
    (0xAD, 0xAD),  # soft hyphen: dropped inside a word by the matcher, a separator for FTS5
    (0xB2, 0xB3),  # ² ³
    (0xB9, 0xBA),  # ¹ º
    (0x1E0, 0x1E3),  # letters whose decomposition FTS5 folds differently
    (0x1EE, 0x1EF),
    (0x1FC, 0x1FF),
    (0x200B, 0x200D),  # zero-width space and joiners
)


def _glob_class(ranges: tuple[tuple[int, int], ...]) -> str:
    """SQL for the inside of a GLOB [...] class; char() keeps odd characters out of the schema text."""
    codes: list[int] = []
    for lo, hi in ranges:
        codes += [lo] if lo == hi else [lo, ord("-"), hi]
    return f"char({', '.join(map(str, codes))})"


def _fts_fallback_sql(words: str) -> str:
    """SQL condition: the matcher may see words in ``words`` that FTS5 does not (see FTS_PLAIN)."""
    return (
        f"({words} GLOB '*[^' || {_glob_class(FTS_PLAIN)} || ']*'"
        f" OR {words} GLOB '*[' || {_glob_class(FTS_NOT_PLAIN)} || ']*'"
        f" OR (instr({words}, '&') > 0 AND instr({words}, ';') > 0))"
    )


@migrations()
def m007_history(db: sqlite_utils.Database) -> None:
    """Full-text search over items: FTS5 on title and text, kept in sync by triggers.

    External content (content='items'): the index holds no second copy of the text. The triggers
    are the only writers; a later migration that rebuilds the items table (sqlite-utils
    transform) must recreate them. Rows are never REPLACEd into items (that would skip the
    delete trigger unless recursive_triggers is on).
    """
    db.execute(
        """CREATE VIRTUAL TABLE items_fts USING fts5(title, text, content='items', content_rowid='id',
               tokenize="unicode61 remove_diacritics 2 tokenchars '_'")"""
    )
    db.execute("CREATE TABLE items_fts_fallback (item_id INTEGER PRIMARY KEY)")
    # The lowest item id first seen on each UTC day: a search window's lowest possible id, so FTS5
    # can skip older postings by rowid (min(id) over a month of the first_seen index is ~0.2 s).
    db.execute("CREATE TABLE items_by_day (day TEXT PRIMARY KEY, first_id INTEGER NOT NULL)")
    words = "coalesce(new.title, '') || ' ' || coalesce(new.text, '')"
    fallback = (
        f"INSERT INTO items_fts_fallback (item_id) SELECT new.id WHERE {_fts_fallback_sql(f'({words})')};"
    )
    db.execute(
        f"""CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
                INSERT INTO items_fts (rowid, title, text) VALUES (new.id, new.title, new.text);
                {fallback}
                INSERT INTO items_by_day (day, first_id) VALUES (substr(new.first_seen, 1, 10), new.id)
                    ON CONFLICT (day) DO UPDATE SET first_id = min(first_id, excluded.first_id);
            END"""
    )
    db.execute(
        """CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
               INSERT INTO items_fts (items_fts, rowid, title, text)
                   VALUES ('delete', old.id, old.title, old.text);
               DELETE FROM items_fts_fallback WHERE item_id = old.id;
           END"""
    )
    db.execute(
        f"""CREATE TRIGGER items_fts_update AFTER UPDATE OF title, text ON items BEGIN
                INSERT INTO items_fts (items_fts, rowid, title, text)
                    VALUES ('delete', old.id, old.title, old.text);
                INSERT INTO items_fts (rowid, title, text) VALUES (new.id, new.title, new.text);
                DELETE FROM items_fts_fallback WHERE item_id = old.id;
                {fallback}
            END"""
    )
    db.execute("INSERT INTO items_fts (items_fts) VALUES ('rebuild')")
    stored = "(coalesce(title, '') || ' ' || coalesce(text, ''))"
    db.execute(f"INSERT INTO items_fts_fallback SELECT id FROM items WHERE {_fts_fallback_sql(stored)}")
    db.execute("INSERT INTO items_by_day SELECT substr(first_seen, 1, 10), min(id) FROM items GROUP BY 1")
    # Retention deletes items: the foreign key items.duplicate_of is checked on each delete, and
    # without an index every check would scan the whole table.
    db.execute(
        "CREATE INDEX IF NOT EXISTS items_duplicate_of ON items (duplicate_of) WHERE duplicate_of IS NOT NULL"
    )


@migrations()
def m010_body_hash(db: sqlite_utils.Database) -> None:
    """A digest of the last body each source answered 200 with and that was ingested: a server
    without ETag/Last-Modified that sends the same bytes again needs no parse (pipeline.poll)."""
    db["sources"].add_column("body_hash", str)


@migrations()
def m011_story_index_in_memory(db: sqlite_utils.Database) -> None:
    """The token index of the story window is built in memory from the fingerprints table
    (stories.StoryIndex): the per-token rows of story_tokens are no longer written or read."""
    db.execute("DROP TABLE IF EXISTS story_tokens")


@migrations()
def m012_index_new_items_in_bulk(db: sqlite_utils.Database) -> None:
    """New items are added to the search index by Store (index_new_items), in one statement per
    transaction, instead of by a trigger per row: a poll's items are indexed in a fifth of the
    time. The trigger's search-fallback test (two GLOBs over the whole text, which cost more
    than the indexing itself) is made in Python (needs_search_fallback). Edits and deletes keep
    their triggers."""
    db.execute("DROP TRIGGER items_fts_insert")


@migrations()
def m013_index_matched_items_only(db: sqlite_utils.Database) -> None:
    """Stories index only the items a watchlist matched (pipeline.ingest). Earlier versions
    fingerprinted every item: those of unmatched items go, and the document frequencies are
    counted again over the fingerprints left, so an upgraded bot loads a small index."""
    db.execute("DELETE FROM fingerprints WHERE item_id NOT IN (SELECT item_id FROM matches)")
    counts: Counter[str] = Counter()
    total = 0
    for title, lead in db.execute("SELECT title, lead FROM fingerprints"):
        counts.update(set(title.split()) | set(lead.split()))
        total += 1
    db.execute("DELETE FROM token_df WHERE token != ?", [PRUNED])
    db.conn.executemany("INSERT INTO token_df (token, df) VALUES (?, ?)", [*counts.items(), (TOTAL, total)])


@migrations()
def m014_fair_delivery_and_sequences(db: sqlite_utils.Database) -> None:
    """Fair delivery, digest windows on a sequence, outage recovery and disabled watchlists.

    - alerts.summary_count: an alert that stands for this many items of a flooding source (the
      rest of its per-poll budget, outbox.py); alerts.outage: its backoff waits for Slack to come
      back, not for a rate limit, so a successful Slack call clears it.
    - digest windows are item-id ranges (seq_start, seq_end]: one writer at a time means ids
      commit in order, so no item falls between two windows, as it could on one-second times.
    - watchlist_faults: stored watchlists that cannot be compiled, skipped by polls, shown by
      `status`.
    """
    db["alerts"].add_column("summary_count", int)
    db["alerts"].add_column("outage", int, not_null_default=0)
    db["digests"].add_column("seq_start", int)
    db["digests"].add_column("seq_end", int)
    db["digests"].add_column("worker", str)  # who is sending it: two senders never post one twice
    db["digests"].add_column("claimed_at", str)
    db["subscriptions"].add_column("digest_covered_seq", int)
    # Windows already sent end at the last item first seen by then.
    db.execute(
        """UPDATE subscriptions SET digest_covered_seq = (
               SELECT coalesce(max(id), 0) FROM items WHERE first_seen <= subscriptions.digest_covered_until)
           WHERE digest_covered_until IS NOT NULL"""
    )
    db.execute(
        """UPDATE digests SET
               seq_start = (SELECT coalesce(max(id), 0) FROM items WHERE first_seen <= digests.window_start),
               seq_end = (SELECT coalesce(max(id), 0) FROM items WHERE first_seen <= digests.window_end)"""
    )
    db["watchlist_faults"].create({"name": str, "error": str, "at": str}, pk="name", if_not_exists=True)


@migrations()
def m015_story_model(db: sqlite_utils.Database) -> None:
    """The fitted story decision (bot/stories/decide.py). Each fingerprint keeps what the model
    compares besides tokens: the entities and figures read from its text, its sentence vector
    (float16, 512 bytes) and whether it is headline-only; fingerprints of earlier versions have
    none and are compared by their words alone. story_decisions keeps, per item, the score that
    put it in its story and the best story it was not put in (`newsalert story ID --why`).
    story_models versions every fit with its date and figures; story_labels keeps analysts'
    corrections (same story / different stories) as self-contained copies of the two items, so
    that retention pruning the items does not lose them."""
    for column, kind in (("entities", str), ("figures", str), ("vector", bytes), ("headline_only", int)):
        db["fingerprints"].add_column(column, kind)
    db["story_decisions"].create(
        {"item_id": int, "story_id": int, "probability": float, "matched_item": int, "detail": str},
        pk="item_id",
        foreign_keys=[("item_id", "items", "id")],
    )
    db["story_models"].create(
        {"id": int, "fitted": str, "model": str, "figures": str, "created_at": str, "active": int},
        pk="id",
        not_null={"fitted", "model", "figures", "created_at", "active"},
    )
    db["story_labels"].create(
        {
            "id": int,
            "same": int,
            "a": str,  # JSON: outlet, via, title, lead, seen of the item
            "b": str,
            "user_id": str,
            "created_at": str,
        },
        pk="id",
        not_null={"same", "a", "b", "created_at"},
    )


def _regex_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges
    )


# What _fts_fallback_sql says in SQL (the update trigger still uses it), as one expression.
_FALLBACK_CHARS = re.compile(f"[^{_regex_class(FTS_PLAIN)}]|[{_regex_class(FTS_NOT_PLAIN)}]")


def needs_search_fallback(title: str, text: str) -> bool:
    """True when the matcher may see words in the item that FTS5 does not (see FTS_PLAIN)."""
    words = f"{title} {text}"
    if "&" in words and ";" in words:
        return True
    if words.isascii():  # every ASCII character but NUL is plain: no need for the expression
        return "\x00" in words
    return bool(_FALLBACK_CHARS.search(words))


@migrations()
def m016_adaptive_polling_and_websub(db: sqlite_utils.Database) -> None:
    """When each source is polled next and why (bot/ingest/schedule.py), what its feed said about
    itself, and its WebSub subscription (bot/ingest/websub.py)."""
    for column, kind in [
        ("min_interval", int),  # the config file's floor and ceiling for this source; NULL: [defaults]
        ("max_interval", int),
        ("poll_interval", int),  # the effective interval of the last decision, in seconds
        ("poll_reason", str),  # why: "busy", "max-age", "ttl, ceiling" …
        ("feed_ttl", int),  # seconds, from the last body read: <ttl>
        ("feed_update_period", int),  # <sy:updatePeriod> / <sy:updateFrequency>
        ("websub_hub", str),  # the hub the feed advertises (Link header or rel="hub")
        ("websub_topic", str),  # its rel="self" URL, else the URL it was fetched from
    ]:
        db["sources"].add_column(column, kind)
    db["sources"].create_index(["next_poll_at"])
    db["websub"].create(
        {
            "source": str,
            "hub": str,
            "topic": str,
            "callback": str,  # the unguessable last part of the callback URL
            "secret": str,  # hub.secret: pushes are signed with it
            "state": str,  # requested | active | denied | failed | unsubscribing
            "lease_seconds": int,
            "requested_at": str,
            "verified_at": str,
            "expires_at": str,  # the lease's end, once verified
            "retry_at": str,  # a failed or denied request is tried again from this time
            "attempts": int,  # requests in a row that failed
            "last_error": str,
        },
        pk="source",
        not_null={"hub", "topic", "callback", "secret", "state", "requested_at"},
        defaults={"attempts": 0},
    )
    db["websub"].create_index(["callback"], unique=True)


@migrations()
def m017_story_moves(db: sqlite_utils.Database) -> None:
    """Analysts' corrections of stories in Slack (bot/app/corrections.py): each message a correction
    moved away from, so a second click on it is answered, not applied again. A "split" reply is
    edited once its item's own alert is posted (the alert to re-deliver is ``alert_id``); a
    "merge" parent points at the thread it was folded into (``target_ts``)."""
    db["story_moves"].create(
        {
            "id": int,
            "kind": str,  # split | merge
            "item_id": int,  # the reply's item (split), the folded parent's item (merge)
            "channel": str,
            "old_ts": str,  # the message moved away from
            "alert_id": int,  # split: the alert re-delivered as a top-level message
            "target_ts": str,  # merge: the parent of the thread it went into
            "user_id": str,
            "created_at": str,
            "edited_at": str,  # when the old message was changed to say where it went
        },
        pk="id",
        not_null={"kind", "item_id", "channel", "old_ts", "user_id", "created_at"},
        foreign_keys=[("item_id", "items", "id")],
    )
    db["story_moves"].create_index(["channel", "old_ts"], unique=True)
    db["story_moves"].create_index(["alert_id"])


@migrations()
def m018_workers(db: sqlite_utils.Database) -> None:
    """Several `newsalert run` workers on one database (bot/store/leases.py): each worker's
    heartbeat, the source each is polling (a lease that expires), the period a scheduled job last
    ran in, and the Slack events already handled (Slack retries one it thinks was not)."""
    db["workers"].create(
        {"id": str, "host": str, "pid": int, "mode": str, "started_at": str, "heartbeat_at": str},
        pk="id",
        not_null={"host", "pid", "started_at", "heartbeat_at"},
    )
    db["source_leases"].create(
        {"source": str, "worker": str, "expires_at": str}, pk="source", not_null={"worker", "expires_at"}
    )
    db["source_leases"].create_index(["worker"])
    db["job_runs"].create(
        {"job": str, "period": str, "worker": str, "ran_at": str}, pk="job", not_null={"period", "ran_at"}
    )
    db["slack_events"].create({"event_id": str, "seen_at": str}, pk="event_id", not_null={"seen_at"})
    db["slack_events"].create_index(["seen_at"])
