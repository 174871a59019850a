"""The alert summary: the lead, then the sentences that matched, bold on the matched words, cut to fit."""

from __future__ import annotations

import re

import pytest

from bot.alerts.summarize import split_sentences, summarize
from bot.model import Span, Summary

# The real lead of an APP story, with the double space after "UNICEF," that the feed carried.
UNICEF = (
    "UNITED NATIONS, Feb 05 (APP): The United Nations children’s agency, UNICEF,  has issued an urgent "
    "call for governments to criminalize AI-generated child sexual abuse material, citing alarming "
    "evidence that at least 1.2 million children worldwide had their images manipulated into sexually "
    "explicit deep-fakes in the past year. “The harm from deep-fake abuse is real and urgent,” the UN "
    "agency said in a statement. “Children cannot wait for the law to catch up.”"
)
UNICEF_LEAD = UNICEF[: UNICEF.index("past year.") + len("past year.")]
UNICEF_HARM = "“The harm from deep-fake abuse is real and urgent,” the UN agency said in a statement."
UNICEF_WAIT = "“Children cannot wait for the law to catch up.”"


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


def spans_for(text: str, *words: str, field: str = "text") -> list[Span]:
    """A span for every occurrence of each word, the way the matcher reports them."""
    return [
        Span(field, m.start(), m.end(), word.lower())
        for word in words
        for m in re.finditer(re.escape(word), text)
    ]


def bold_texts(summary: Summary) -> list[str]:
    return [summary.text[start:end] for start, end in summary.bold]


def article(n: int = 24, padding: str = "") -> tuple[str, list[str]]:
    """A plain article of ``n`` distinct sentences, none a substring of another."""
    parts = [
        f"Paragraph {i:02d} reports that the review board examined case file {i:02d}{padding} in detail."
        for i in range(n)
    ]
    return " ".join(parts), parts


# --- split_sentences ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(UNICEF, [UNICEF_LEAD, UNICEF_HARM, UNICEF_WAIT], id="unicef-dateline-and-quotes"),
        pytest.param(
            "At least 1.2 million children were affected. The study covered 11 countries.",
            ["At least 1.2 million children were affected.", "The study covered 11 countries."],
            id="decimal",
        ),
        pytest.param(
            "U.S. officials met U.N. envoys on Tuesday. They agreed on a text.",
            ["U.S. officials met U.N. envoys on Tuesday.", "They agreed on a text."],
            id="initialisms",
        ),
        pytest.param(
            "Dr. Jane Smith and Mr. Lee testified. Both backed the bill.",
            ["Dr. Jane Smith and Mr. Lee testified.", "Both backed the bill."],
            id="titles",
        ),
        pytest.param(
            "The rule takes effect Feb. 5 under Resolution No. 5 of the council. It passed unanimously.",
            ["The rule takes effect Feb. 5 under Resolution No. 5 of the council.", "It passed unanimously."],
            id="month-and-number",
        ),
        pytest.param(
            "Apps, e.g. Telegram, were named. Others were not.",
            ["Apps, e.g. Telegram, were named.", "Others were not."],
            id="eg",
        ),
        pytest.param(
            "The programme runs in the U.S. The U.N. backs it.",
            ["The programme runs in the U.S.", "The U.N. backs it."],
            id="initialism-ends-sentence",
        ),
        pytest.param(
            "The answer was no. The vote failed.",
            ["The answer was no.", "The vote failed."],
            id="no-as-a-word",
        ),
        pytest.param(
            "“Children cannot wait.” The agency said so.",
            ["“Children cannot wait.”", "The agency said so."],
            id="quote-is-the-sentence",
        ),
        pytest.param(
            "“Is it real?” the reporter asked. Nobody answered.",
            ["“Is it real?” the reporter asked.", "Nobody answered."],
            id="question-in-quote-continues",
        ),
        pytest.param(
            "The report was delayed… Officials blamed funding. Work continues...",
            ["The report was delayed…", "Officials blamed funding.", "Work continues..."],
            id="ellipsis-ends",
        ),
        pytest.param(
            "He paused… then went on. Done.",
            ["He paused… then went on.", "Done."],
            id="ellipsis-mid-sentence",
        ),
        pytest.param(
            "Who is responsible? Nobody knows! Act now.",
            ["Who is responsible?", "Nobody knows!", "Act now."],
            id="question-and-exclamation",
        ),
        pytest.param(
            "breaking deepfake ring dismantled in europe",
            ["breaking deepfake ring dismantled in europe"],
            id="no-punctuation",
        ),
        pytest.param(
            "Key findings\n\nAt least 1.2 million children were affected.",
            ["Key findings", "At least 1.2 million children were affected."],
            id="paragraph-without-punctuation",
        ),
        pytest.param(
            "WASHINGTON, Feb. 5 (Reuters) - The U.S. Senate passed the bill. It goes to the House.",
            ["WASHINGTON, Feb. 5 (Reuters) - The U.S. Senate passed the bill.", "It goes to the House."],
            id="dateline-with-abbreviations",
        ),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_split_sentences_offsets_are_trimmed() -> None:
    text = "  First one.   Second one?\n  "
    assert split_sentences(text) == [(2, 12), (15, 26)]
    assert [text[s:e] for s, e in split_sentences(text)] == ["First one.", "Second one?"]


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_split_sentences_of_nothing(text: str) -> None:
    assert split_sentences(text) == []


# --- summarize ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "  \n "])
def test_empty_text(text: str) -> None:
    assert summarize(text, [Span("text", 0, 0, "x")]) == Summary("")


# Sentences of about 150 characters, so that three of them no longer fit in 400.
PADDING = " while advocates, lawyers and platform engineers waited outside the chamber for its ruling"


@pytest.mark.parametrize("every_sentence_matches", [False, True])
def test_long_article_stays_within_limits(every_sentence_matches: bool) -> None:
    text, parts = article(14, PADDING)
    assert len(text) >= 2000
    spans = spans_for(text, "review board", "case file") if every_sentence_matches else []

    summary = summarize(text, spans)

    assert len(summary.text) <= 400
    shown = [p for p in parts if p in summary.text]
    assert 1 <= len(shown) <= 3
    # Nothing but whole sentences and separators.
    rest = summary.text
    for p in shown:
        rest = rest.replace(p, "")
    assert set(rest) <= {" ", "…"}
    if every_sentence_matches:
        assert summary.text == f"{parts[0]} {parts[1]}"


def test_max_sentences_caps_even_with_room_to_spare() -> None:
    text, parts = article(28)
    summary = summarize(text, spans_for(text, "case file"), limit=10_000)
    assert summary.text == " ".join(parts[:3])


@pytest.mark.parametrize(
    "spans_at",
    [
        pytest.param([], id="no-match"),
        pytest.param([0], id="match-in-lead"),
        pytest.param([20], id="match-deep"),
        pytest.param([3, 20, 9], id="several"),
    ],
)
def test_lead_is_always_first(spans_at: list[int]) -> None:
    text, parts = article(24)
    spans = [s for i in spans_at for s in spans_for(text, f"case file {i:02d}")]

    summary = summarize(text, spans)

    assert summary.text.startswith(parts[0])


def test_deep_match_pulls_its_sentence_in() -> None:
    text, parts = article(24)
    spans = spans_for(text, "case file 17")

    summary = summarize(text, spans)

    assert summary.text == f"{parts[0]} … {parts[17]}"
    assert bold_texts(summary) == ["case file 17"]


def test_adjacent_sentences_join_with_a_space() -> None:
    text, parts = article(6)
    summary = summarize(text, spans_for(text, "case file 01", "case file 03"))
    assert summary.text == f"{parts[0]} {parts[1]} … {parts[3]}"


def test_matched_sentences_keep_article_order() -> None:
    text, parts = article(12)
    summary = summarize(text, spans_for(text, "case file 09", "case file 04"))
    assert summary.text == f"{parts[0]} … {parts[4]} … {parts[9]}"


def test_sentences_with_more_distinct_terms_win_when_room_is_short() -> None:
    text, parts = article(12)
    spans = spans_for(text, "case file 03", "case file 08", "Paragraph 08")
    # Room for one sentence besides the lead: 08 carries two distinct terms, 03 only one.
    assert summarize(text, spans, max_sentences=2).text == f"{parts[0]} … {parts[8]}"
    assert summarize(text, spans, max_sentences=3).text == f"{parts[0]} … {parts[3]} … {parts[8]}"


def test_repeated_term_counts_once() -> None:
    text = "Lead sentence here. Abuse and abuse and abuse again. Abuse of deepfakes. Tail."
    spans = spans_for(text, "Abuse", "abuse", "deepfakes")
    summary = summarize(text, spans, max_sentences=2)
    assert summary.text == "Lead sentence here. … Abuse of deepfakes."


def test_a_sentence_that_does_not_fit_is_skipped_for_one_that_does() -> None:
    lead = "Lead sentence of the story."
    long = "This sentence names grooming and sextortion " + "and goes on " * 30 + "forever."
    short = "A short one names grooming."
    text = f"{lead} Filler here. {long} More filler. {short}"
    summary = summarize(text, spans_for(text, "grooming", "sextortion"), limit=120)
    assert summary.text == f"{lead} … {short}"
    assert bold_texts(summary) == ["grooming"]


def test_max_sentences_one_gives_the_lead() -> None:
    text, parts = article(6)
    assert summarize(text, spans_for(text, "case file 03"), max_sentences=1) == Summary(parts[0])


def test_bold_points_at_the_matched_words_in_unicef_story() -> None:
    terms = ["AI-generated child sexual abuse material", "deep-fake", "UNICEF", "Children"]
    spans = spans_for(UNICEF, *terms)

    summary = summarize(UNICEF, spans, limit=600)

    # 326 + 86 + 47 characters: all three fit in 600, adjacent, whitespace squeezed.
    assert summary.text == " ".join([UNICEF_LEAD.replace(",  has", ", has"), UNICEF_HARM, UNICEF_WAIT])
    matched = {UNICEF[s.start : s.end] for s in spans}
    assert bold_texts(summary) == [
        "UNICEF",
        "AI-generated child sexual abuse material",
        "deep-fake",
        "deep-fake",
        "Children",
    ]
    assert set(bold_texts(summary)) == matched


def test_unicef_story_at_default_limit() -> None:
    lead = UNICEF_LEAD.replace(",  has", ", has")

    only_in_lead_and_harm = summarize(UNICEF, spans_for(UNICEF, "deep-fake"))
    # Lead + the "harm" sentence would be 413 characters: it does not fit and is not cut.
    assert only_in_lead_and_harm.text == lead
    assert bold_texts(only_in_lead_and_harm) == ["deep-fake"]

    with_last = summarize(UNICEF, spans_for(UNICEF, "deep-fake", "Children cannot wait"))
    # The shorter last sentence still fits after the lead, past the one that did not.
    assert with_last.text == f"{lead} … {UNICEF_WAIT}"
    assert len(with_last.text) <= 400
    assert bold_texts(with_last) == ["deep-fake", "Children cannot wait"]


def test_bold_ranges_are_sorted_and_merged() -> None:
    text = "Lead. Platforms host child sexual abuse material today."
    spans = [
        *spans_for(text, "abuse material"),
        *spans_for(text, "child sexual abuse"),
        *spans_for(text, "sexual"),
        *spans_for(text, "today"),
        *spans_for(text, "Platforms"),
    ]
    summary = summarize(text, spans)
    assert bold_texts(summary) == ["Platforms", "child sexual abuse material", "today"]
    starts = [s for s, _ in summary.bold]
    assert starts == sorted(starts)
    assert all(a[1] < b[0] for a, b in zip(summary.bold, summary.bold[1:], strict=False))


def test_touching_ranges_merge() -> None:
    text = "Lead. Deepfake abuse."
    summary = summarize(text, [Span("text", 6, 14, "deepfake"), Span("text", 14, 20, " abuse")])
    assert bold_texts(summary) == ["Deepfake abuse"]


def test_title_spans_are_ignored() -> None:
    text, parts = article(12)
    at = text.index("case file 07")
    summary = summarize(text, [Span("title", at, at + 12, "case file")])
    assert summary == Summary(parts[0])


def test_out_of_range_spans_are_clipped_or_ignored() -> None:
    text = "Lead about grooming."
    spans = [Span("text", 11, 999, "grooming"), Span("text", 500, 510, "x"), Span("text", 5, 5, "empty")]
    summary = summarize(text, spans)
    assert summary.text == text
    assert bold_texts(summary) == ["grooming."]


def test_whitespace_is_squeezed_and_bold_stays_on_target() -> None:
    text = "The agency, UNICEF,\u00a0 has  warned\nabout deepfakes. Next."
    summary = summarize(text, spans_for(text, "deepfakes", "warned"))
    assert summary.text == "The agency, UNICEF, has warned about deepfakes."
    assert bold_texts(summary) == ["warned", "deepfakes"]


@pytest.mark.parametrize("limit", [40, 100, 200, 324])
def test_long_lead_is_cut_at_a_word_boundary(limit: int) -> None:
    lead = UNICEF_LEAD.replace(",  has", ", has")

    summary = summarize(UNICEF, [], limit=limit)

    assert len(summary.text) <= limit
    assert summary.text.endswith("…")
    body = summary.text[:-1]
    assert lead.startswith(body)
    assert lead[len(body)] in " ,"  # the cut falls between words
    assert not body.endswith((" ", ","))
    assert len(body) > limit - 25  # and not needlessly early


def test_truncation_keeps_bold_before_the_cut_and_drops_it_after() -> None:
    spans = spans_for(UNICEF, "UNICEF", "deep-fake", "criminalize")
    summary = summarize(UNICEF, spans, limit=150)
    assert summary.text.endswith("…")
    assert "criminalize" in summary.text
    assert bold_texts(summary) == ["UNICEF", "criminalize"]
    assert all(end <= len(summary.text) - 1 for _, end in summary.bold)


def test_truncation_clips_a_term_cut_in_two() -> None:
    text = "Officials warned about child sexual abuse material spreading online."
    spans = spans_for(text, "child sexual abuse material")
    summary = summarize(text, spans, limit=40)
    assert summary.text == "Officials warned about child sexual…"
    assert bold_texts(summary) == ["child sexual"]


def test_one_giant_word_is_cut_hard() -> None:
    text = "x" * 500
    summary = summarize(text, [], limit=50)
    assert summary.text == "x" * 49 + "…"


@pytest.mark.parametrize(("limit", "max_sentences"), [(0, 3), (400, 0)])
def test_nonsense_limits_are_refused(limit: int, max_sentences: int) -> None:
    with pytest.raises(ValueError):
        summarize("Some text.", [], limit=limit, max_sentences=max_sentences)
