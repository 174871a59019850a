"""The Slack app end to end: `newsalert run --http` in a subprocess, real signed requests
(tests/slack_bot.py sends them as Slack does; Slack's Web API is tests/fake_slack.py).

One bot process serves most of the module, so the suite stays fast, and its tests pass in any order:
before each test the `bot` fixture resets the fake workspace and the feeds, and after it checks that
the catalog (subscriptions, watchlists, sources, mutes) is back as the module started it. What a test
leaves that the catalog does not hold (triage states, feedback, audit rows, stored items) lives in
channels, stories or names no other test looks at. The story-mute test, whose follow-up changes
the counts and searches every later test would see, gets a bot of its own (`own_bot`).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.store import Store
from tests.conftest import ROOT, run_newsalert, wait_for
from tests.fake_slack import VALID_TOKEN, FakeSlack
from tests.slack_bot import ADMIN, ALERTS, COPY, ESCALATION, OWNER, SECOND, STORY, USER, WIRE, Bot, rss


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_bot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    """The module's `newsalert run --http`, once on each backend."""
    db = request.getfixturevalue("pg_cluster").fresh_database() if request.param == "postgresql" else None
    app = Bot(tmp_path_factory.mktemp("slack-app"), db)
    try:
        yield app.launch()
    finally:
        app.close()


@pytest.fixture
def bot(shared_bot: Bot) -> Iterator[Bot]:
    """The module's bot, reset for this test and checked after it (see the module docstring)."""
    shared_bot.begin_test()
    yield shared_bot
    shared_bot.end_test()


@pytest.fixture
def own_bot(tmp_path: Path) -> Iterator[Bot]:
    """A bot for this test alone, for a change the shared bot must not see."""
    app = Bot(tmp_path)
    try:
        yield app.launch()
    finally:
        app.close()


# -- requests Slack did not sign ----------------------------------------------------------------


def test_unsigned_forged_and_stale_requests_are_refused_and_do_nothing(bot: Bot) -> None:
    url = bot.slack.response_url()
    body = bot.command_body("subscribe sextortion", USER, ALERTS, url)
    form = "application/x-www-form-urlencoded"

    def audited() -> list[tuple]:
        return bot.query("SELECT count(*) FROM audit WHERE action = 'subscribe' AND detail = 'sextortion'")

    before = audited()
    assert bot.post(body, form, signed=False)[0] == 401
    forged = body.replace("sextortion", "csam")  # signed, then changed on the way
    ts = str(int(time.time()))
    headers_ok = bot.verifier.generate_signature(timestamp=ts, body=body)
    request = urllib.request.Request(
        f"http://127.0.0.1:{bot.port}/slack/events",
        data=forged.encode(),
        headers={"Content-Type": form, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": headers_ok},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    # Correctly signed, but 6 minutes old: a replay.
    assert bot.post(body, form, timestamp=int(time.time()) - 6 * 60)[0] == 401
    time.sleep(0.3)
    assert bot.slack.responses_to(url) == []
    assert audited() == before
    # The same request, signed now, goes through.
    assert "sextortion" in bot.command("subscribe sextortion", channel=SECOND)["text"]
    assert bot.command("unsubscribe sextortion", channel=SECOND)["response_type"] == "in_channel"


def _healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_endpoint_and_unknown_paths(bot: Bot) -> None:
    # The bot polls every second; on a loaded machine a poll can take longer than the three
    # intervals /healthz allows, so this waits for a healthy answer instead of taking the first.
    wait_for(lambda: _healthz(bot.port)[0] == 200, what="/healthz to answer 200")
    assert _healthz(bot.port)[1]["scheduler"] == "alive"
    with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}/metrics", timeout=5) as r:
        assert r.status == 200 and b"newsalert_" in r.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{bot.port}/nope", timeout=5)
    assert missing.value.code == 404


# -- everyone's commands --------------------------------------------------------------------------


def test_help_and_unknown_command(bot: Bot) -> None:
    help_text = bot.command("help")["text"]
    for example in ("subscribe csam", "query test", "mute source", "watchlist add", "source add"):
        assert example in help_text
    assert bot.command("")["text"] == help_text
    unknown = bot.command("frobnicate <!channel>")
    assert unknown["text"].startswith("Unknown command `frobnicate`")
    assert "/newsalert help" in unknown["text"]
    assert unknown["response_type"] == "ephemeral"


def test_subscribe_unsubscribe_and_list(bot: Bot) -> None:
    # A public channel the bot is not in: it asks to be invited and subscribes nothing.
    refused = bot.command("subscribe sextortion csam", channel="C0PUBLIC")
    assert refused["response_type"] == "ephemeral" and "/invite @newsalert" in refused["text"]
    assert not bot.calls_to("conversations.join")
    bot.slack.not_member.discard("C0PUBLIC")  # someone invited it
    reply = bot.command("subscribe sextortion csam", channel="C0PUBLIC")
    assert reply["response_type"] == "in_channel"
    assert f"<@{USER}> subscribed this channel" in reply["text"] and "`sextortion`, `csam`" in reply["text"]
    listed = bot.command("list", channel="C0PUBLIC")
    assert listed["response_type"] == "ephemeral"
    assert "`sextortion`" in listed["text"] and "`csam`" in listed["text"] and f"<@{USER}>" in listed["text"]
    assert "already gets alerts" in bot.command("subscribe csam", channel="C0PUBLIC")["text"]
    gone = bot.command("unsubscribe csam", channel="C0PUBLIC")
    assert gone["response_type"] == "in_channel" and "It still gets `sextortion`" in gone["text"]
    assert "not subscribed to `csam`" in bot.command("unsubscribe csam", channel="C0PUBLIC")["text"]
    assert "No watchlist `nope`" in bot.command("subscribe nope", channel="C0PUBLIC")["text"]
    # A private channel the bot is not in: it asks to be invited, and subscribes nothing.
    private = bot.command("subscribe csam", channel="C0PRIVATE")
    assert "/invite @newsalert" in private["text"] and private["response_type"] == "ephemeral"
    assert "no subscriptions" in bot.command("list", channel="C0PRIVATE")["text"]
    last = bot.command("unsubscribe sextortion", channel="C0PUBLIC")
    assert last["response_type"] == "in_channel" and "It gets no alerts now." in last["text"]


def test_watchlists_and_sources(bot: Bot) -> None:
    watchlists = bot.command("watchlists")["text"]
    assert '`csam` — `CSAM OR "child sexual abuse material*" OR "child abuse imagery"`' in watchlists
    assert "`unicef` — `UNICEF`" in watchlists
    sources = bot.command("sources")["text"]
    # The fixture's item is from February: a quiet source, polled at its ceiling (4 x interval).
    assert "*Wire* (feed, every 4s (quiet))" in sources
    assert "last success" in sources and "next poll" in sources


def test_search_and_query_test(bot: Bot) -> None:
    found = bot.command("search unicef since:7d")["text"]
    assert STORY in found and "1 source" in found and "reuters.example" in found
    assert "No story" in bot.command("search ransomware")["text"]  # nothing any test stores
    # The digest's hint: a watchlist's own query, kept to what that watchlist matched.
    assert STORY in bot.command("search watchlist:unicef since:1d")["text"]
    assert "No story" in bot.command("search watchlist:ransomware since:1d")["text"]
    assert "No watchlist `nope`" in bot.command("search watchlist:nope")["text"]
    tested = bot.command('query test "child sexual abuse material" NEAR/10 UNICEF')["text"]
    assert "would have matched *1 item in 1 story* in the last 30 days" in tested
    assert "UNICEF" in tested and "reuters.example" in tested
    broken = bot.command("query test (unicef")["text"]
    assert broken.startswith("Query error:") and "column" in broken


def test_mute_and_unmute_a_source_in_one_channel(bot: Bot) -> None:
    muted = bot.command("mute source wire for 7d", channel=SECOND)
    assert muted["response_type"] == "in_channel"
    assert "muted source *Wire* in this channel for 7d" in muted["text"]
    assert "source *Wire* until" in bot.command("list", channel=SECOND)["text"]
    assert "Nothing is muted here." in bot.command("list", channel=ALERTS)["text"]
    assert "No source named *Nope*" in bot.command("mute source Nope", channel=SECOND)["text"]
    assert "unmuted source *Wire*" in bot.command("unmute source Wire", channel=SECOND)["text"]
    assert "is not muted" in bot.command("unmute source Wire", channel=SECOND)["text"]


def test_status(bot: Bot) -> None:
    text = bot.command("status")["text"]
    for part in ("Last poll:", "Queued alerts: ", "Failing sources: none of", "Broken subscriptions: none"):
        assert part in text


# -- admins -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "watchlist add x y",
        "watchlist remove csam",
        "source add https://example.org/feed",
        "source remove Wire",
    ],
)
def test_watchlist_and_source_management_is_refused_to_non_admins(bot: Bot, text: str) -> None:
    reply = bot.command(text, user=USER)
    assert reply["text"].startswith("Only newsalert admins can"), text
    assert any(c["user"] == USER for c in bot.calls_to("users.info"))  # asked Slack, too
    assert bot.query("SELECT count(*) FROM watchlists WHERE name = 'x'") == [(0,)]


def test_admins_manage_watchlists(bot: Bot) -> None:
    added = bot.command("watchlist add nudify nudif* OR “undress app*”", user=ADMIN)["text"]
    assert 'Watchlist `nudify` added: `nudif* OR "undress app*"`' in added
    assert "exists" in bot.command("watchlist add nudify x", user=ADMIN)["text"]
    # A workspace owner (users.info) is an admin too, without being in the config.
    edited = bot.command("watchlist edit nudify nudif* OR deepnude", user=OWNER)["text"]
    assert "is now `nudif* OR deepnude`" in edited
    assert "Query error:" in bot.command("watchlist edit nudify (nudif*", user=ADMIN)["text"]
    assert "`nudify` — `nudif* OR deepnude`" in bot.command("watchlists")["text"]
    assert "removed" in bot.command("watchlist remove nudify", user=ADMIN)["text"]
    assert "`nudify`" not in bot.command("watchlists")["text"]
    assert "no watchlist `nudify`" in bot.command("watchlist remove nudify", user=ADMIN)["text"].lower()


def test_source_add_checks_the_url_fetches_once_and_is_polled(bot: Bot) -> None:
    refused = bot.command("source add ftp://example.org/feed", user=ADMIN)["text"]
    assert refused.startswith("Refused:") and "http://" in refused
    assert (
        "Could not add"
        in bot.command(f"source add {bot.feeds.url('/missing.rss')} Missing", user=ADMIN)["text"]
    )
    url = bot.feeds.serve(
        "/sextortion.rss",
        rss(
            (
                "Sextortion network dismantled",
                "https://news.example/sextortion",
                "Police said the sextortion ring …",
            )
        ),
    )
    assert bot.command("subscribe sextortion", channel=SECOND)["response_type"] == "in_channel"
    before = bot.feeds.hits("/sextortion.rss")
    added = bot.command(f"source add {url} Police news", user=ADMIN)["text"]
    assert "Source *Police news* added (feed, polled every 1s)" in added
    assert "Sextortion network dismantled" in added
    assert bot.feeds.hits("/sextortion.rss") > before  # fetched once to check it, before the ack's reply
    # The running scheduler picks the new source up: its item alerts the subscribed channel.
    wait_for(
        lambda: any(
            "Sextortion network" in p["text"] and p["channel"] == SECOND
            for p in bot.calls_to("chat.postMessage")
        ),
        20,
        "the new source's alert",
    )
    assert "*Police news*" in bot.command("sources")["text"]
    assert "already polled" in bot.command(f"source add {url} Other name", user=ADMIN)["text"]
    assert "removed" in bot.command("source remove police NEWS", user=ADMIN)["text"]
    assert "*Police news*" not in bot.command("sources")["text"]
    assert bot.command("unsubscribe sextortion", channel=SECOND)["response_type"] == "in_channel"


# -- buttons on the alert -----------------------------------------------------------------------


def updates_of(bot: Bot, channel: str, ts: str) -> list[dict]:
    """The chat.update calls on one message since the test began."""
    return [u for u in bot.calls_to("chat.update") if u["channel"] == channel and u["ts"] == ts]


def test_every_alert_carries_claim_done_and_a_menu(bot: Bot) -> None:
    _, story = bot.alert_message(ALERTS)
    (post,) = [p for p in bot.slack.posts() if p["channel"] == ALERTS and STORY in p["text"]]
    (actions,) = [b for b in post["blocks"] if b["type"] == "actions"]
    claim, done, more = actions["elements"]
    assert (claim["action_id"], claim["style"], claim["value"]) == ("alert_claim", "primary", str(story))
    assert done["action_id"] == "alert_done" and more["type"] == "overflow"
    assert [o["value"].split("|")[0] for o in more["options"]] == [
        "escalate",
        "mute_story",
        "mute_source",
        "not_relevant",
        "same_story",  # tests/test_corrections.py
    ]


def controls(update: dict) -> list[str]:
    return [e["action_id"] for b in update["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_claim_unclaim_done_reopen_and_escalate_through_the_modal(bot: Bot) -> None:
    ts, story = bot.alert_message(SECOND)

    def last() -> dict:
        return updates_of(bot, SECOND, ts)[-1]

    bot.click("alert_claim", ts=ts, story=story, channel=SECOND, user=USER)
    wait_for(lambda: updates_of(bot, SECOND, ts), what="chat.update after Claim")
    assert f"Claimed by <@{USER}>" in json.dumps(last()["blocks"])
    assert controls(last()) == ["alert_unclaim", "alert_done", "alert_more"]
    assert bot.query("SELECT state, user_id FROM triage WHERE channel = ?", (SECOND,)) == [("claimed", USER)]
    bot.click("alert_unclaim", ts=ts, story=story, channel=SECOND, user=USER)
    wait_for(lambda: controls(last())[0] == "alert_claim", what="Unclaim")
    assert f"Unclaimed by <@{USER}>" in json.dumps(last()["blocks"])

    def escalations() -> list[dict]:
        return [p for p in bot.calls_to("chat.postMessage") if p["channel"] == ESCALATION]

    bot.choose("escalate", ts=ts, story=story, channel=SECOND, user=ADMIN)
    wait_for(lambda: bot.slack.modals, what="the Escalate modal (views.open)")
    form = bot.slack.modals[-1]
    assert form["callback_id"] == "escalate_form" and form["private_metadata"] == f"{SECOND}|{ts}"
    # No reason: the form says so and nothing is posted.
    status, answer = bot.submit(form, {"reason": {"type": "plain_text_input", "value": " "}}, user=ADMIN)
    assert status == 200 and json.loads(answer)["response_action"] == "errors"
    values = {
        "reason": {"type": "plain_text_input", "value": "Names a school; legal should see it"},
        "severity": {
            "type": "static_select",
            "selected_option": {"value": "high", "text": {"type": "plain_text", "text": "High"}},
        },
        "to": {"type": "conversations_select", "selected_conversation": None},
    }
    assert bot.submit(form, values, user=ADMIN)[0] == 200
    wait_for(escalations, what="the escalation post")
    (escalation,) = escalations()
    assert f"<@{ADMIN}> escalated an alert from <#{SECOND}>" in escalation["text"]
    assert "*High*" in escalation["text"] and "Names a school; legal should see it" in escalation["text"]
    assert f"https://fake.slack.test/archives/{SECOND}/p" in escalation["text"]
    assert escalation["unfurl_links"] is False
    wait_for(lambda: "Escalated by" in json.dumps(last()["blocks"]), what="update")

    bot.click("alert_done", ts=ts, story=story, channel=SECOND, user=USER)
    wait_for(lambda: f"Done by <@{USER}>" in json.dumps(last()["blocks"]), what="Done")
    assert controls(last()) == ["alert_reopen", "alert_more"]
    assert bot.query("SELECT state FROM triage WHERE channel = ?", (SECOND,)) == [("done",)]
    bot.click("alert_reopen", ts=ts, story=story, channel=SECOND, user=OWNER)
    wait_for(lambda: f"Reopened by <@{OWNER}>" in json.dumps(last()["blocks"]), what="Reopen")
    assert controls(last()) == ["alert_claim", "alert_done", "alert_more"]
    assert any(e["channel"] == SECOND and e["user"] == ADMIN for e in bot.calls_to("chat.postEphemeral"))
    # Each click is in the audit log; `newsalert audit` prints it (test_audit_command_prints_the_changes).
    claims = bot.query(
        "SELECT user_id, channel, detail FROM audit WHERE action = 'claim' AND channel = ?", (SECOND,)
    )
    assert claims == [(USER, SECOND, f"story {story}: {STORY}")]


def test_not_relevant_is_counted_per_watchlist_in_status(bot: Bot) -> None:
    ts, story = bot.alert_message(ALERTS)
    bot.click("alert_not_relevant", ts=ts, story=story, channel=ALERTS, user=USER)
    wait_for(
        lambda: (
            bot.query("SELECT watchlist FROM feedback WHERE channel = ? ORDER BY watchlist", (ALERTS,))
            == [("csam",), ("unicef",)]
        ),
        what="feedback rows",
    )
    wait_for(lambda: updates_of(bot, ALERTS, ts), what="chat.update")
    assert f"Not relevant: <@{USER}>" in json.dumps(updates_of(bot, ALERTS, ts)[-1]["blocks"])
    status = bot.command("status")["text"]
    assert "`csam`: 1 / 1 (100%)" in status
    assert "`unicef`: 1 / 2 (50%)" in status


def test_muting_a_story_stops_its_follow_ups_in_that_channel_only(own_bot: Bot) -> None:
    bot = own_bot
    ts, story = bot.alert_message(ALERTS)
    other_ts, _ = bot.alert_message(SECOND)
    opened = len(bot.slack.modals)
    bot.choose("mute_story", ts=ts, story=story, channel=ALERTS, user=USER)
    wait_for(lambda: len(bot.slack.modals) > opened, what="the Mute dialog")
    form = bot.slack.modals[-1]
    assert form["callback_id"] == "mute_form"
    assert [
        o["value"] for b in form["blocks"] if b.get("block_id") == "duration" for o in b["element"]["options"]
    ] == ["24h", "7d", "forever"]
    values = {
        "target": {"type": "radio_buttons", "selected_option": {"value": "story"}},
        "duration": {"type": "radio_buttons", "selected_option": {"value": "7d"}},
    }
    assert bot.submit(form, values)[0] == 200
    wait_for(lambda: "Story muted here by" in json.dumps(updates_of(bot, ALERTS, ts)[-1:]), what="the update")
    (until,) = bot.query("SELECT until FROM mutes WHERE channel = ? AND kind = 'story'", (ALERTS,))[0]
    assert until is not None  # muted for 7 days, not for ever
    updates_after_mute = len(updates_of(bot, ALERTS, ts))
    # The story's next report arrives: threaded in the other channel, nothing in the muted one.
    bot.feeds.serve("/wire.rss", rss(WIRE, COPY))
    wait_for(lambda: bot.slack.replies(SECOND, other_ts), 20, "the follow-up in the other channel")
    wait_for(
        lambda: bot.query(
            "SELECT id FROM alerts WHERE channel = ? AND status = 'queued'"
            " AND last_error LIKE 'story muted until%'",
            (ALERTS,),
        ),
        what="the muted follow-up, held",
    )
    assert bot.slack.replies(ALERTS, ts) == []
    assert len(updates_of(bot, ALERTS, ts)) == updates_after_mute  # the parent is not updated either
    assert "story “" + STORY in bot.command("list", channel=ALERTS)["text"]
    # Seven days pass (the stored times move back by 7 days): the held follow-up arrives in the thread.
    store = Store.open(bot.db)
    with store.transaction():
        store.db.execute("UPDATE mutes SET until = '2000-01-01T00:00:00+00:00' WHERE channel = ?", (ALERTS,))
        store.db.execute(
            "UPDATE alerts SET next_attempt_at = '2000-01-01T00:00:00+00:00'"
            " WHERE channel = ? AND status = 'queued'",
            (ALERTS,),
        )
    store.close()
    wait_for(lambda: bot.slack.replies(ALERTS, ts), 20, "the held follow-up, after the mute")
    assert "story “" not in bot.command("list", channel=ALERTS)["text"]


def test_app_home_shows_channels_watchlists_sources_and_latest_alerts(bot: Bot) -> None:
    assert (
        "subscribed this channel" in bot.command("subscribe unicef", channel="C0SECRET", user=OWNER)["text"]
    )
    for user in (USER, OWNER):
        assert bot.event({"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"}) == 200
        wait_for(lambda user=user: user in bot.slack.views, what="views.publish")
    home = json.dumps(bot.slack.views[USER])
    for part in (f"<#{ALERTS}>", f"<#{SECOND}>", "`csam`", "`sextortion`", "*Wire*", "Latest alerts", STORY):
        assert part in home, part
    # A private channel with subscriptions shows only to its members.
    assert "C0SECRET" not in home
    assert "<#C0SECRET>" in json.dumps(bot.slack.views[OWNER])
    assert bot.command("unsubscribe unicef", channel="C0SECRET", user=OWNER)["response_type"] == "in_channel"


def test_a_retried_event_is_handled_once(bot: Bot) -> None:
    """Slack sends an event again when it thinks the first answer was lost (X-Slack-Retry-Num):
    the retry is answered 200 and not handled again, whichever worker it reaches (the database
    remembers the event id, not the process)."""
    home = {"type": "app_home_opened", "user": USER, "channel": "D0HOME", "tab": "home"}
    before = len(bot.calls_to("views.publish"))
    event_id = f"EvRetried{time.monotonic_ns()}"
    assert bot.event(home, event_id=event_id) == 200
    wait_for(lambda: len(bot.calls_to("views.publish")) == before + 1, what="the first views.publish")
    assert bot.event(home, event_id=event_id, retry=1) == 200
    wait_for(
        lambda: f"slack event already handled event_id={event_id}" in bot.output()[bot.log_seen :],
        what="the retry to be recognised",
    )
    assert bot.event(home) == 200  # a new event is handled as before
    wait_for(lambda: len(bot.calls_to("views.publish")) == before + 2, what="the next event's views.publish")
    assert len(bot.calls_to("views.publish")) == before + 2
    assert bot.query("SELECT count(*) FROM slack_events WHERE event_id = ?", (event_id,)) == [(1,)]


def test_audit_command_prints_the_changes(bot: Bot) -> None:
    audited = "C0AUDIT"  # a channel no other test changes
    assert bot.command("subscribe sextortion csam", channel=audited)["response_type"] == "in_channel"
    assert "muted source *Wire*" in bot.command("mute source Wire for 1h", channel=audited)["text"]
    assert "added" in bot.command("watchlist add ncii ncii", user=ADMIN, channel=audited)["text"]
    # Undone again, as the `bot` fixture wants the catalog back: undoing is audited too.
    assert "removed" in bot.command("watchlist remove ncii", user=ADMIN, channel=audited)["text"]
    assert "unmuted source *Wire*" in bot.command("unmute source Wire", channel=audited)["text"]
    assert "no alerts now" in bot.command("unsubscribe sextortion csam", channel=audited)["text"]
    result = run_newsalert("audit", config=bot.config, db=bot.db)
    assert result.returncode == 0, result.stderr
    lines = [" ".join(line.split()[3:]) for line in result.stdout.splitlines()]  # after the time
    assert f"{USER} {audited} subscribe: sextortion, csam" in lines
    assert f"{USER} {audited} mute source: Wire for 1h" in lines
    assert any(line.startswith(f"{ADMIN} {audited} watchlist add: ncii:") for line in lines)
    assert f"{USER} {audited} unsubscribe: sextortion, csam" in lines


def test_changes_from_slack_survive_a_restart_and_beat_the_config(bot: Bot) -> None:
    # The config subscribes SECOND to unicef; unsubscribing from Slack must outlive the file.
    assert (
        "unsubscribed this channel from `unicef`" in bot.command("unsubscribe unicef", channel=SECOND)["text"]
    )
    bot.command("subscribe csam", channel=SECOND)
    bot.command("watchlist add trafficking trafficking", user=ADMIN)
    bot.command("mute source Wire", channel=SECOND)
    bot.stop()
    bot.start()
    listed = bot.command("list", channel=SECOND)["text"]
    assert "`csam`" in listed and "`unicef`" not in listed
    assert "source *Wire*" in listed
    assert "`trafficking`" in bot.command("watchlists")["text"]
    removed = bot.query(
        """SELECT removed_at IS NOT NULL, changed_by FROM subscriptions
           WHERE origin = 'config' AND channel = ?""",
        (SECOND,),
    )
    assert removed == [(1, USER)]
    # Undone, from Slack, as the `bot` fixture wants the catalog back (the tests after this one run
    # on the restarted bot, which they cannot tell from the first).
    bot.command("unmute source Wire", channel=SECOND)
    bot.command("watchlist remove trafficking", user=ADMIN)
    bot.command("unsubscribe csam", channel=SECOND)
    assert "subscribed this channel" in bot.command("subscribe unicef", channel=SECOND)["text"]


def test_manifest_is_valid_yaml_with_the_scopes_used() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes == {
        "chat:write",
        "commands",
        "channels:history",
        "groups:history",
        "channels:read",
        "groups:read",
        "users:read",
        # DM and group-DM subscriptions are accepted, so the scopes to read and post there:
        "im:read",
        "im:write",
        "im:history",
        "mpim:read",
        "mpim:write",
        "mpim:history",
    }
    assert manifest["features"]["slash_commands"][0]["command"] == "/newsalert"
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "app_home_opened" in manifest["settings"]["event_subscriptions"]["bot_events"]


def test_socket_mode_connects_out_with_the_app_token(tmp_path: Path, slack: FakeSlack) -> None:
    config = tmp_path / "c.toml"
    config.write_text("")
    result = run_newsalert(
        "run", config=config, db=tmp_path / "x.db", slack=slack, env={"SLACK_APP_TOKEN": "xapp-1-revoked"}
    )
    # The fake Slack knows no app-level token: the bot asked for a connection and stops clearly.
    assert [c.headers.get("Authorization") for c in slack.calls if c.method == "apps.connections.open"] == [
        "Bearer xapp-1-revoked"
    ]
    assert result.returncode == 4, result.stderr
    assert "Slack refused SLACK_APP_TOKEN for Socket Mode: invalid_auth" in result.stderr
    assert "Traceback" not in result.stderr


# -- paging -------------------------------------------------------------------------------------


def buttons(reply: dict) -> dict[str, dict]:
    return {
        e["action_id"]: e for b in reply.get("blocks", []) if b["type"] == "actions" for e in b["elements"]
    }


def test_paging_through_sources_and_search_replaces_the_reply(bot: Bot) -> None:
    from datetime import UTC, datetime

    from bot.model import Item, Source

    now = datetime.now(UTC)
    store = Store.open(bot.db)
    with store.transaction():
        for i in range(45):
            store.catalog.add_source(
                Source(f"Extra {i:02d}", f"https://extra{i}.example/rss", interval=86400), ADMIN, now
            )
        for i in range(23):
            story = store.stories.new_story(now)
            item = Item(
                "Wire",
                f"page-{i}",
                f"https://pages.example/{i}",
                f"Grooming case number {i:02d}",
                "",
                now,
                now,
            )
            store.items.add_item(item, story_id=story, new_story=True)
    store.close()
    try:
        first = bot.command("sources")
        assert "Page 1 of 3" in json.dumps(first["blocks"]) and "Previous page" not in json.dumps(first)
        second = bot.press(buttons(first)["page_next"])
        assert second["replace_original"] is True and second["response_type"] == "ephemeral"
        assert "Page 2 of 3" in json.dumps(second["blocks"])
        third = bot.press(buttons(second)["page_next"])
        assert "page_next" not in buttons(third) and "Extra 44" in json.dumps(third["blocks"])
        assert "Page 2 of 3" in json.dumps(bot.press(buttons(third)["page_prev"])["blocks"])

        found = bot.command("search grooming since:1d")
        assert found["text"].count("Grooming case number") == 10
        later = bot.press(buttons(found)["page_next"])
        assert (
            later["text"].count("Grooming case number") == 10 and "Grooming case number 12" in later["text"]
        )
        last = bot.press(buttons(later)["page_next"])
        assert last["text"].count("Grooming case number") == 3 and "page_next" not in buttons(last)

        # A button value Slack would never send back from us is answered, not a traceback.
        for value in ("9" * 5000, "garbage", "3|source add https://evil.example/feed"):
            stale = bot.press({"action_id": "page_next", "value": value})
            assert "run the command again" in stale["text"] and stale["replace_original"] is True
        assert bot.query("SELECT count(*) FROM sources WHERE url LIKE '%evil%'") == [(0,)]

        # App Home pages its sources too: "Next sources" publishes the view with page 2.
        bot.slack.views.pop(USER, None)
        assert bot.event({"type": "app_home_opened", "user": USER, "channel": "D0HOME", "tab": "home"}) == 200
        wait_for(lambda: USER in bot.slack.views, what="views.publish")
        home = bot.slack.views.pop(USER)
        (next_sources,) = [
            e
            for b in home["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["value"] == "sources:2"
        ]
        payload = {
            "type": "block_actions",
            "user": {"id": USER, "username": "u0user", "team_id": "T0FAKE"},
            "api_app_id": "A0NEWSALERT",
            "token": "legacy-unused",
            "container": {"type": "view", "view_id": "V0HOME"},
            "trigger_id": "1.2.5",
            "team": {"id": "T0FAKE", "domain": "fake"},
            "view": {"id": "V0HOME", "type": "home", "private_metadata": home["private_metadata"]},
            "actions": [{**next_sources, "block_id": "b", "action_ts": f"{time.time():.6f}"}],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        assert bot.post(body, "application/x-www-form-urlencoded")[0] == 200
        wait_for(lambda: USER in bot.slack.views, what="the second page of Home")
        assert "Page 2 of 4" in json.dumps(bot.slack.views[USER]["blocks"])
    finally:
        store = Store.open(bot.db)
        with store.transaction():
            for i in range(45):
                store.catalog.remove_source(f"Extra {i:02d}", ADMIN, now)
        store.close()


def home_click(bot: Bot, action_id: str, user: str) -> None:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0FAKE"},
        "api_app_id": "A0NEWSALERT",
        "token": "legacy-unused",
        "container": {"type": "view", "view_id": "V0HOME"},
        "trigger_id": "1.2.7",
        "team": {"id": "T0FAKE", "domain": "fake"},
        "view": {"id": "V0HOME", "type": "home", "private_metadata": "{}"},
        "actions": [{"action_id": action_id, "block_id": "watchlist_forms", "type": "button",
                     "action_ts": f"{time.time():.6f}"}],
    }  # fmt: skip
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    assert bot.post(body, "application/x-www-form-urlencoded")[0] == 200


def test_app_home_watchlist_forms_add_for_admins_refuse_others_and_test_for_anyone(bot: Bot) -> None:
    assert bot.event({"type": "app_home_opened", "user": USER, "channel": "D0HOME", "tab": "home"}) == 200
    wait_for(lambda: USER in bot.slack.views, what="views.publish")
    home = json.dumps(bot.slack.views[USER])
    assert all(f"home_watchlist_{kind}" in home for kind in ("add", "edit", "test"))

    opened = len(bot.slack.modals)
    home_click(bot, "home_watchlist_add", USER)
    wait_for(lambda: len(bot.slack.modals) > opened, what="the refusal")
    assert "Only newsalert admins" in json.dumps(bot.slack.modals[-1])  # a clear refusal, no form

    home_click(bot, "home_watchlist_add", ADMIN)
    wait_for(lambda: len(bot.slack.modals) > opened + 1, what="the Add form")
    form = bot.slack.modals[-1]
    assert form["callback_id"] == "watchlist_form" and form["private_metadata"] == "add"
    values = {
        "name": {"type": "plain_text_input", "value": "childcare"},
        "query": {"type": "plain_text_input", "value": 'UNICEF NEAR/5 "children"'},
    }
    status, answer = bot.submit(form, values, user=ADMIN)
    assert status == 200 and json.loads(answer)["response_action"] == "update"
    assert "Watchlist `childcare` added" in answer
    assert bot.query("SELECT query FROM watchlists WHERE name = 'childcare'") == [
        ('UNICEF NEAR/5 "children"',)
    ]
    # Submitted by someone who is not an admin (a form kept open, or forged): refused, not saved.
    sneaky = {**values, "name": {"type": "plain_text_input", "value": "sneaky"}}
    assert "Only newsalert admins" in bot.submit(form, sneaky, user=USER)[1]
    assert bot.query("SELECT count(*) FROM watchlists WHERE name = 'sneaky'") == [(0,)]
    bad = {**values, "name": {"type": "plain_text_input", "value": "<!here>"}}
    assert "cannot be a watchlist name" in bot.submit(form, bad, user=ADMIN)[1]

    home_click(bot, "home_watchlist_test", USER)
    wait_for(lambda: bot.slack.modals[-1].get("private_metadata") == "test", what="the Test form")
    tested = bot.submit(bot.slack.modals[-1], {"query": {"type": "plain_text_input", "value": "UNICEF"}})[1]
    assert "would have matched" in tested
    assert "removed" in bot.command("watchlist remove childcare", user=ADMIN)["text"]


def test_one_client_factory_retries_reads_and_updates_but_never_a_post() -> None:
    from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

    from bot.slack.client import posting_client, web_client

    safe = web_client(VALID_TOKEN, "http://127.0.0.1:9/api/")
    kinds = {type(h) for h in safe.retry_handlers}
    assert RateLimitErrorRetryHandler in kinds and ConnectionErrorRetryHandler in kinds
    poster = posting_client(safe)
    assert poster.retry_handlers == [] and poster.base_url == safe.base_url and poster.token == VALID_TOKEN
    # An escalation post on a dropped connection is tried once: nothing listens on port 9.
    with pytest.raises(OSError):
        poster.chat_postMessage(channel="C1", text="x", unfurl_links=False, unfurl_media=False)
