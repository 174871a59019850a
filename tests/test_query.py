"""Tests for the watchlist query language (bot/match/).

The bulk of the matching rules live in tests/data/matching_cases.toml, one case per trap; this file adds
span offsets, syntax trees, error messages and the Matcher.
"""

from __future__ import annotations

import random
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.errors import QueryError
from bot.history import fts_match
from bot.match.evaluate import Build, Document
from bot.match.fold import FOLD, base_char, fold_char, fold_mapped, fold_slow
from bot.match.near import FIELD_STRIDE
from bot.match.prefilter import Index
from bot.match.query import And, Matcher, Near, Node, Not, Or, Phrase, Query, Term, compile_query
from bot.model import Span

CASES_FILE = Path(__file__).parent / "data" / "matching_cases.toml"
CASE_KEYS = {"query", "title", "text", "source", "padding", "highlights", "expected", "note"}
FILLER = "filler "  # one padding word


def load_cases() -> list[dict[str, Any]]:
    with CASES_FILE.open("rb") as f:
        return tomllib.load(f)["case"]


CASES = load_cases()


def case_id(index: int, case: dict[str, Any]) -> str:
    return f"{index:03d}-{case.get('note') or case['query']}"


def case_item(case: dict[str, Any]) -> tuple[str, str, str]:
    """(title, text, source) of a case, with its padding words put before the text."""
    return case.get("title", ""), FILLER * case.get("padding", 0) + case["text"], case.get("source", "")


def span_texts(spans: list[Span], title: str, text: str) -> list[tuple[str, str, str]]:
    """(field, matched original text, term) for each span: what a reader would see highlighted."""
    fields = {"title": title, "text": text}
    return [(span.field, fields[span.field][span.start : span.end], span.term) for span in spans]


# --- the case table ------------------------------------------------------------------------------------


def test_case_file_is_well_formed() -> None:
    assert len(CASES) >= 150
    for index, case in enumerate(CASES):
        assert set(case) <= CASE_KEYS, f"case {index}: unknown keys {set(case) - CASE_KEYS}"
        assert isinstance(case["query"], str), f"case {index}"
        assert isinstance(case["text"], str), f"case {index}"
        assert isinstance(case.get("title", ""), str), f"case {index}"
        assert isinstance(case.get("source", ""), str), f"case {index}"
        assert isinstance(case.get("padding", 0), int), f"case {index}"
        assert isinstance(case.get("highlights", []), list), f"case {index}"
        assert isinstance(case["expected"], bool), f"case {index}"
        assert case["expected"] or "highlights" not in case, f"case {index}: highlights of a non-match"
    # Both outcomes must be exercised, or a matcher that always says yes (or no) would pass half the table.
    assert {case["expected"] for case in CASES} == {True, False}


@pytest.mark.parametrize("case", CASES, ids=[case_id(i, c) for i, c in enumerate(CASES)])
def test_matching_case(case: dict[str, Any]) -> None:
    title, text, source = case_item(case)
    spans = compile_query(case["query"]).match(title, text, source=source)
    assert (spans is not None) == case["expected"], (
        f"query {case['query']!r} on title {title!r} / text {case['text']!r} / source {source!r}: "
        f"expected {'a match' if case['expected'] else 'no match'}, got {spans!r}"
    )
    for span in spans or []:
        assert span.field in ("title", "text")
        length = len(title) if span.field == "title" else len(text)
        assert 0 <= span.start < span.end <= length
    if "highlights" in case:
        assert [matched for _, matched, _ in span_texts(spans or [], title, text)] == case["highlights"]


def test_case_table_covers_every_rule() -> None:
    """A rule with no case in the table could break unnoticed: each needs a matching and a failing case."""
    rules = {
        "NEAR": lambda q: "NEAR/" in q,
        "title:": lambda q: "title:" in q,
        "text:": lambda q: "text:" in q,
        "source:": lambda q: "source:" in q,
        "=exact": lambda q: q.startswith("=") or " =" in q,
        "wildcard": lambda q: "*" in q,
        "phrase": lambda q: '"' in q,
        "hyphen": lambda q: "-" in q.replace(" -", " "),
        "NOT": lambda q: "NOT" in q or q.startswith("-") or " -" in q,
        "OR": lambda q: " OR " in q,
        "padding": None,
    }
    for rule, applies in rules.items():
        outcomes = {
            case["expected"]
            for case in CASES
            if (case.get("padding") if applies is None else applies(case["query"]))
        }
        assert outcomes == {True, False}, f"{rule}: cases for {outcomes or 'neither outcome'} only"


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
        ("a NEAR/5 b", Near((Term("a", 0), Term("b", 9)), 5)),
        ("a NEAR/2 b c", And((Near((Term("a", 0), Term("b", 9)), 2), Term("c", 11)))),
        ("a NEAR/2 b OR c", Or((Near((Term("a", 0), Term("b", 9)), 2), Term("c", 14)))),
        ("a NEAR/1 b NEAR/2 c", Near((Near((Term("a", 0), Term("b", 9)), 1), Term("c", 18)), 2)),
        ("a NEAR/3 (b OR c)", Near((Term("a", 0), Or((Term("b", 10), Term("c", 15)))), 3)),
        ("title:a b", And((Term("a", 6, "title"), Term("b", 8)))),
        ("-source:a", Not(Term("a", 8, "source"))),
        ('TITLE:"a b"', Phrase(("a", "b"), 6, "title")),
        ("text:(a OR b)", Or((Term("a", 6, "text"), Term("b", 11, "text")))),
        ("title:-a", Not(Term("a", 7, "title"))),
        ("=CSAM", Term("CSAM", 0, exact=True)),
        ("title:=CSAM", Term("CSAM", 6, "title", exact=True)),
        ("a=b", Term("a=b", 0)),
        ("NEARBY near/5", And((Term("NEARBY", 0), Term("near/5", 7)))),
        ("10:30", Term("10:30", 0)),
        ('"title:x"', Phrase(("title:x",), 0)),
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
        ("csam NEAR ai", "NEAR needs a distance in words, such as NEAR/5", 5),
        ("csam NEAR/x ai", "NEAR needs a distance in words, such as NEAR/5", 5),
        ("csam NEAR/5", 'expected a term after "NEAR/5"', 5),
        ("NEAR/5 csam", 'expected a term before "NEAR/5"', 0),
        ("csam NEAR/5 -ai", "NEAR/5 works on terms, phrases and OR groups, not on NOT", 12),
        ("NOT csam NEAR/5 ai", "NEAR/5 works on terms, phrases and OR groups, not on NOT", 0),
        (
            "(a b) NEAR/5 c",
            "NEAR/5 works on terms, phrases and OR groups, not on AND (two terms side by side are an AND)",
            0,
        ),
        ("c NEAR/2 (a OR NOT b)", "NEAR/2 works on terms, phrases and OR groups, not on NOT", 9),
        (
            "csam titel:ai",
            'unknown field "titel:" (fields are title:, text: and source:; put the word in quotes to search '
            "for it)",
            5,
        ),
        ("title: csam", 'expected a term, phrase or "(" directly after "title:"', 0),
        ("csam title:", 'expected a term, phrase or "(" directly after "title:"', 5),
        ("title:(text:csam)", '"text:" cannot be used inside "title:"', 7),
        ("= csam", '"=" must be followed directly by a word', 0),
        ('="csam"', '"=" must be followed directly by a word', 0),
        ("=", '"=" must be followed directly by a word', 0),
        ("=ab*", 'wildcard is too broad: put at least 3 letters or digits before "*"', 1),
        ("=&", "a term needs at least one letter or digit", 1),
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


def test_error_example_from_the_issue() -> None:
    with pytest.raises(QueryError) as raised:
        compile_query('csam NEAR/5 (ai OR "generated" ', watchlist="csam")
    assert str(raised.value) == 'watchlist "csam": expected ")" at column 31'


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


def test_matcher_passes_the_source_name_to_source_terms() -> None:
    matcher = Matcher({"un": 'source:"UN News" child*', "any": "child*"})
    assert list(matcher.match("", "children at risk", source="UN News")) == ["un", "any"]
    assert list(matcher.match("", "children at risk", source="BBC")) == ["any"]
    assert list(matcher.match("", "children at risk")) == ["any"]  # callers that pass no source


def test_source_matches_are_not_reported_as_spans() -> None:
    spans = compile_query("source:unicef OR unicef").match("", "UNICEF said", source="UNICEF")
    assert spans == [Span("text", 0, 6, "unicef")]


def test_exact_term_is_reported_with_its_equals_sign() -> None:
    assert compile_query("=CSAM").match("CSAM", "") == [Span("title", 0, 4, "=CSAM")]


def test_near_reports_every_positive_occurrence() -> None:
    text = "AI tools. Much later: AI-made CSAM"
    spans = compile_query("csam NEAR/1 ai").match("", text)
    assert spans is not None
    assert span_texts(spans, "", text) == [
        ("text", "AI", "ai"),
        ("text", "AI", "ai"),
        ("text", "CSAM", "csam"),
    ]


# --- the prefilter ------------------------------------------------------------------------------------


def reference_match(matcher: Matcher, title: str, text: str, source: str) -> dict[str, list[Span]]:
    """Every watchlist evaluated with every regex run: what the prefilter must never change."""
    document = Document(title, text, source, None)  # no index: every leaf counts as possible
    found = {}
    for name, query in matcher._queries:
        spans = query._match(document)
        if spans is not None:
            found[name] = spans
    return found


def spliced_items(count: int) -> list[tuple[str, str, str]]:
    """Case texts pasted into each other at random places, with random titles and sources."""
    rng = random.Random(20260205)
    items = []
    for _ in range(count):
        a, b, c = rng.sample(CASES, 3)
        cut = rng.randint(0, len(a["text"]))
        text = a["text"][:cut] + rng.choice([" ", "", "-", "\u00a0"]) + b["text"] + " " + a["text"][cut:]
        items.append((c.get("title", "") or c["text"][:40], text, rng.choice(["", "UN News", "Reuters"])))
    return items


def test_prefilter_never_changes_a_result() -> None:
    """One Matcher over every query of the case table (so prefixes and trigger words of all of them
    share one index and its learned words), on every case item and on spliced ones."""
    matcher = Matcher({f"case{i}": case["query"] for i, case in enumerate(CASES)})
    items = [case_item(case) for case in CASES] + spliced_items(1500)
    matched = 0
    for title, text, source in items:
        result = matcher.match(title, text, source=source)
        assert result == reference_match(matcher, title, text, source), (title, text, source)
        matched += bool(result)
    assert matched > len(items) // 2  # the comparison was not between two empty results


def test_one_matcher_agrees_with_each_case_alone() -> None:
    matcher = Matcher({f"case{i}": case["query"] for i, case in enumerate(CASES)})
    for i, case in enumerate(CASES):
        title, text, source = case_item(case)
        result = matcher.match(title, text, source=source)
        assert (f"case{i}" in result) == case["expected"], case_id(i, case)


def test_prefilter_is_right_after_forgetting_learned_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Index, "MAX_LEARNED", 5)  # start over every few items
    matcher = Matcher({"w": "nudif* OR sextort* OR deep-fake*", "v": "nudify"})
    for text in ["nudify apps", "sextortion cases", "deepfaked photos", "a nudify app", "weather"] * 3:
        assert matcher.match("", text) == reference_match(matcher, "", text, "")
    assert len(matcher._index.inert) + len(matcher._index.triggering) <= 5 + 10


def test_trigger_word_that_is_also_a_wildcard_prefix_match() -> None:
    """ "nudify" is a trigger of the phrase and also starts with the prefix of nudif*: both must fire."""
    matcher = Matcher({"phrase": '"nudify app"', "wild": "nudif*"})
    assert list(matcher.match("", "nudify tools")) == ["wild"]


# --- folding invariants the fast path relies on -----------------------------------------------------------


def test_folding_invariants_hold_over_the_bmp() -> None:
    """fold_mapped replaces characters of str.lower()'s output instead of folding each original
    character; that is only right if folding ignores case first and is idempotent. Exact terms need the
    case-keeping fold to have the same length everywhere."""
    for code in range(0x10000):
        if 0xD800 <= code < 0xE000:
            continue
        char = chr(code)
        folded, base = fold_char(char), base_char(char)
        assert len(folded) == len(base) <= 1, hex(code)
        assert fold_char(folded) == folded, hex(code)
        assert fold_char(base) == folded, hex(code)
        lowered = char.lower()
        if len(lowered) == 1:
            assert fold_char(lowered) == folded, hex(code)


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii",
        "Caf\u00e9 \u201cDeepfake\u201d \u2014 UNICEF\u2019s",
        "\u039f\u0394\u039f\u03a3 \u03bf\u03b4\u03bf\u03c2",  # final sigma from str.lower()
        "explotacio\u0301n deep\u00adfake",  # dropped characters: slow path
        "child&nbsp;abuse &amp; AT&T &bogus; &#8217;",
        "I\u0307stanbul \u0130STANBUL",  # lower() of U+0130 is two characters
    ],
)
def test_fast_fold_equals_per_character_fold(text: str) -> None:
    folded, source = fold_mapped(text)
    assert folded == fold_slow(text, FOLD)[0]
    cased, cased_source = fold_mapped(text, cased=True)
    assert fold_slow(cased, FOLD)[0] == folded  # same characters up to case, same offsets
    assert cased_source == source
    if source is not None:
        assert len(source) == len(folded)


# --- limits: the same checks for every entry point, and never a RecursionError ---------------------------


def near_chain(links: int) -> str:
    return " NEAR/1 ".join(["a"] * (links + 1))


@pytest.mark.parametrize(
    ("query", "problem", "position"),
    [
        pytest.param("a" * 600, "word is too long: 600 characters, at most 100", 0, id="600-letter-word"),
        pytest.param(
            'csam "abuse ' + "b" * 101 + '"', "word is too long: 101 characters, at most 100", 12, id="phrase"
        ),
        pytest.param("=" + "C" * 101, "word is too long: 101 characters, at most 100", 1, id="exact"),
        pytest.param(
            "(" * 1000 + "a" + ")" * 1000, "query is nested too deeply: at most 32 levels", 32, id="parens"
        ),
        pytest.param("NOT " * 2000 + "a", "query is nested too deeply: at most 32 levels", 4 * 32, id="not"),
        pytest.param("-" * 2000 + "a", "query is nested too deeply: at most 32 levels", 32, id="minus"),
        pytest.param(
            near_chain(600), "query is nested too deeply: at most 32 levels", 32 * 9 + 2, id="near-chain"
        ),
        pytest.param(
            "(a OR " * 20 + "b" + ")" * 20 + " NEAR/1 c" * 20,
            "query is nested too deeply: at most 32 levels",
            len("(a OR " * 20 + "b" + ")" * 20 + " NEAR/1 c" * 12) + 1,
            id="or-then-near",
        ),
        pytest.param(
            " ".join(["a"] * 501), "too many terms: at most 500 terms and phrases", 1000, id="terms"
        ),
        pytest.param(
            "a " * 5001, "query is too long: 10,002 characters, at most 10,000", 10_000, id="length"
        ),
        pytest.param("csam NEAR/101 ai", "NEAR distance is too large: at most NEAR/100", 5, id="near-101"),
        pytest.param(
            "csam NEAR/" + "9" * 5000 + " ai",
            "NEAR distance is too large: at most NEAR/100",
            5,
            id="near-digits",
        ),
    ],
)
def test_limits(query: str, problem: str, position: int) -> None:
    with pytest.raises(QueryError) as raised:
        compile_query(query, watchlist="hostile")
    error = raised.value
    assert (error.problem, error.position) == (problem, position)
    assert str(error) == f'watchlist "hostile": {problem} at column {position + 1}'
    with pytest.raises(QueryError):
        Matcher({"fine": "csam", "hostile": query})


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("(" * 32 + "a" + ")" * 32, id="parens"),
        pytest.param("NOT " * 32 + "a", id="not"),
        pytest.param(near_chain(32), id="near-chain"),
        pytest.param("".join(f"(x{i} OR (y{i} " for i in range(15)) + "a" + ")" * 30, id="or-and"),
        pytest.param("".join(f"a{i} NEAR/2 (" for i in range(16)) + "a" + ")" * 16, id="near-in-parens"),
        pytest.param("b" * 100 + " OR " + "-".join(["a"] * 50) + " OR cde" + "f" * 96 + "*", id="long-words"),
        pytest.param(" ".join(f"a{i}" for i in range(500)), id="terms"),
        pytest.param(" OR ".join(f"{'w' * 18}{i:03d}" for i in range(400)), id="length"),
        pytest.param("a NEAR/100 b", id="near-100"),
        pytest.param(" OR ".join("a" * k for k in range(1, 101)), id="nested-trigger-prefixes"),
    ],
)
def test_queries_at_the_limits_compile_and_match(query: str) -> None:
    """Everything after the parser recurses over the tree or the trigger words: at the limits it must
    all still work, with room to spare under Python's recursion limit."""
    assert len(query) <= 10_000
    compiled = compile_query(query)
    title, text = "a", "a " + " ".join(f"a{i} x{i} y{i}" for i in range(20)) + " b a"
    assert compiled.match(title, text) == reference_query(query).match(title, text)
    Matcher({"limit": query, "other": "csam"}).match(title, text)
    fts_match(compiled)


_SOUP = ["(", ")", "NOT ", "-", "a", "bb ", '"', "OR ", "AND ", "NEAR/1 ", "NEAR/x ", "title:", "=", "*", " "]


def hostile_queries(rng: random.Random, count: int) -> list[str]:
    """Token soups, and case-table queries nested, negated, chained and repeated past the limits."""
    queries = []
    for _ in range(count):
        query = rng.choice(CASES)["query"]
        depth = rng.choice([1, 10, 31, 32, 33, 100, 2000])
        roll = rng.random()
        if roll < 0.2:
            queries.append("".join(rng.choices(_SOUP, [rng.random() for _ in _SOUP], k=depth)))
        elif roll < 0.4:
            queries.append("(" * depth + query + ")" * depth)
        elif roll < 0.6:
            queries.append(rng.choice(["NOT ", "-", "title:", "NOT ("]) * depth + query)
        elif roll < 0.8:
            queries.append(f" NEAR/{rng.choice([1, 100, 101])} ".join(["(csam OR ai)"] * depth))
        else:
            queries.append(rng.choice([" OR ", " ", " AND "]).join([query] * depth))
    return queries


def test_no_input_raises_anything_but_query_error() -> None:
    """Each compiles and matches, or is a QueryError: never a RecursionError or anything else."""
    outcomes = set()
    for query in hostile_queries(random.Random(15), 400):
        try:
            matcher = Matcher({"q": query})
        except QueryError:
            outcomes.add("error")
            continue
        outcomes.add("compiled")
        matcher.match("csam ai", "ai csam unicef " * 20)
        fts_match(compile_query(query))
    assert outcomes == {"error", "compiled"}


# --- NEAR: exactly the pairwise answer, in linear time ----------------------------------------------------


class PairwiseBuild(Build):
    """NEAR as first written: every occurrence of one side compared with every one of the other.

    Quadratic, and the definition the sweeps of bot/match/near.py must agree with; everything else
    (leaves, spans, AND/OR/NOT) is the real code.
    """

    def near(self, node: Near, negated: bool) -> tuple[Callable[[Document], bool], frozenset[int] | None]:
        positions = self.pairwise(node, negated)
        return (lambda document: bool(positions(document))), self.needs(node)

    def pairwise(self, node: Node, negated: bool) -> Callable[[Document], list[tuple[int, int, int]]]:
        if isinstance(node, Term | Phrase):
            leaf = self.leaf(node, negated)

            def occurrences(document: Document) -> list[tuple[int, int, int]]:
                found = []
                for first, last in document.occurrences(leaf):  # keys back to (field, first, last)
                    field = (first + 1) // FIELD_STRIDE  # a word number may be -1 (before the first word)
                    found.append((field, first - field * FIELD_STRIDE, last - field * FIELD_STRIDE))
                return found

            return occurrences
        if isinstance(node, Or):
            parts = [self.pairwise(operand, negated) for operand in node.operands]
            return lambda document: [o for part in parts for o in part(document)]
        assert isinstance(node, Near)
        left, right = (self.pairwise(o, negated) for o in node.operands)
        distance = node.distance

        def near(document: Document) -> list[tuple[int, int, int]]:
            found = []
            for field_a, first_a, last_a in left(document):
                for field_b, first_b, last_b in right(document):
                    if field_a != field_b:
                        continue
                    if first_b > last_a:
                        gap = first_b - last_a - 1
                    elif first_a > last_b:
                        gap = first_a - last_b - 1
                    else:
                        continue
                    if gap <= distance:
                        found.append((field_a, min(first_a, first_b), max(last_a, last_b)))
            return found

        return near


def reference_query(text: str) -> Query:
    """``compile_query(text)`` with NEAR evaluated pair by pair."""
    query = compile_query(text)
    query._evaluate, query._need = PairwiseBuild(query._compiler, []).evaluate(query.ast, False)
    return query


NEAR_WORDS = ["csam", "ai", "AI-generated", "child", "abuse", "x", "y", "z", "—", "https://ai.example/csam"]


def random_near_query(rng: random.Random, depth: int = 0) -> str:
    """A NEAR of terms, phrases, fields, OR groups and NEARs, up to four deep."""

    def operand() -> str:
        roll = rng.random()
        if depth < 2 and roll < 0.3:
            return f"({random_near_query(rng, depth + 1)})"
        if roll < 0.45:
            return f"({rng.choice(['csam', 'ai', 'child'])} OR {rng.choice(['abuse', 'generated', 'x'])})"
        if roll < 0.55:
            return rng.choice(['"child abuse"', "title:csam", "text:ai", "=AI", "gener*"])
        return rng.choice(["csam", "ai", "child", "abuse", "x", "y", "generated"])

    query = operand()
    for _ in range(rng.choice([1, 1, 1, 2])):
        query += f" NEAR/{rng.choice([0, 1, 2, 3, 5, 8])} {operand()}"
    return query


def test_near_agrees_with_pairwise_on_the_case_table_and_random_texts() -> None:
    rng = random.Random(2026)
    queries = [case["query"] for case in CASES if "NEAR/" in case["query"]]
    queries += [random_near_query(rng) for _ in range(120)]
    items = [case_item(case) for case in CASES if "NEAR/" in case["query"]]
    for _ in range(100):
        words = rng.choices(NEAR_WORDS, k=rng.randint(0, 30))
        items.append((" ".join(rng.choices(NEAR_WORDS, k=rng.randint(0, 6))), " ".join(words), ""))
    matched = 0
    for text in queries:
        query, reference = compile_query(text), reference_query(text)
        for title, body, source in items:
            result = query.match(title, body, source=source)
            assert result == reference.match(title, body, source=source), (text, title, body)
            matched += result is not None
    assert matched > len(queries) * len(items) // 20  # both outcomes were compared, many times


def line_events(run: Callable[[], object]) -> int:
    """Python lines executed in bot/match and in this file while ``run`` runs: an operation count
    that needs no clock. (Work done inside C, such as one sort or one regex scan, counts as a line.)"""
    package = Path(sys.modules[Build.__module__].__file__ or "").parent
    files = {str(path.resolve()) for path in [Path(__file__), *package.glob("*.py")]}
    assert len(files) > 5
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return trace

    def calls(frame, event, arg):
        return trace if frame.f_code.co_filename in files else None

    sys.settrace(calls)
    try:
        run()
    finally:
        sys.settrace(None)
    return count


def far_apart(n: int) -> str:
    return "csam " * n + "y " * 101 + "ai " * n  # 101 words between the nearest two: no match


@pytest.mark.parametrize(
    ("query", "text"),
    [
        pytest.param("csam NEAR/5 (ai OR generated)", lambda n: "csam ai " * n, id="readme-example-matches"),
        pytest.param(
            "csam NEAR/5 (ai OR generated)", lambda n: "csam x x x x x x ai " * n, id="readme-no-match"
        ),
        pytest.param("csam NEAR/5 ai NEAR/5 generated", lambda n: "csam ai " * n, id="chain-of-three"),
        pytest.param(
            "(csam NEAR/5 ai) NEAR/5 (ai NEAR/3 csam) NEAR/5 x", lambda n: "csam ai " * n, id="chain-of-four"
        ),
        pytest.param("csam NEAR/100 ai", far_apart, id="far-apart"),
    ],
)
def test_near_is_linear_in_occurrences(query: str, text: Callable[[int], str]) -> None:
    """Doubling the text at most (a little over) doubles the work; pair by pair it quadruples."""
    compiled = compile_query(query)
    small = line_events(lambda: compiled.match("", text(200)))
    large = line_events(lambda: compiled.match("", text(400)))
    assert small > 1000 and large < 2.5 * small, (small, large)
    assert compiled.match("", text(30)) == reference_query(query).match("", text(30))  # pairwise is slow


def test_the_operation_count_sees_quadratic_work() -> None:
    """The same count on the pairwise NEAR: the test above would catch a quadratic NEAR."""
    reference = reference_query("csam NEAR/5 (ai OR generated)")
    small = line_events(lambda: reference.match("", "csam ai " * 100))
    large = line_events(lambda: reference.match("", "csam ai " * 200))
    assert large > 3.5 * small, (small, large)
