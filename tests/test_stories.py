"""Story clustering: the pieces, and its quality on the labeled sets in tests/data/stories/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.ingest.normalize import normalize
from bot.model import Entry, Source
from bot.store import Store
from bot.stories.fingerprint import (
    SAME_TEXT,
    Fingerprint,
    StoryIndex,
    candidate_tokens,
    clean_headline,
    fingerprint,
    similarity,
    tokens,
)
from tests.story_eval import evaluate

STORIES = Path(__file__).parent / "data" / "stories"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("UPDATE 2-UNICEF urges action", "UNICEF urges action"),
        ("EXCLUSIVE: Europol arrests 31", "Europol arrests 31"),
        ("BREAKING NEWS - Analysis: Ofcom fines site", "Ofcom fines site"),
        ("Update on the UNICEF report", "Update on the UNICEF report"),
    ],
)
def test_desk_prefixes_are_removed(raw: str, clean: str) -> None:
    assert clean_headline(raw) == clean


def test_tokens_fold_spellings_and_synonyms() -> None:
    assert tokens("Criminalise") == tokens("criminalized")
    assert tokens("artificial intelligence") == tokens("AI") == ["ai"]
    assert tokens("child sexual abuse images") == tokens("CSAM") == ["csam"]
    assert tokens("1.2 million") == tokens("1.2m") == ["1.2m"]
    assert tokens("U.S. and the United States") == ["usa", "usa"]
    assert tokens("they told us the news") == []  # stopwords, and "us" the pronoun is not the USA


def test_candidates_are_the_rarest_tokens_seen_before() -> None:
    fp = Fingerprint(frozenset({"unicef", "children", "brandnew"}), frozenset())
    assert candidate_tokens(fp, {"unicef": 3, "children": 90}) == ["unicef", "children"]


def test_identical_and_unrelated_items() -> None:
    a = fingerprint("UNICEF urges governments to criminalise AI abuse images", "UNICEF said on Thursday ...")
    b = fingerprint("Premier League transfer deadline day: all the deals", "Every signing from the window.")
    no_df: dict[str, int] = {}  # every word weighs the same
    assert similarity(a, a, no_df, 0) == pytest.approx(1 / SAME_TEXT)  # identical: Dice 1, over the bar
    assert similarity(a, b, no_df, 0) == 0.0


def run(name: str, tmp_path: Path):
    store = Store.open(tmp_path / f"{name}.db")
    try:
        return evaluate(store, STORIES / name)
    finally:
        store.close()


def report(name: str, scores) -> None:
    print(
        f"\n{name}: {scores.stories} stories, {scores.items} items, {scores.true_pairs} same-story pairs; "
        f"pairwise precision {scores.precision:.3f}, recall {scores.recall:.3f}"
    )
    for a, b in scores.false_merges[:5]:
        print(f"  merged but different: {a!r} / {b!r}")
    for a, b in scores.missed[:5]:
        print(f"  same story, not merged: {a!r} / {b!r}")


def test_labeled_syndicated_coverage_is_clustered_precisely(tmp_path: Path) -> None:
    scores = run("syndicated.toml", tmp_path)
    report("syndicated.toml", scores)
    assert scores.stories >= 40 and scores.items >= 100
    assert scores.precision >= 0.95
    assert scores.recall >= 0.90


def test_independent_reporting_figures_are_printed(tmp_path: Path) -> None:
    """Same events told independently (no shared wire text): reported, not required.

    Lexical similarity cannot tie "Brussels clinches 'chat control' deal" to "EU agrees rules
    on online child abuse"; the figures show how far it gets, and precision must still hold,
    because a false merge hides a story while a missed one only costs an extra alert.
    """
    scores = run("independent.toml", tmp_path)
    report("independent.toml", scores)
    assert scores.precision >= 0.95


def test_different_figures_keep_look_alike_cases_apart() -> None:
    a = fingerprint(
        "Michigan man sentenced to 35 years for sextortion of minors",
        "A federal judge sentenced a Michigan man to 35 years in prison for sextortion of 12 minors.",
    )
    b = fingerprint(
        "Georgia man sentenced to 20 years for sextortion of minors",
        "A federal judge sentenced a Georgia man to 20 years in prison for sextortion of 12 minors.",
    )
    c = fingerprint(
        "Georgia man sentenced to 20 years for sextortion of minors",
        "A federal judge sentenced a Georgia man to 20 years in prison for sextortion of minors.",
    )
    no_df: dict[str, int] = {}  # every word weighs the same
    assert similarity(a, b, no_df, 0) > similarity(a, c, no_df, 0)  # c shares no figure with a: penalised


# --- the in-memory index (stories.StoryIndex, kept by store.Store) ------------------------------

WIRE = fingerprint(
    "Europol takes down Kidflix platform with 1.8 million users",
    "Europol said 79 suspects were arrested in an operation against Kidflix, a platform with "
    "1.8 million users sharing child sexual abuse material, led by Bavarian police.",
)
COPY = fingerprint(
    "Kidflix: Europol shuts abuse platform used by 1.8m people",
    "Bavarian police and Europol arrested 79 suspects after taking down Kidflix, which had 1.8 "
    "million users sharing child sexual abuse material.",
)
OTHER = fingerprint(
    "Ofcom fines image board under Online Safety Act",
    "The regulator fined the site £20,000 for failing to answer a statutory information request.",
)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_the_index_finds_a_copy_within_the_window_only() -> None:
    index = StoryIndex()
    index.add(1, 100, T0, WIRE)
    index.add(2, 200, T0, OTHER)
    found = index.find(COPY, since=T0 - timedelta(hours=72))
    assert found is not None and found[0] == 100
    assert index.find(COPY, since=T0 + timedelta(seconds=1)) is None  # the original left the window


def test_items_that_left_the_window_are_dropped_from_memory() -> None:
    index = StoryIndex()
    for n in range(1200):
        index.add(n, n, T0 + timedelta(minutes=n), OTHER)
    index.candidates(COPY, since=T0 + timedelta(minutes=1100))
    assert len(index) == 100


def add(store: Store, fp: Fingerprint, seen: datetime) -> tuple[int, int]:
    entry = Entry(guid=f"g{seen.isoformat()}{len(fp.tokens)}", link="", title="t", summary="", published=seen)
    story = store.stories.new_story(seen)
    item_id = store.items.add_item(
        normalize(entry, Source("s", "https://s.example/feed"), seen), story_id=story
    )
    store.stories.add_fingerprint(item_id, story, seen, fp)
    return item_id, story


def test_the_index_sees_what_another_connection_wrote(tmp_path: Path) -> None:
    one, two = Store.open(tmp_path / "t.db"), Store.open(tmp_path / "t.db")
    since = T0 - timedelta(hours=72)
    assert one.stories.story_index(since).find(COPY, since) is None  # loaded, empty
    with two.transaction():
        _, story = add(two, WIRE, T0)
    found = one.stories.story_index(since).find(COPY, since)
    assert found is not None and found[0] == story
    one.close()
    two.close()


def test_a_rolled_back_fingerprint_is_not_offered(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    since = T0 - timedelta(hours=72)
    store.stories.story_index(since)
    with pytest.raises(RuntimeError), store.transaction():
        add(store, WIRE, T0)
        assert store.stories.story_index(since).find(COPY, since) is not None
        raise RuntimeError("a source failed half way")
    assert store.stories.story_index(since).find(COPY, since) is None
    # Nor when only a savepoint inside a larger transaction is rolled back.
    with store.transaction():
        with pytest.raises(RuntimeError), store.transaction():
            add(store, WIRE, T0)
            raise RuntimeError("one source of a commit group")
        assert store.stories.story_index(since).find(COPY, since) is None
    store.close()


def test_pruned_stories_leave_the_index(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    since = T0 - timedelta(hours=72)
    with store.transaction():
        _, story = add(store, WIRE, T0)
    assert store.stories.story_index(since).find(COPY, since) is not None
    with store.transaction():
        store.history.delete_stories([story])
    assert store.stories.story_index(since).find(COPY, since) is None
    store.close()


def test_only_writes_to_the_index_make_another_connection_load_it_again(tmp_path: Path) -> None:
    one, two = Store.open(tmp_path / "t.db"), Store.open(tmp_path / "t.db")
    since = T0 - timedelta(hours=72)
    with one.transaction():
        _, story = add(one, WIRE, T0)
    index = one.stories.story_index(since)
    with two.transaction():  # delivery, Slack commands: other tables
        two.people.record_audit("U1", "C1", "subscribe", "csam", T0)
    assert one.stories.story_index(since) is index
    with two.transaction():  # retention, in another connection
        two.history.delete_stories([story])
    assert one.stories.story_index(since) is not index
    assert one.stories.story_index(since).find(COPY, since) is None
    one.close()
    two.close()
