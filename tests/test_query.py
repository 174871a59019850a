"""Tests for the watchlist query language (bot/query.py).

The bulk of the matching rules live in tests/data/matching_cases.toml, one case per trap; this file adds
span offsets, syntax trees, error messages and the Matcher.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.errors import QueryError
from bot.model import Span
from bot.query import And, Matcher, Not, Or, Phrase, Query, Term, compile_query

CASES_FILE = Path(__file__).parent / "data" / "matching_cases.toml"
CASE_KEYS = {"query", "title", "text", "expected", "note"}


def load_cases() -> list[dict[str, Any]]:
    with CASES_FILE.open("rb") as f:
        return tomllib.load(f)["case"]


CASES = load_cases()


def case_id(index: int, case: dict[str, Any]) -> str:
    return f"{index:03d}-{case.get('note') or case['query']}"


def span_texts(spans: list[Span], title: str, text: str) -> list[tuple[str, str, str]]:
    """(field, matched original text, term) for each span: what a reader would see highlighted."""
    fields = {"title": title, "text": text}
    return [(span.field, fields[span.field][span.start : span.end], span.term) for span in spans]


# --- the case table ------------------------------------------------------------------------------------


def test_case_file_is_well_formed() -> None:
    assert len(CASES) >= 80
    for index, case in enumerate(CASES):
        assert set(case) <= CASE_KEYS, f"case {index}: unknown keys {set(case) - CASE_KEYS}"
        assert isinstance(case["query"], str), f"case {index}"
        assert isinstance(case["text"], str), f"case {index}"
        assert isinstance(case.get("title", ""), str), f"case {index}"
        assert isinstance(case["expected"], bool), f"case {index}"
    # Both outcomes must be exercised, or a matcher that always says yes (or no) would pass half the table.
    assert {case["expected"] for case in CASES} == {True, False}


@pytest.mark.parametrize("case", CASES, ids=[case_id(i, c) for i, c in enumerate(CASES)])
def test_matching_case(case: dict[str, Any]) -> None:
    title = case.get("title", "")
    spans = compile_query(case["query"]).match(title, case["text"])
    assert (spans is not None) == case["expected"], (
        f"query {case['query']!r} on title {title!r} / text {case['text']!r}: "
        f"expected {'a match' if case['expected'] else 'no match'}, got {spans!r}"
    )
    for span in spans or []:
        assert span.field in ("title", "text")
        length = len(title) if span.field == "title" else len(case["text"])
        assert 0 <= span.start < span.end <= length


# --- spans ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "title", "text", "expected"),
    [
        pytest.param(
            "unicef",
            "UNICEF warns",
            "The UN agency, UNICEF\u2019s staff said",
            [("title", "UNICEF", "unicef"), ("text", "UNICEF\u2019s", "unicef")],
            id="title-and-text-possessive",
        ),
        pytest.param(
            "deep-fake*",
            "",
            "deep-fakes, deep\u2011fake and deepfakery",
            [
                ("text", "deep-fakes", "deep-fake*"),
                ("text", "deep\u2011fake", "deep-fake*"),
                ("text", "deepfakery", "deep-fake*"),
            ],
            id="hyphen-variants",
        ),
        pytest.param(
            '"AI-generated child abuse"',
            "",
            "to criminalize AI\u2011generated\u00a0child abuse material",
            [("text", "AI\u2011generated\u00a0child abuse", "AI-generated child abuse")],
            id="phrase-with-nbsp",
        ),
        pytest.param(
            "explotacion",
            "",
            "caf\u00e9 y explotacio\u0301n infantil",
            [("text", "explotacio\u0301n", "explotacion")],
            id="combining-mark-kept-in-span",
        ),
        pytest.param(
            "cafe",
            "",
            "un cafe\u0301 noir",
            [("text", "cafe\u0301", "cafe")],
            id="trailing-combining-mark-kept-in-span",
        ),
        pytest.param(
            "cafe",
            "",
            "du cafe\u0301",
            [("text", "cafe\u0301", "cafe")],
            id="trailing-combining-mark-at-end-of-string",
        ),
        pytest.param(
            "infantil",
            "",
            "explotacio\u0301n de\u0301 infantil",
            [("text", "infantil", "infantil")],
            id="offsets-after-dropped-combining-marks",
        ),
        pytest.param(
            "csam",
            "",
            "see https://example.org/csam and \U0001f6a8CSAM",
            [("text", "CSAM", "csam")],
            id="after-url-and-emoji",
        ),
        pytest.param(
            "agency",
            "",
            "UN agencies and one agency\u2019s staff",
            [("text", "agencies", "agency"), ("text", "agency\u2019s", "agency")],
            id="plural-and-possessive",
        ),
        pytest.param(
            "unicef",
            "",
            "\uff35\uff2e\uff29\uff23\uff25\uff26 report",
            [("text", "\uff35\uff2e\uff29\uff23\uff25\uff26", "unicef")],
            id="fullwidth",
        ),
        pytest.param(
            "deepfake",
            "",
            "x deep\u00adfakes y",
            [("text", "deep\u00adfakes", "deepfake")],
            id="soft-hyphen",
        ),
    ],
)
def test_span_offsets_index_the_original_strings(
    query: str, title: str, text: str, expected: list[tuple[str, str, str]]
) -> None:
    spans = compile_query(query).match(title, text)
    assert spans is not None
    assert span_texts(spans, title, text) == expected


def test_spans_cover_every_positive_term() -> None:
    title, text = "UNICEF and CSAM", "a report about csam and deepfakes"
    spans = compile_query("(unicef OR deepfake) csam -satire*").match(title, text)
    assert spans is not None
    assert span_texts(spans, title, text) == [
        ("title", "UNICEF", "unicef"),
        ("title", "CSAM", "csam"),
        ("text", "csam", "csam"),
        ("text", "deepfakes", "deepfake"),
    ]


def test_negated_terms_give_no_spans() -> None:
    text = "a satire about csam"
    spans = compile_query("csam OR -satire OR NOT (unicef OR satire)").match("", text)
    assert spans is not None
    assert span_texts(spans, "", text) == [("text", "csam", "csam")]


def test_spans_include_terms_from_or_branches_that_did_not_decide_the_match() -> None:
    text = "unicef on csam"
    spans = compile_query("(unicef AND deepfake) OR csam").match("", text)
    assert spans is not None
    assert span_texts(spans, "", text) == [("text", "unicef", "unicef"), ("text", "csam", "csam")]


def test_double_negation_is_positive() -> None:
    spans = compile_query("NOT NOT csam").match("", "CSAM")
    assert spans == [Span("text", 0, 4, "csam")]


def test_not_only_query_matches_with_no_spans() -> None:
    assert compile_query("NOT csam").match("weather", "sunny") == []


def test_same_range_from_two_terms_is_reported_once() -> None:
    spans = compile_query("deepfake OR deep-fake*").match("", "deepfakes")
    assert spans == [Span("text", 0, 9, "deepfake")]


def test_repeated_term_is_reported_once_per_occurrence() -> None:
    spans = compile_query("csam csam").match("", "csam csam")
    assert spans == [Span("text", 0, 4, "csam"), Span("text", 5, 9, "csam")]


def test_non_matching_query_returns_none_not_empty_list() -> None:
    assert compile_query("csam").match("title", "text") is None


# --- syntax trees --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("a OR b AND c", Or((Term("a", 0), And((Term("b", 5), Term("c", 11)))))),
        ("a AND b OR c", Or((And((Term("a", 0), Term("b", 6))), Term("c", 11)))),
        ("NOT a AND b", And((Not(Term("a", 4)), Term("b", 10)))),
        ("NOT a OR b", Or((Not(Term("a", 4)), Term("b", 9)))),
        ("a b", And((Term("a", 0), Term("b", 2)))),
        ("a -b", And((Term("a", 0), Not(Term("b", 3))))),
        ("a or b", And((Term("a", 0), Term("or", 2), Term("b", 5)))),
        ("(a OR b) c", And((Or((Term("a", 1), Term("b", 6))), Term("c", 9)))),
        ('"child  abuse" x', And((Phrase(("child", "abuse"), 0), Term("x", 15)))),
        ("-(a OR b)", Not(Or((Term("a", 2), Term("b", 7))))),
        ("deep-fake", Term("deep-fake", 0)),
    ],
)
def test_syntax_tree(query: str, tree: object) -> None:
    compiled = compile_query(query)
    assert isinstance(compiled, Query)
    assert compiled.text == query
    assert compiled.ast == tree


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "problem", "position"),
    [
        ("", "empty query", 0),
        ("   ", "empty query", 0),
        ("csam AND (ai OR generated", 'expected ")"', 25),
        ("(csam OR (ai) ", 'expected ")"', 13),
        ("csam)", 'unexpected ")"', 4),
        ("(csam)) OR ai", 'unexpected ")"', 6),
        ('csam "child abuse', "unterminated quote", 5),
        ("csam OR", 'expected a term after "OR"', 5),
        ("csam AND", 'expected a term after "AND"', 5),
        ("csam NOT", 'expected a term after "NOT"', 5),
        ("csam AND OR ai", 'expected a term after "AND", found "OR"', 9),
        ("(csam OR)", 'expected a term after "OR", found ")"', 8),
        ("OR csam", 'expected a term before "OR"', 0),
        ("(AND csam)", 'expected a term before "AND"', 1),
        ("csam ()", "empty parentheses", 5),
        ("csam -", '"-" must be followed directly by a term', 5),
        ("csam - ai", '"-" must be followed directly by a term', 5),
        ('csam ""', "empty phrase", 5),
        ("*", 'wildcard is too broad: put at least 3 letters or digits before "*"', 0),
        ("csam ab*", 'wildcard is too broad: put at least 3 letters or digits before "*"', 5),
        ("a-b*", 'wildcard is too broad: put at least 3 letters or digits before "*"', 0),
        ('"undress a*"', 'wildcard is too broad: put at least 3 letters or digits before "*"', 9),
        ("nu*dify", '"*" is only allowed at the end of a word', 2),
        ("&", "a term needs at least one letter or digit", 0),
        ('"& !"', "a phrase needs at least one letter or digit", 0),
    ],
)
def test_query_errors(query: str, problem: str, position: int) -> None:
    with pytest.raises(QueryError) as raised:
        compile_query(query)
    error = raised.value
    assert (error.problem, error.position) == (problem, position)
    assert error.query == query
    assert error.watchlist is None
    assert str(error) == f"{problem} at column {position + 1}"


def test_error_message_names_the_watchlist() -> None:
    with pytest.raises(QueryError) as raised:
        compile_query("csam AND (ai OR generated", watchlist="csam")
    assert str(raised.value) == 'watchlist "csam": expected ")" at column 26'
    assert raised.value.watchlist == "csam"
    assert raised.value.position == 25


def test_minimal_wildcard_is_accepted() -> None:
    assert compile_query("app*").match("", "apps") is not None


# --- Matcher -------------------------------------------------------------------------------------------


def test_matcher_reports_matched_watchlists_in_input_order() -> None:
    matcher = Matcher({"zeta": "deepfake*", "alpha": "unicef", "none": "grooming", "neg": "NOT grooming"})
    title, text = "UNICEF warns", "deep-fakes and deepfakes"
    result = matcher.match(title, text)
    assert list(result) == ["zeta", "alpha", "neg"]
    assert span_texts(result["zeta"], title, text) == [("text", "deepfakes", "deepfake*")]
    assert span_texts(result["alpha"], title, text) == [("title", "UNICEF", "unicef")]
    assert result["neg"] == []


def test_matcher_agrees_with_query_match() -> None:
    watchlists = {"a": "csam OR unicef", "b": '"child abuse" -satire', "c": "csam unicef"}
    matcher = Matcher(watchlists)
    for title, text in [("CSAM", "unicef"), ("", "child abuse"), ("child abuse", "satire"), ("x", "y")]:
        expected = {}
        for name, query in watchlists.items():
            spans = compile_query(query).match(title, text)
            if spans is not None:
                expected[name] = spans
        assert matcher.match(title, text) == expected


def test_matcher_labels_the_first_bad_watchlist() -> None:
    with pytest.raises(QueryError) as raised:
        Matcher({"fine": "csam", "broken": "csam OR", "also-broken": "("})
    error = raised.value
    assert error.watchlist == "broken"
    assert str(error) == 'watchlist "broken": expected a term after "OR" at column 6'


def test_matcher_with_no_watchlists_matches_nothing() -> None:
    assert Matcher({}).match("CSAM", "csam") == {}
