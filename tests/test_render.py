"""Rendering an alert for Slack and the console: escaping, links, emphasis and Slack's size limits."""

from __future__ import annotations

import json

from bot.alerts.render import emphasize, escape, render_console, render_slack
from bot.model import Summary
from tests.conftest import alert


def test_escape_only_the_three_control_characters() -> None:
    assert escape("<!channel> & <@U1> *bold*") == "&lt;!channel&gt; &amp; &lt;@U1&gt; *bold*"


def test_emphasize_bolds_spans_and_escapes_around_them() -> None:
    assert emphasize("a <b> CSAM & c", [(6, 10)]) == "a &lt;b&gt; *CSAM* &amp; c"


def test_slack_message_has_linked_title_context_and_summary() -> None:
    message = render_slack(alert())
    heading, context, summary = (json.dumps(b) for b in message.blocks)
    assert "<https://news.example/story?a=1&amp;b=2|UNICEF calls for action on AI-generated CSAM>" in heading
    assert "APP" in context and "2026-02-05 17:12 UTC" in context and "`csam`, `unicef`" in context
    assert "*UNICEF* said *CSAM* is rising." in summary
    assert message.text == "UNICEF calls for action on AI-generated CSAM — APP · csam, unicef"
    assert "<!date^1770311520^{date_short_pretty} {time}|2026-02-05 17:12 UTC>" in context


def test_matched_line_and_title_bold_come_from_this_channels_spans() -> None:
    message = render_slack(
        alert(title_bold=((40, 44),), matched=(("CSAM", "title, summary"), ("nudify app", "summary")))
    )
    wire = json.dumps(message.blocks)
    assert "AI-generated *CSAM*>" in wire
    assert "Matched: *CSAM* (title, summary), *nudify app* (summary)" in wire


def test_names_and_people_are_capped() -> None:
    from bot.alerts.render import MessageState

    reporters = tuple(f"Outlet {i}" for i in range(13))
    clickers = tuple(f"U{i:05d}" for i in range(260))
    message = render_slack(
        alert(watchlists=tuple(f"w{i:02d}" for i in range(30)), reporters=reporters),
        MessageState(not_relevant_by=clickers),
    )
    wire = json.dumps(message.blocks)
    assert "`w00`, `w01`, `w02`, +27" in wire
    assert "*13 sources*: Outlet 0, Outlet 1, Outlet 2, Outlet 3, +9" in wire
    assert "Not relevant: 260 people" in wire and "U00001" not in wire
    assert message.text.startswith("UNICEF calls") and message.text.endswith("w00, w01, w02, +27")


def test_hostile_strings_cannot_ping_or_break_the_link() -> None:
    message = render_slack(
        alert(
            title="<!channel> pwned <https://evil.example|click>",
            source="<!here>",
            outlet="<@U123>",
            url="https://news.example/a>b|c",
            summary=Summary("<!everyone> & more"),
        )
    )
    wire = json.dumps(message.blocks) + message.text
    for bad in ("<!channel>", "<!here>", "<@U123>", "<!everyone>", "<https://evil.example"):
        assert bad not in wire
    assert "<https://news.example/a&gt;b%7Cc|" in wire


def test_headline_only_items_say_so() -> None:
    message = render_slack(alert(summary=Summary(""), headline_only=True, outlet="BBC", source="Google News"))
    assert "Headline only" in json.dumps(message.blocks)
    assert "BBC (via Google News)" in message.text


def test_long_titles_are_shortened() -> None:
    message = render_slack(alert(title="x" * 1000))
    assert len(message.text) < 400


def test_console_rendering_is_plain_text() -> None:
    text = render_console(alert())
    assert text.splitlines()[0] == "● [csam, unicef] UNICEF calls for action on AI-generated CSAM"
    assert "https://news.example/story?a=1&b=2" in text
    assert "*" not in text


def test_fit_never_cuts_inside_an_entity_or_a_link() -> None:
    from bot.alerts.render import fit

    assert fit("a" * 10 + "&amp;", 12) == "a" * 10 + "…"
    assert fit("see <https://x.example/a|the title> now", 20) == "see…"
    assert fit("short", 10) == "short"


def test_alert_blocks_stay_within_slack_limits_after_escaping() -> None:
    from slack_sdk.models.blocks import Block

    from bot.alerts.render import BLOCK_TEXT_LIMIT

    hostile = "<&>" * 2000  # every character triples when escaped
    message = render_slack(
        alert(
            title=hostile,
            url="https://n.example/" + "a" * 2900,
            source=hostile,
            outlet=hostile,
            summary=Summary(hostile[:400], ((0, 3),)),
            watchlists=("csam",) * 40,
        )
    )
    for block in Block.parse_all(message.blocks):
        block.validate_json()  # slack_sdk's own Block Kit limits
    for block in message.blocks:
        texts = (
            [block["text"]["text"]] if block["type"] == "section" else [e["text"] for e in block["elements"]]
        )
        for text in texts:
            assert len(text) <= BLOCK_TEXT_LIMIT
            assert "<&>" not in text and "&am…" not in text
