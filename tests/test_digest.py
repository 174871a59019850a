"""Digest subscriptions: schedules across timezones and DST, exact coverage, Slack limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from slack_sdk.models.blocks import Block

from bot.alerts.digest import (
    MAX_BLOCKS,
    Digest,
    DigestStory,
    ScheduleError,
    build_digest,
    missed_digests,
    next_digest,
    render_digest,
    send_digest,
    trigger,
)
from bot.alerts.render import BLOCK_TEXT_LIMIT
from bot.config import load_settings
from bot.errors import ConfigError
from bot.model import Item, Span, Subscription, Watchlist
from bot.slack.sink import SlackSink
from bot.store import Store
from bot.store.rows import subscription_id
from tests.fake_slack import VALID_TOKEN, FakeSlack
from tests.store_checks import story_of

DAY1 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday


def at(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


@pytest.mark.parametrize(
    ("schedule", "zone", "after", "expected"),
    [
        # Europe/Berlin moves to summer time on 2026-03-29: 09:00 local is 08:00 UTC, then 07:00 UTC.
        (
            "daily 09:00",
            "Europe/Berlin",
            datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
            at("Europe/Berlin", 2026, 3, 29, 9, 0),
        ),
        (
            "daily 09:00",
            "Europe/Berlin",
            datetime(2026, 3, 27, 12, 0, tzinfo=UTC),
            at("Europe/Berlin", 2026, 3, 28, 9, 0),
        ),
        # New York leaves summer time on 2026-11-01.
        (
            "weekdays 08:30",
            "America/New_York",
            datetime(2026, 10, 30, 14, 0, tzinfo=UTC),
            at("America/New_York", 2026, 11, 2, 8, 30),
        ),
        (
            "weekly fri 17:00",
            "Asia/Tokyo",
            datetime(2026, 2, 2, tzinfo=UTC),
            at("Asia/Tokyo", 2026, 2, 6, 17, 0),
        ),
        # cron numbers Sunday 0 .. Saturday 6: "1-5" is Monday to Friday
        (
            "30 8 * * 1-5",
            "UTC",
            datetime(2026, 2, 7, 0, 0, tzinfo=UTC),
            datetime(2026, 2, 9, 8, 30, tzinfo=UTC),
        ),
        ("0 7 * * 0", "UTC", datetime(2026, 2, 2, 0, 0, tzinfo=UTC), datetime(2026, 2, 8, 7, 0, tzinfo=UTC)),
    ],
)
def test_schedules_in_several_timezones(schedule, zone, after, expected) -> None:
    sub = Subscription("C1", ("csam",), "digest", schedule, zone)
    fire = next_digest(sub, after)
    assert fire == expected and fire.utcoffset() == expected.utcoffset()


def test_across_the_dst_change_the_utc_hour_moves_and_no_day_is_skipped() -> None:
    fire = trigger("daily 09:00", "Europe/Berlin")
    times, at_ = [], datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    for _ in range(4):
        at_ = fire.get_next_fire_time(None, at_ + timedelta(seconds=1))
        times.append(at_.astimezone(UTC).strftime("%m-%d %H:%M"))
    assert times == ["03-28 08:00", "03-29 07:00", "03-30 07:00", "03-31 07:00"]


@pytest.mark.parametrize("bad", ["daily 9", "daily 24:00", "weekly someday 09:00", "hourly", "61 * * * *"])
def test_bad_schedules_are_refused(bad: str) -> None:
    with pytest.raises(ScheduleError):
        trigger(bad, "UTC")


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(ScheduleError, match="timezone"):
        trigger("daily 09:00", "Mars/Olympus")


# --- coverage -----------------------------------------------------------------------------------

SUB = Subscription("C1", ("csam", "deepfakes"), "digest", "daily 09:00", "UTC")


@pytest.fixture
def store(db_target: str):
    s = Store.open(db_target)
    s.catalog.sync_config([], [Watchlist("csam", "CSAM"), Watchlist("deepfakes", "deepfake")], [SUB], DAY1)
    yield s
    s.close()


SID = subscription_id(SUB)
_n = iter(range(10_000))


def add(
    store: Store,
    seen: datetime,
    *,
    watchlist: str = "csam",
    story: int | None = None,
    published: datetime | None = None,
    source: str = "S",
) -> int:
    n = next(_n)
    item = Item(
        source=source,
        guid=f"g{n}",
        url=f"https://n.example/{n}",
        title=f"CSAM story {n}",
        text=f"Police found CSAM in case {n}. More details.",
        published=published or seen,
        fetched=seen,
    )
    item_id = store.items.add_item(item, story_id=story or store.stories.new_story(seen))
    store.items.add_matches(item_id, {watchlist: [Span("title", 0, 4, watchlist)]})
    return story_of(store, item_id)


def test_consecutive_digests_neither_lose_nor_repeat_a_story(store) -> None:
    first_batch = {add(store, DAY1 + timedelta(hours=h)) for h in (1, 5, 20)}
    late = add(store, DAY1 + timedelta(hours=23), published=DAY1 - timedelta(days=9))  # arrived late
    first = build_digest(store, SID, DAY1 + timedelta(days=1))
    assert {s.story_id for s in first.stories} == first_batch | {late}
    send_digest(store, _Printer(), SID, DAY1 + timedelta(days=1))
    # a second copy of an already-digested story, and new stories after the cut
    add(store, DAY1 + timedelta(days=1, hours=2), story=late, source="T")
    second_batch = {add(store, DAY1 + timedelta(days=1, hours=h)) for h in (1, 3)}
    second = build_digest(store, SID, DAY1 + timedelta(days=2))
    assert {s.story_id for s in second.stories} == second_batch
    assert second.since == DAY1 + timedelta(days=1)


def test_stories_are_grouped_by_watchlist_and_ranked_by_sources(store) -> None:
    big = add(store, DAY1 + timedelta(hours=2))
    add(store, DAY1 + timedelta(hours=3), story=big, source="T")
    small = add(store, DAY1 + timedelta(hours=4))
    fake = add(store, DAY1 + timedelta(hours=5), watchlist="deepfakes")
    digest = build_digest(store, SID, DAY1 + timedelta(days=1))
    assert [(s.story_id, s.watchlist, s.sources) for s in digest.stories] == [
        (big, "csam", 2),
        (fake, "deepfakes", 1),
        (small, "csam", 1),
    ]
    text = json.dumps([m.blocks for m in render_digest(digest)], ensure_ascii=False)
    assert text.index("csam · 2 stories") < text.index("deepfakes · 1 story")


def test_a_digest_missed_while_down_is_sent_once_on_start(store) -> None:
    add(store, DAY1 + timedelta(hours=1))
    down_until = DAY1 + timedelta(hours=3)  # 09:00 passed while down
    assert missed_digests(store, down_until, timedelta(hours=12)) == [SID]
    send_digest(store, _Printer(), SID, down_until)
    assert missed_digests(store, down_until + timedelta(minutes=5), timedelta(hours=12)) == []


def test_a_digest_missed_beyond_the_grace_period_waits_for_the_next_but_loses_nothing(store) -> None:
    story = add(store, DAY1 + timedelta(hours=1))
    much_later = DAY1 + timedelta(days=1, hours=-1)  # 07:00 next day: 09:00 yesterday is 22 h ago
    assert missed_digests(store, much_later, timedelta(hours=12)) == []
    assert [s.story_id for s in build_digest(store, SID, much_later).stories] == [story]


def test_two_hundred_stories_split_within_slack_limits() -> None:
    stories = tuple(
        DigestStory(
            n,
            f"Story {n} " + "with a long headline about CSAM & <deepfakes> " * 3,
            f"https://n.example/{n}",
            n % 7 + 1,
            DAY1,
            "csam" if n % 2 else "deepfakes",
            "A lead sentence about it. " * 10,
        )
        for n in range(200)
    )
    digest = Digest(SID, "C1", ("csam", "deepfakes"), DAY1, DAY1 + timedelta(days=1), stories, top=200)
    messages = render_digest(digest)
    assert len(messages) >= 1
    shown = 0
    for message in messages:
        assert 1 <= len(message.blocks) <= MAX_BLOCKS
        for block in Block.parse_all(message.blocks):
            block.validate_json()  # slack_sdk's own Block Kit limits
        for block in message.blocks:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= BLOCK_TEXT_LIMIT
                shown += block["text"]["text"].count("\n• ") + block["text"]["text"].startswith("• ")
        assert "<deepfakes>" not in json.dumps(message.blocks)
    assert shown == 200


def test_more_than_top_stories_end_with_a_search_hint() -> None:
    stories = tuple(DigestStory(n, f"S{n}", "", 1, DAY1, "csam", "") for n in range(20))
    (message,) = render_digest(Digest(SID, "C1", ("csam",), DAY1, DAY1 + timedelta(days=1), stories, top=15))
    assert "and 5 more — `/newsalert search watchlist:csam since:1d`" in json.dumps(
        message.blocks, ensure_ascii=False
    )


def test_an_empty_period_says_so_unless_skip_empty(store) -> None:
    printer = _Printer()
    send_digest(store, printer, SID, DAY1 + timedelta(days=1))
    assert printer.messages and "No new stories for csam, deepfakes since" in printer.messages[0].text
    quiet = Subscription("C2", ("csam",), "digest", "daily 09:00", "UTC", skip_empty=True)
    store.catalog.sync_config(
        [], [Watchlist("csam", "CSAM"), Watchlist("deepfakes", "deepfake")], [SUB, quiet], DAY1
    )
    printer = _Printer()
    send_digest(store, printer, subscription_id(quiet), DAY1 + timedelta(days=1))
    assert printer.messages == []


def test_digests_reach_the_fake_slack_and_an_interrupted_one_is_finished_not_repeated(
    store, slack: FakeSlack
) -> None:
    add(store, DAY1 + timedelta(hours=1))
    sink = SlackSink(VALID_TOKEN, slack.url, timeout=5)
    now = datetime.now(UTC)
    # A previous attempt recorded its window and posted, then died before marking it sent.
    digest_id = store.digests.begin_digest(SID, DAY1, now, now)
    (message,) = render_digest(build_digest(store, SID, now))
    sink.post_message(
        "C1", message, "newsalert_digest", {"digest_id": digest_id, "subscription": SID, "part": 0}
    )
    send_digest(store, sink, SID, now + timedelta(minutes=1))
    assert len(slack.top_level("C1")) == 1  # adopted, not posted again
    send_digest(store, sink, SID, now + timedelta(days=1))
    assert len(slack.top_level("C1")) == 2
    assert "No new stories" in slack.top_level("C1")[-1]["text"]


class _Printer:
    """A sink that keeps what it was given."""

    paced = False

    def __init__(self) -> None:
        self.messages: list = []

    def post_message(self, channel, message, event_type, payload, *, thread_ts=None) -> str:
        self.messages.append(message)
        return "printed"

    def find_message(self, channel, since, event_type, payload, *, thread_ts=None):
        return None


# --- config and CLI -----------------------------------------------------------------------------

CONFIG = """
[defaults]
timezone = "Europe/Berlin"

[watchlists.csam]
query = 'CSAM'

[[subscriptions]]
channel = "C0000000001"
watchlists = ["csam"]
mode = "digest"
schedule = "weekdays 09:00"

[[subscriptions]]
channel = "C0000000002"
watchlists = ["csam"]
"""


def test_config_reads_digest_subscriptions_with_the_default_timezone(tmp_path: Path) -> None:
    (tmp_path / "n.toml").write_text(CONFIG)
    settings = load_settings(tmp_path / "n.toml", environ={})
    digest, realtime = settings.subscriptions
    assert (digest.mode, digest.schedule, digest.timezone) == ("digest", "weekdays 09:00", "Europe/Berlin")
    assert realtime.mode == "realtime"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ('schedule = "weekdays 09:00"', "is required"),
        ('schedule = "weekdays 9am"', "bad time"),
        ('schedule = "weekdays 09:00"\ntimezone = "Berlin"', "unknown timezone"),
    ],
)
def test_config_digest_errors_name_the_line(tmp_path: Path, change: str, problem: str) -> None:
    text = CONFIG.replace('schedule = "weekdays 09:00"', "" if problem == "is required" else change)
    (tmp_path / "n.toml").write_text(text)
    with pytest.raises(ConfigError, match=problem) as info:
        load_settings(tmp_path / "n.toml", environ={})
    assert info.value.line is not None


def test_newsalert_subscriptions_lists_ids_and_next_digest(tmp_path: Path, capsys) -> None:
    from bot.cli import main

    (tmp_path / "n.toml").write_text(CONFIG)
    with time_machine.travel(datetime(2026, 2, 6, 12, 0, tzinfo=UTC), tick=False):  # a Friday
        assert (
            main(["--config", str(tmp_path / "n.toml"), "--db", str(tmp_path / "n.db"), "subscriptions"]) == 0
        )
    out = capsys.readouterr().out
    digest_line = next(line for line in out.splitlines() if "C0000000001" in line)
    assert "weekdays 09:00" in digest_line and "Europe/Berlin" in digest_line
    assert "2026-02-09 08:00 UTC" in digest_line  # Monday 09:00 in Berlin
    assert "realtime" in next(line for line in out.splitlines() if "C0000000002" in line)


def test_the_scheduler_keeps_one_cron_job_per_digest_subscription() -> None:
    from bot.scheduler import Scheduler

    subs = [("abc12345", Subscription("C1", ("csam",), "digest", "weekdays 08:30", "America/New_York"))]
    scheduler = Scheduler(list, lambda sources: None, lambda: None, lambda: list(subs), lambda sid: None)
    scheduler.sync()
    (job,) = [j for j in scheduler.aps.get_jobs() if j.id.startswith("digest-")]
    assert job.id == "digest-abc12345" and str(job.trigger.timezone) == "America/New_York"
    assert "mon-fri" in str(job.trigger)
    subs.clear()
    scheduler.sync()
    assert not [j for j in scheduler.aps.get_jobs() if j.id.startswith("digest-")]


def test_a_heading_is_never_cut_from_its_stories_and_counts_are_singular_when_one() -> None:
    from tests.slack_limits import message_problems

    one = render_digest(
        Digest(SID, "C1", ("csam",), DAY1, DAY1, (DigestStory(1, "S", "", 1, DAY1, "csam", ""),))
    )
    assert "1 new story since" in one[0].text and "1 source" in json.dumps(one[0].blocks)
    # 30 watchlists of 2 long stories each: 91 blocks, more than one message holds.
    names = tuple(f"w{i:02d}" for i in range(30))
    stories = tuple(
        DigestStory(
            n, "T" * 190 + str(n), "https://n.example/" + "a" * 200, 2, DAY1, names[n // 2], "Lead. " * 40
        )
        for n in range(60)
    )
    parts = render_digest(Digest(SID, "C1", names, DAY1, DAY1 + timedelta(days=1), stories, top=200))
    assert len(parts) >= 2
    for part in parts:
        assert message_problems({"text": part.text, "blocks": part.blocks}) == []
        assert part.blocks[-1]["type"] != "header"  # no heading left at the bottom, its stories in the next
