"""Every surface the bot renders, at a real team's scale, checked against Slack's documented limits
(tests/slack_limits.py) and slack_sdk's own Block/View models: a payload here is one real Slack
would accept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.alerts.digest import Digest, DigestStory, render_digest
from bot.alerts.render import MessageState, render_plain, render_reply, render_slack
from bot.app.commands import handle
from bot.app.context import AppContext, Reply
from bot.app.home import home_view, parse_home_page
from bot.app.paging import Cursor, parse_cursor
from bot.config import Settings
from bot.model import Item, Source, Subscription, Summary, Watchlist
from bot.store import Store
from tests.conftest import alert
from tests.slack_limits import message_problems, view_problems

NOW = datetime(2026, 2, 5, 18, 0, tzinfo=UTC)
WATCHLISTS = tuple(f"watchlist-{i:03d}" for i in range(200))


def test_an_alert_of_a_13_source_story_in_200_watchlists_with_260_clickers_fits() -> None:
    big = alert(
        watchlists=WATCHLISTS,
        reporters=tuple(f"Outlet number {i}" for i in range(13)),
        summary=Summary("word " * 700, tuple((i * 5, i * 5 + 4) for i in range(600))),
        matched=tuple((f"term {i}", "summary") for i in range(200)),
        title_bold=((0, 6),),
    )
    state = MessageState(
        "claimed", "U0CLAIM", "U0MUTE", "Outlet number 0", "U0SRC", tuple(f"U{i:06d}" for i in range(260))
    )
    message = render_slack(big, state, actions=True)
    for payload in (message, render_plain(message), render_reply(big)):
        assert message_problems({"text": payload.text, "blocks": payload.blocks}) == []
    assert len(message.text) < 400  # a notification, not a list of 200 names


def test_a_200_story_digest_fits_in_every_part() -> None:
    stories = tuple(
        DigestStory(
            n, "Title " * 40, "https://n.example/" + "a" * 300, 13, NOW, WATCHLISTS[n % 200], "Lead. " * 50
        )
        for n in range(200)
    )
    parts = render_digest(Digest("s1", "C1", WATCHLISTS, NOW - timedelta(days=1), NOW, stories, top=200))
    for part in parts:
        assert message_problems({"text": part.text, "blocks": part.blocks}) == []


def test_app_home_with_300_sources_and_200_watchlists_fits_and_leads_with_alerts(tmp_path) -> None:
    store = Store.open(tmp_path / "t.db")
    sources = tuple(Source(f"Source {i}", f"https://feeds{i}.example/rss") for i in range(300))
    watchlists = tuple(Watchlist(w, f"{w} OR ({'long query term ' * 20})") for w in WATCHLISTS)
    subs = tuple(Subscription(f"C{i:04d}", WATCHLISTS) for i in range(40))
    store.catalog.sync_config(sources, watchlists, subs, NOW)
    view = home_view(store, "U1", lambda channel: True, NOW)
    assert view_problems(view) == []
    assert view["blocks"][0]["text"]["text"] == "Latest alerts"
    assert "Page 1 of 20" in str(view["blocks"])  # sources cut to pages, with buttons to the others
    next_sources = [
        e
        for b in view["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["value"] == "sources:2"
    ]
    assert next_sources and next_sources[0]["text"]["text"] == "Next sources"
    last = home_view(store, "U1", lambda channel: True, NOW, {"sources": 20, "watchlists": 14})
    assert view_problems(last) == []
    assert "Page 20 of 20" in str(last["blocks"]) and "Page 14 of 14" in str(last["blocks"])
    # conversations.info rate limited for some channels: Home says so instead of hiding them quietly.
    limited = home_view(store, "U1", lambda channel: None if channel < "C0010" else True, NOW)
    assert "Slack did not answer for 10 channels just now" in str(limited["blocks"])
    store.close()
    assert parse_home_page("sources:3") == ("sources", 3)
    for value in ("9" * 5000, "sources:" + "9" * 5000, "secrets:1", "sources:0", "sources:x"):
        assert parse_home_page(value) is None


# -- every command reply at scale, page by page --------------------------------------------------


class Everyone:
    """A Workspace where nobody is a workspace admin and every channel is visible."""

    def is_workspace_admin(self, user_id: str) -> bool:
        return False

    def join(self, channel_id: str) -> str | None:
        return None

    def can_see(self, user_id: str, channel_id: str) -> bool:
        return True

    def permalink(self, channel_id: str, ts: str) -> str | None:
        return None


def big_workspace(tmp_path) -> AppContext:
    """300 sources (all failing), 200 watchlists with long queries, one channel subscribed to all,
    300 stories that every watchlist matched, muted sources in the channel."""
    sources = tuple(Source(f"Source {i}", f"https://feeds{i}.example/rss") for i in range(300))
    watchlists = tuple(
        Watchlist(w, f"unicef OR {w} OR ({'long query term ' * 20})", "a description " * 10)
        for w in WATCHLISTS
    )
    settings = Settings("t.toml", sources, watchlists, (), db_path=str(tmp_path / "t.db"))
    store = Store.open(settings.db_path)
    store.catalog.sync_config(sources, watchlists, (Subscription("C1", WATCHLISTS),), NOW)
    with store.transaction():
        for s in sources:
            store.sources.record_fetch_failure(s.name, s.url, NOW, "HTTP 503: " + "service unavailable " * 20)
        for i in range(40):
            store.people.mute("C1", "source", f"Source {i}", "U1", NOW)
        for i in range(300):
            story = store.stories.new_story(NOW - timedelta(minutes=i))
            item = Item(
                f"Source {i}",
                f"g{i}",
                f"https://n.example/{i}",
                f"UNICEF story {i} " + "x" * 200,
                "",
                NOW,
                NOW,
            )
            item_id = store.items.add_item(item, story_id=story, new_story=True)
            store.items.add_matches(item_id, {w: [] for w in WATCHLISTS})
    store.close()
    return AppContext(settings, now=lambda: NOW)


def pages(ctx: AppContext, command: str) -> list[Reply]:
    """Every page of ``command``'s reply, following its "Next page" button like a click does."""
    replies = [handle(command, user="U1", channel="C1", ctx=ctx, workspace=Everyone())]
    while len(replies) < 200:
        buttons = [e for b in replies[-1].blocks or [] if b["type"] == "actions" for e in b["elements"]]
        following = [b for b in buttons if b["action_id"] == "page_next"]
        if not following:
            break
        cursor = parse_cursor(following[0]["value"])
        assert cursor is not None
        replies.append(
            handle(cursor.command, user="U1", channel="C1", ctx=ctx, workspace=Everyone(), page=cursor.page)
        )
    return replies


def test_every_command_reply_fits_page_by_page_and_the_pages_hold_everything(tmp_path) -> None:
    ctx = big_workspace(tmp_path)
    expected = {
        "sources": ("Source 299", 300),
        "status": ("Source 299", 300),
        "watchlists": ("watchlist-199", 200),
        "list": ("Source 39", 40),
        "search unicef": ("UNICEF story 299", 300),
    }
    for command, (last, count) in expected.items():
        replies = pages(ctx, command)
        assert len(replies) > 1, command  # paged, not a wall
        for reply in replies:
            assert message_problems({"text": reply.text, "blocks": reply.blocks}) == [], command
        shown = "".join(str(r.blocks) for r in replies)
        assert last in shown, command
        if command == "sources":
            assert sum(str(r.blocks).count("⚠️ *Source") for r in replies) == count
        if command == "search unicef":
            assert len(replies) == 30 and "Previous page" in str(replies[-1].blocks)
    status = pages(ctx, "status")[0]
    assert "✅ healthy" not in status.text and "300 of 300 sources failing" in status.text


def test_a_page_cursor_is_bounded_and_checked() -> None:
    assert parse_cursor("2|sources") == Cursor(2, "sources")
    assert parse_cursor("7|search unicef since:7d") == Cursor(7, "search unicef since:7d")
    for value in (
        "9" * 5000,
        "",
        "garbage",
        "0|sources",
        "2|source add https://x",
        "-1|list",
        "2|",
        "1" * 5000 + "|list",
    ):
        assert parse_cursor(value) is None, value[:20]


def test_every_modal_fits_at_scale() -> None:
    from bot.app.modals import escalate_modal, mute_modal, notice_modal, watchlist_modal

    long_title = "A very long headline " * 40
    views = [
        escalate_modal("C0ALERTS", "1.000001", long_title, "C0ESCALATE"),
        escalate_modal("C0ALERTS", "1.000001", "", None),
        mute_modal("C0ALERTS", "1.000001", "story", ["Reuters"]),
        mute_modal(
            "C0ALERTS", "1.000001", "source", [f"Outlet with a long name number {i}" * 3 for i in range(13)]
        ),
        *(watchlist_modal(kind) for kind in ("add", "edit", "test")),
        notice_modal("Test a query with a long title", "x" * 5000),
    ]
    for view in views:
        assert view_problems(view) == [], view.get("callback_id")
