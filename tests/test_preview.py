"""`newsalert render --sample`: the HTML preview draws every block type the bot sends, and stays
as safe as the messages (feed text is escaped, never markup)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from bot.alerts.render import render_slack
from bot.app.preview import BLOCK_TYPES, message, mrkdwn, sample_alert, sample_page
from tests.conftest import run_newsalert


def test_the_sample_page_renders_every_block_type_the_bot_uses() -> None:
    page = sample_page()
    drawn = set(re.findall(r'data-type="([a-z]+)"', page))
    assert drawn == set(BLOCK_TYPES)  # and no "unknown": nothing the bot sends is left undrawn
    for part in ("Claim", "Unclaim", "Escalate…", "Mute source…", "Latest alerts", "Severity", "7 days"):
        assert part in page, part
    assert '<span class="button primary">Claim</span>' in page
    assert "<b>child sexual abuse material</b>" in page  # the matched words, bold
    assert "AI-generated <b>child sexual abuse material</b></a>" in page  # in the link label too
    assert '<a href="https://reuters.example/world/unicef-ai-abuse">' in page


def test_mrkdwn_becomes_html_without_letting_feed_text_in_as_markup() -> None:
    hostile = replace(sample_alert(), title='<script>alert(1)</script> "quoted" & <!channel>')
    html = message(render_slack(hostile, actions=True).blocks)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp;" in html
    assert mrkdwn(
        "*bold* _it_ `code` <#C1|alerts> <@U1> <!date^1770314400^{date_short_pretty}|2026-02-05>"
    ) == (
        '<b>bold</b> <i>it</i> <code>code</code> <span class="mention">#alerts</span> '
        '<span class="mention">@U1</span> <time>2026-02-05</time>'
    )
    assert 'href="https://x.example/?a=1&amp;b=%22"' in mrkdwn("<https://x.example/?a=1&amp;b=%22|x>")


def test_render_sample_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "preview.html"
    result = run_newsalert("render", "--sample", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("<!doctype html>") and str(out) in result.stdout
