"""The Slack app's core without Slack: `/newsalert` commands, button clicks, App Home, mutes.

tests/test_slack_app.py runs the same through signed HTTP requests; here the edge cases are
cheap to reach: the SSRF guard, parsing, escaping, who may do what, and the database rules.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.alerts.outbox import deliver_pending
from bot.alerts.render import MessageState, render_plain, render_slack
from bot.alerts.sink import ConsoleSink
from bot.app.commands import handle, pending_message
from bot.app.context import AppContext
from bot.app.home import home_view
from bot.app.triage import click, escalate, mute
from bot.config import Settings, load_settings
from bot.errors import ConfigError, FetchError
from bot.model import Fetched, Item, Source, StoryPost, Subscription, Watchlist
from bot.scheduler import Scheduler
from bot.service import check_run_mode
from bot.store import Store
from bot.urls import source_url_problem
from tests.conftest import alert, run_newsalert

NOW = datetime(2026, 2, 5, 18, 0, tzinfo=UTC)
FEED = b"""<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>
<item><title>Sextortion &amp; grooming ring dismantled</title><link>https://n.example/1</link>
<guid>1</guid><pubDate>Thu, 05 Feb 2026 17:00:00 +0000</pubDate></item></channel></rss>"""


class FakeWorkspace:
    def __init__(self, admins: set[str] = frozenset(), outside: set[str] = frozenset()) -> None:
        self.admins, self.outside = set(admins), set(outside)
        self.asked: list[str] = []

    def is_workspace_admin(self, user_id: str) -> bool:
        self.asked.append(user_id)
        return user_id in self.admins

    def join(self, channel_id: str) -> str | None:
        return "it is private and I am not a member" if channel_id in self.outside else None

    def can_see(self, user_id: str, channel_id: str) -> bool:
        return channel_id not in self.outside

    def permalink(self, channel_id: str, ts: str) -> str | None:
        return f"https://x.slack.test/archives/{channel_id}/p{ts.replace('.', '')}"


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    settings = Settings(
        path="t.toml",
        sources=(Source("UN News", "https://news.un.org/feed"),),
        watchlists=(Watchlist("csam", "CSAM"), Watchlist("unicef", "UNICEF")),
        subscriptions=(Subscription("C1", ("csam", "unicef")),),
        db_path=str(tmp_path / "t.db"),
        slack_admins=("U0ADMIN",),
        escalation_channel="C0ESC",
    )
    store = Store.open(settings.db_path)
    store.catalog.sync_config(settings.sources, settings.watchlists, settings.subscriptions, NOW)
    store.close()
    fetched: list[str] = []

    def fetch(settings: Settings, source: Source) -> Fetched | FetchError:
        fetched.append(source.url)
        if "private" in source.url:  # a public name that resolves to a private address
            return FetchError(source.url, "blocked: private.example resolves to 10.0.0.7", blocked=True)
        return Fetched(source.url, 200, FEED, {"Content-Type": "application/rss+xml"})

    context = AppContext(settings, now=lambda: NOW, fetch=fetch)
    context.fetched = fetched  # type: ignore[attr-defined]
    return context


def run(
    ctx: AppContext, text: str, *, user: str = "U1", channel: str = "C1", ws: FakeWorkspace | None = None
):
    return handle(text, user=user, channel=channel, ctx=ctx, workspace=ws or FakeWorkspace())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/feed",
        "http://localhost:8080/feed",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/rss",
        "http://[::1]/feed",
        "file:///etc/passwd",
        "gopher://example.org/",
        "https://user:pw@example.org/feed",
    ],
)
def test_source_add_refuses_private_and_odd_urls_before_connecting(ctx: AppContext, url: str) -> None:
    reply = run(ctx, f"source add {url}", user="U0ADMIN")
    assert reply.text.startswith("Refused:"), url
    assert ctx.fetched == []  # type: ignore[attr-defined]


def test_private_urls_are_allowed_when_asked_and_refused_by_address(ctx: AppContext) -> None:
    assert source_url_problem("http://127.0.0.1/feed", allow_private=True) is None
    # A name that resolves to a private address is refused by the fetcher's guard, on the address.
    blocked = run(ctx, "source add https://private.example/feed", user="U0ADMIN")
    assert "refused: blocked" in blocked.text and "Nothing was added" in blocked.text


def test_source_add_fetches_once_and_notifies_the_scheduler(ctx: AppContext) -> None:
    changed: list[bool] = []
    ctx.catalog_changed = lambda: changed.append(True)
    reply = run(ctx, "source add <https://police.example/feed.xml> Police news", user="U0ADMIN")
    assert "Source *Police news* added (feed, polled every 15m)" in reply.text
    assert "Sextortion &amp; grooming ring dismantled" in reply.text  # feed text is escaped
    assert changed == [True]
    with ctx.store() as store:
        assert (
            Source("Police news", "https://police.example/feed.xml", "feed", 900)
            in store.catalog.active_sources()
        )
        assert store.people.audit_log()[0].action == "source add"
    assert (
        "already a source named"
        in run(ctx, "source add https://x.example/f police NEWS", user="U0ADMIN").text
    )
    assert "removed" in run(ctx, "source remove police news", user="U0ADMIN").text
    assert changed == [True, True]


def test_admin_only_commands(ctx: AppContext) -> None:
    ws = FakeWorkspace(admins={"U0WSADMIN"})
    assert run(ctx, "watchlist add x y", user="U1", ws=ws).text.startswith("Only newsalert admins")
    assert ws.asked == ["U1"]
    assert "added" in run(ctx, "watchlist add x y", user="U0WSADMIN", ws=ws).text
    assert "added" in run(ctx, "watchlist add z y", user="U0ADMIN", ws=ws).text  # from [slack] admins
    assert ws.asked == ["U1", "U0WSADMIN"]  # a config admin needs no users.info

    class Down(FakeWorkspace):
        def is_workspace_admin(self, user_id: str) -> bool:
            raise OSError("slack unreachable")

    assert run(ctx, "source remove UN News", user="U1", ws=Down()).text.startswith("Only newsalert admins")


def test_watchlist_names_and_queries_are_checked(ctx: AppContext) -> None:
    assert "cannot be a watchlist name" in run(ctx, "watchlist add <!channel> x", user="U0ADMIN").text
    error = run(ctx, 'watchlist add x "unclosed', user="U0ADMIN").text
    assert error.startswith("Query error:") and "column" in error
    assert "Usage" in run(ctx, "watchlist add onlyname", user="U0ADMIN").text
    assert "Usage" in run(ctx, "watchlist frob x y", user="U0ADMIN").text


def test_replies_escape_what_people_typed(ctx: AppContext) -> None:
    reply = run(ctx, "subscribe <!channel> &lt;@U2&gt;")
    assert "<!channel>" not in reply.text and "<@U2>" not in reply.text
    assert "`&lt;!channel&gt;`" in reply.text and not reply.in_channel


def test_subscribe_asks_to_be_invited_where_the_bot_cannot_post(ctx: AppContext) -> None:
    ws = FakeWorkspace(outside={"G1"})
    reply = run(ctx, "subscribe csam", channel="G1", ws=ws)
    assert "/invite @newsalert" in reply.text and not reply.in_channel
    with ctx.store() as store:
        assert store.catalog.channel_subscriptions("G1") == []


def test_unsubscribing_part_of_a_config_entry_keeps_the_rest_and_survives_a_resync(ctx: AppContext) -> None:
    reply = run(ctx, "unsubscribe csam")
    assert reply.in_channel and "It still gets `unicef`" in reply.text
    with ctx.store() as store:
        assert [s.watchlists for s in store.catalog.realtime_subscriptions()] == [("unicef",)]
        # The next start reads the same config file, which still lists csam for C1.
        s = ctx.settings
        store.catalog.sync_config(s.sources, s.watchlists, s.subscriptions, NOW + timedelta(hours=1))
        assert [w for w, _, _ in store.catalog.channel_subscriptions("C1")] == ["unicef"]
    assert "subscribed" in run(ctx, "subscribe csam").text
    with ctx.store() as store:
        assert sorted(w for w, _, _ in store.catalog.channel_subscriptions("C1")) == ["csam", "unicef"]


def test_mute_durations_and_names(ctx: AppContext) -> None:
    reply = run(ctx, 'mute source "un news" for 2w')
    assert (
        reply.in_channel
        and "muted source *UN News* in this channel for 14d (until 2026-02-19 18:00 UTC)" in (reply.text)
    )
    assert "expected a duration" in run(ctx, "mute source UN News for ever").text
    with ctx.store() as store:
        assert store.people.channels_muting_source("UN News", NOW) == {"C1"}
        assert store.people.channels_muting_source("UN News", NOW + timedelta(weeks=3)) == set()  # expired


def test_pending_message_for_slow_commands_only_and_never_before_a_refusal(ctx: AppContext) -> None:
    ws = FakeWorkspace(admins={"U0OWNER"})

    def pending(text: str, user: str = "U0ADMIN") -> str | None:
        return pending_message(text, user=user, ctx=ctx)

    assert pending("source add https://x") is not None
    assert pending("query test x") is not None
    assert pending("list") is None and pending("source remove x") is None
    # A non-admin's `source add` is refused at once: no "Fetching that source…" before the refusal.
    assert pending("source add https://x", user="U1") is None
    # The ack never waits for users.info: a workspace admin is acked silently, then answered.
    assert pending("source add https://x", user="U0OWNER") is None and ws.asked == []
    assert run(ctx, "source add https://x.example/f", user="U1").text.startswith("Only newsalert admins")


def add_alerted_story(store: Store, *, source: str = "UN News", channel: str = "C1") -> StoryPost:
    item = Item(source, "g1", "https://n.example/1", "UNICEF warns on CSAM", "Text", NOW, NOW)
    story = store.stories.new_story(NOW)
    item_id = store.items.add_item(item, story_id=story)
    post = StoryPost(story, channel, item_id, "100.000001", ("csam", "unicef"))
    store.stories.save_story_post(post, NOW)
    return post


def test_controls_record_and_render_who_did_what(ctx: AppContext) -> None:
    with ctx.store() as store:
        post = add_alerted_story(store)
        other = store.stories.story_items(post.story_id)[0][1]
        store.items.add_item(
            replace(other, source="AP", guid="g2", url="https://ap.example/1"), story_id=post.story_id
        )
    ws = FakeWorkspace()

    def press(action: str, user: str = "U1"):
        return click(action, user=user, channel="C1", message_ts=post.ts, value="0", ctx=ctx, workspace=ws)

    def controls(result) -> list[str]:
        (actions,) = [b for b in result.message.blocks if b["type"] == "actions"]
        return [e.get("action_id") for e in actions["elements"]]

    claimed = press("alert_claim")
    assert claimed.message is not None and "Claimed by <@U1>" in json.dumps(claimed.message.blocks)
    assert controls(claimed) == ["alert_unclaim", "alert_done", "alert_more"]  # Claim became Unclaim
    unclaimed = press("alert_unclaim")
    assert "Unclaimed by <@U1>" in json.dumps(unclaimed.message.blocks)  # type: ignore[union-attr]
    assert controls(unclaimed) == ["alert_claim", "alert_done", "alert_more"]
    done = press("alert_done", user="U2")
    assert "Done by <@U2>" in json.dumps(done.message.blocks) and controls(done) == [
        "alert_reopen",
        "alert_more",
    ]  # type: ignore[union-attr]
    assert controls(press("alert_reopen")) == ["alert_claim", "alert_done", "alert_more"]
    escalated = escalate(
        user="U2",
        channel="C1",
        message_ts=post.ts,
        reason="Names a <!channel> school",
        severity="high",
        to_channel=None,
        ctx=ctx,
        workspace=ws,
    )
    (escalation,) = escalated.posts
    assert escalation.channel == "C0ESC" and "<@U2> escalated an alert from <#C1>" in escalation.text
    assert "*High*" in escalation.text and "Names a &lt;!channel&gt; school" in escalation.text
    assert "https://x.slack.test/archives/C1/p100000001" in escalation.text
    elsewhere = escalate(
        user="U2",
        channel="C1",
        message_ts=post.ts,
        reason="x",
        severity="nonsense",
        to_channel="C0LEGAL",
        ctx=ctx,
        workspace=ws,
    )
    assert elsewhere.posts[0].channel == "C0LEGAL" and "*Medium*" in elsewhere.posts[0].text
    press("alert_not_relevant")
    press("alert_not_relevant")  # one vote per person
    muted = mute(user="U3", channel="C1", message_ts=post.ts, target="all_sources", duration="7d", ctx=ctx)
    assert "2 sources" in (muted.notice or "") and "until 2026-02-12 18:00 UTC" in (muted.notice or "")
    blocks = json.dumps(muted.message.blocks)  # type: ignore[union-attr]
    assert "Escalated by <@U2>" in blocks and "Source UN News muted here by <@U3>" in blocks
    assert "Not relevant: <@U1>" in blocks
    assert "not one newsalert offers" in (
        mute(user="U3", channel="C1", message_ts=post.ts, target="x", duration="1y", ctx=ctx).notice or ""
    )
    with ctx.store() as store:
        assert store.people.not_relevant_rates() == {"csam": (1, 1), "unicef": (1, 1)}
        assert store.people.channels_muting_source("AP", NOW) == {"C1"}
        assert store.people.channels_muting_source("AP", NOW + timedelta(days=8)) == set()
        assert [r.action for r in reversed(store.people.audit_log())] == [
            "claim", "unclaim", "done", "reopen", "escalate", "escalate",
            "not relevant", "not relevant", "mute source", "mute source",
        ]  # fmt: skip
    assert (
        "no record"
        in click(
            "alert_claim", user="U1", channel="C9", message_ts="1.2", value="x", ctx=ctx, workspace=ws
        ).notice
    )  # type: ignore[operator]
    ctx.settings = replace(ctx.settings, escalation_channel=None)
    nowhere = escalate(
        user="U2",
        channel="C1",
        message_ts=post.ts,
        reason="x",
        severity="low",
        to_channel=None,
        ctx=ctx,
        workspace=ws,
    )
    assert "No escalation channel" in (nowhere.notice or "") and not nowhere.posts


def test_muted_source_and_story_are_not_delivered(ctx: AppContext) -> None:
    out = io.StringIO()
    with ctx.store() as store:
        post = add_alerted_story(store)
        store.outbox.enqueue_alert(post.item_id, "C1", ["csam"], NOW)
        store.people.mute("C1", "source", "UN News", "U1", NOW)
        report = deliver_pending(store, ConsoleSink(out))
        assert (report.sent, report.muted) == (0, 1)
        assert store.db.execute("SELECT status, last_error FROM alerts").fetchall() == [
            ("muted", "source UN News muted")
        ]
    assert out.getvalue() == ""


def test_a_follow_up_muted_for_a_while_is_held_and_arrives_when_the_mute_ends(ctx: AppContext) -> None:
    out = io.StringIO()
    with ctx.store() as store:
        post = add_alerted_story(store)
        store.people.mute("C1", "story", str(post.story_id), "U1", NOW, NOW + timedelta(hours=24))
        store.outbox.enqueue_alert(post.item_id, "C1", ["csam"], NOW)
        held = deliver_pending(store, ConsoleSink(out), now=lambda: NOW)
        assert (held.sent, held.muted) == (0, 1)
        ((status, why),) = store.db.execute("SELECT status, last_error FROM alerts").fetchall()
        assert status == "queued" and why.startswith("story muted until 2026-02-06T18:00")
        assert deliver_pending(store, ConsoleSink(out), now=lambda: NOW + timedelta(hours=23)).sent == 0
        later = deliver_pending(store, ConsoleSink(out), now=lambda: NOW + timedelta(hours=24, minutes=1))
        assert later.sent == 1 and later.muted == 0
        assert store.db.execute("SELECT status FROM alerts").fetchall() == [("sent",)]
    assert "UNICEF warns on CSAM" in out.getvalue()


def test_alert_rendering_with_buttons_and_state() -> None:
    message = render_slack(alert(story_id=7), MessageState(triage="claimed", triage_by="U1"), actions=True)
    kinds = [b["type"] for b in message.blocks]
    assert kinds == ["section", "context", "section", "context", "actions"]
    assert "Claimed by <@U1>" in json.dumps(message.blocks[3])
    unclaim, done, more = message.blocks[4]["elements"]
    assert (unclaim["value"], done["value"], done["style"]) == ("7", "7", "primary")
    assert [o["value"] for o in more["options"]] == [
        "escalate|7",
        "mute_story|7",
        "mute_source|7",
        "not_relevant|7",
        "same_story|7",
    ]
    assert "actions" not in json.dumps(render_plain(message).blocks)
    # A user id that is not one renders as text, never as a mention or a ping.
    assert "<!channel>" not in json.dumps(render_slack(alert(), MessageState("done", "<!channel>")).blocks)


def test_home_view_hides_channels_the_user_cannot_see(ctx: AppContext) -> None:
    with ctx.store() as store:
        store.catalog.subscribe("G1", ["csam"], "U1", NOW)
        add_alerted_story(store, channel="G1")
        view = home_view(store, "U1", lambda channel: channel != "G1", NOW)
    text = json.dumps(view)
    assert view["type"] == "home" and "<#C1>" in text and "G1" not in text
    assert "UNICEF warns" not in text  # the only alert is in the hidden channel
    assert "`csam`" in text and "*UN News*" in text


def test_scheduler_polls_what_is_due_on_each_tick() -> None:
    due = [Source("a", "https://a.example/", interval=60)]
    polled: list[list[str]] = []

    def poll_job(sources: list[Source]) -> None:
        polled.append([x.name for x in sources])
        if "broken" in polled[-1]:
            raise RuntimeError("a poll that fails")

    scheduler = Scheduler(lambda: list(due), poll_job, lambda: None)
    assert {j.id for j in scheduler.aps.get_jobs()} == {"deliver", "catalog", "poll-due-0"}
    scheduler.poll_due()
    due.clear()
    scheduler.poll_due()  # nothing due: no poll at all
    due.append(Source("b", "https://b.example/", interval=300))  # added from Slack: due at once
    scheduler.poll_due()
    assert polled == [["a"], ["b"]]
    due[:] = [Source("broken", "https://c.example/")]
    tick = scheduler.aps.get_job("poll-due-0").func
    scheduler.aps.remove_job("poll-due-0")
    with pytest.raises(RuntimeError):
        tick()
    assert "poll-due-1" in {j.id for j in scheduler.aps.get_jobs()}  # the next tick is still scheduled


def test_the_delivery_thread_folds_wake_ups_into_one_more_round() -> None:
    rounds: list[int] = []
    started = [threading.Event(), threading.Event()]
    release = [threading.Event(), threading.Event()]

    def deliver() -> None:
        n = len(rounds)
        rounds.append(n)
        started[n].set()
        release[n].wait(10)  # a slow delivery, during which more alerts are queued

    scheduler = Scheduler(list, lambda sources: None, deliver)
    scheduler.start()
    try:
        scheduler.deliver_now()
        assert started[0].wait(10)
        for _ in range(3):
            scheduler.deliver_now()
        release[0].set()
        assert started[1].wait(10)
        assert not scheduler._delivery_wanted.is_set()  # three wake-ups: one more round, not three
    finally:
        release[1].set()
        scheduler.shutdown()
    assert rounds == [0, 1]


def test_a_tick_that_finds_alerts_due_wakes_delivery() -> None:
    delivered, asked = threading.Event(), threading.Event()

    def due() -> bool:
        asked.set()
        return True  # a retry's backoff, or a held follow-up's mute, is over

    scheduler = Scheduler(list, lambda sources: None, delivered.set, alerts_due=due)
    scheduler.start()  # the first tick runs at once
    try:
        assert asked.wait(10) and delivered.wait(10)
    finally:
        scheduler.shutdown()


def test_slack_config_and_run_modes(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[slack]\nadmins = ["U0A"]\nescalation_channel = "#escalations"\n')
    with pytest.raises(ConfigError) as bad:
        load_settings(config, environ={})
    assert str(bad.value).startswith(f"{config}:3: slack.escalation_channel: must be a Slack channel ID")
    config.write_text('[slack]\nadmins = ["U0A"]\n')
    settings = load_settings(config, environ={"SLACK_APP_TOKEN": "xapp-1", "SLACK_BOT_TOKEN": "xoxb-1"})
    assert settings.slack_admins == ("U0A",) and check_run_mode(settings, http=False) == "socket"
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        check_run_mode(settings, http=True)
    assert check_run_mode(replace(settings, slack_app_token=None), http=False) == "none"
    with pytest.raises(ConfigError, match="xapp-"):
        check_run_mode(replace(settings, slack_app_token="xoxb-wrong"), http=False)


def test_run_http_without_a_signing_secret_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("")
    result = run_newsalert(
        "run", "--http", config=config, db=tmp_path / "x.db", env={"SLACK_BOT_TOKEN": "xoxb-1"}
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "newsalert: config error: SLACK_SIGNING_SECRET: not set: "
        "HTTP mode verifies every request from Slack with it"
    )


def test_subscribe_to_a_digest_from_slack_then_list_and_stop_it(ctx: AppContext) -> None:
    reply = run(ctx, "subscribe csam digest daily 09:00 Europe/Berlin", channel="C2")
    assert reply.in_channel and "daily 09:00 (Europe/Berlin)" in reply.text
    assert "first on 2026-02-06 08:00 UTC" in reply.text
    with ctx.store() as store:
        ((sid, sub),) = [(i, s) for i, s, _, _ in store.catalog.subscriptions() if s.mode == "digest"]
        assert (sub.channel, sub.watchlists, sub.timezone) == ("C2", ("csam",), "Europe/Berlin")
        assert store.catalog.realtime_subscriptions() == [
            Subscription("C1", ("csam", "unicef"))
        ]  # no pings for C2
    listed = run(ctx, "list", channel="C2").text
    assert f"`{sid}`" in listed and "daily 09:00 (Europe/Berlin)" in listed
    assert "This channel has no subscriptions" not in listed
    stopped = run(ctx, f"unsubscribe digest {sid}", channel="C2")
    assert stopped.in_channel and sid in stopped.text
    with ctx.store() as store:
        assert not [s for _, s, _, _ in store.catalog.subscriptions() if s.mode == "digest"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("subscribe csam digest", "Which watchlists, and when?"),
        ("subscribe csam digest daily 9am", "bad time"),
        ("subscribe csam digest daily 09:00 Mars/Olympus", "unknown timezone"),
        ("subscribe nope digest daily 09:00", "No watchlist `nope`"),
    ],
)
def test_bad_digest_subscriptions_are_explained(ctx: AppContext, text: str, problem: str) -> None:
    reply = run(ctx, text, channel="C2")
    assert problem in reply.text and not reply.in_channel
