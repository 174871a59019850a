"""Every surface the bot renders, at a real team's scale, checked against Slack's documented limits
(tests/slack_limits.py) and slack_sdk's own Block/View models: a payload here is one real Slack
would accept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.alerts.digest import Digest, DigestStory, render_digest
from bot.alerts.render import MessageState, render_plain, render_reply, render_slack
from bot.app.home import home_view
from bot.model import Source, Subscription, Summary, Watchlist
from bot.store import Store
from tests.slack_limits import message_problems, view_problems
from tests.test_render import alert

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
    store.close()
    assert view_problems(view) == []
    assert view["blocks"][0]["text"]["text"] == "Latest alerts"
    assert "and 285 more" in str(view["blocks"])  # sources cut to a first page, the rest a command away
