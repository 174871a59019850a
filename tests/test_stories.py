"""Story clustering: the pieces, and its quality on the labeled sets in tests/data/stories/."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bot.errors import StoryModelError
from bot.ingest.normalize import normalize
from bot.ingest.poll import assign_story
from bot.model import Entry, Source
from bot.store import Store
from bot.stories import labeled
from bot.stories.decide import decide, signals_of
from bot.stories.embed import Embedder, embed
from bot.stories.fingerprint import Fingerprint, candidate_tokens, clean_headline, fingerprint, tokens
from bot.stories.fit import NOTHING_TO_JUDGE, refit
from bot.stories.index import Indexed, StoryIndex
from bot.stories.model import StoryModel, fit, shipped
from bot.stories.signals import FEATURES, Figure, entities, figures
from tests.conftest import run_newsalert
from tests.story_eval import STORIES, evaluate

EVENTS = STORIES / "e2e_events.toml"


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


def test_figures_are_normalised_and_years_and_dates_are_not_figures() -> None:
    one = {Figure(1_200_000.0)}
    assert figures("1.2 million children", "") == figures("1.2m children", "") == one
    assert figures("1,200,000 children", "") == figures("1.2 mln children", "") == one
    assert figures("In 2025, on Feb 5, 40 per cent of 33,400 reports", "") == {
        Figure(40.0, True),
        Figure(33400.0),
    }
    assert figures("Two Nigerian men", "") == {Figure(2.0)}


def test_entities_are_names_not_sentence_starts() -> None:
    common = frozenset({"police", "reports", "the", "federal"})
    found = entities(
        "Meta sues maker of CrushAI nudify app",
        "Meta on Thursday sued Joy Timeline HK, the Hong Kong company behind CrushAI. Police said...",
        common,
    )
    assert {"meta", "crushai", "joy", "hk", "hong", "kong"} <= found
    assert "polic" not in found  # "Police" only starts a sentence
    assert entities("FBI Warns Parents About Sextortion Schemes", "", frozenset({"parents", "schemes"})) >= {
        "fbi"
    }


def test_the_embedding_files_are_checked_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    from bot.stories.embed import SHA256, TOKENIZER, WEIGHTS, package_dir

    for name in (WEIGHTS, TOKENIZER):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package_dir() / name, tmp_path / name)
    vectors = Embedder(tmp_path).embed(
        [
            "Meta sues maker of CrushAI nudify app",
            "Facebook parent files lawsuit against developer of AI undressing apps",
            "Premier League transfer deadline day: all the deals",
            "",
        ]
    )
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5) and not vectors[3].any()
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    data = bytearray((tmp_path / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(StoryModelError, match="sha256"):
        Embedder(tmp_path)
    assert SHA256[WEIGHTS] != hashlib.sha256(data).hexdigest()


def test_the_fit_finds_the_signs_and_the_model_round_trips() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, size=(400, len(FEATURES)))
    logit = 6 * x[:, 0] - 4 * x[:, 4] - 1
    y = (rng.uniform(size=400) < 1 / (1 + np.exp(-logit))).astype(float)
    weights, bias = fit(x, y)
    assert weights[0] > 2 and weights[4] < -1
    model = StoryModel(tuple(weights), bias, 0.9, "2026-02-01", {"held_out": {}})
    again = StoryModel.from_json(model.to_json())
    assert again.threshold == 0.9 and np.allclose(again.weights, model.weights, atol=1e-5)
    with pytest.raises(StoryModelError, match="features"):
        StoryModel((1.0,), 0.0, 0.5, features=("semantic",))


def test_the_shipped_model_says_when_and_on_what_it_was_fitted() -> None:
    model = shipped()
    assert model.fitted and model.figures["held_out"]["independent.toml"]["items"] > 100
    assert model.weights[FEATURES.index("semantic")] > 0
    assert model.weights[FEATURES.index("figures_conflict")] < 0


def run(name: str, tmp_path: Path, *, held: bool | None = None):
    store = Store.open(tmp_path / f"{name}.db")
    rows = labeled.read(STORIES / name)
    try:
        return evaluate(store, STORIES / name, rows=rows if held is None else labeled.part(rows, held=held))
    finally:
        store.close()


def report(name: str, scores) -> None:
    print(f"\n{name}: {scores.line()}")
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
    """Same events told independently: on the whole set precision must hold, because a false
    merge hides a story while a missed one only costs an extra alert."""
    scores = run("independent.toml", tmp_path)
    report("independent.toml", scores)
    assert scores.precision >= 0.95


@pytest.mark.xfail(
    strict=True,
    reason="issue 14 goal missed: held-out recall 0.341 at precision 0.961 (README, Stories)",
)
def test_held_out_independent_weeks_meet_the_goal(tmp_path: Path) -> None:
    """The weeks the model was never fitted on (labeled.held_out): recall >= 0.80 at precision >= 0.95."""
    scores = run("independent.toml", tmp_path, held=True)
    report("independent.toml, held-out weeks", scores)
    print(f"  BCubed precision {scores.bcubed_precision:.3f}, recall {scores.bcubed_recall:.3f}")
    assert scores.precision >= 0.95
    assert scores.recall >= 0.80


def test_different_figures_keep_look_alike_cases_apart() -> None:
    index = StoryIndex()
    a = indexed(
        1,
        100,
        T0,
        "Michigan man sentenced to 35 years for sextortion of minors",
        "A federal judge sentenced a Michigan man to 35 years in prison for sextortion of 12 minors.",
    )
    index.add(a)
    b = "Georgia man sentenced to 20 years for sextortion of minors"
    lead = "A federal judge sentenced a Georgia man to 20 years in prison for sextortion of 9 minors."
    decision = decide(index, shipped(), embed, fingerprint(b, lead), b, lead, T0, T0 - timedelta(hours=72))
    assert decision.story_id is None
    assert decision.rejected is not None and decision.rejected.features["figures_conflict"] == 1.0


def test_codes_and_hashes_get_no_vector_and_cannot_merge_on_one() -> None:
    # Text made of word fragments tokenizes to the same few pieces: such vectors are alike
    # whatever they say (before says_something, 498 of these 500 joined one another).
    titles = [
        f"CSAM {' '.join(hashlib.sha1(str(i).encode()).hexdigest()[n : n + 6] for n in range(0, 30, 6))}"
        for i in range(60)
    ]
    assert not signals_of(titles[0], "", embed).vector.any()
    assert not signals_of("CSAM", "", embed).vector.any()  # one word says what its entity says
    assert signals_of(*WIRE, embed).vector.any()
    index = StoryIndex()
    for i, title in enumerate(titles):
        fp = fingerprint(title, "")
        decision = decide(index, shipped(), embed, fp, title, "", T0, T0 - timedelta(hours=72))
        assert decision.story_id is None, (title, decision.best)
        index.add(Indexed(i, i, T0, fp, decision.signals or signals_of(title, "", embed)))


# --- the in-memory index (index.StoryIndex, kept by store.stories) -------------------------------

WIRE = (
    "Europol takes down Kidflix platform with 1.8 million users",
    "Europol said 79 suspects were arrested in an operation against Kidflix, a platform with "
    "1.8 million users sharing child sexual abuse material, led by Bavarian police.",
)
COPY = (
    "Kidflix: Europol shuts abuse platform used by 1.8m people",
    "Bavarian police and Europol arrested 79 suspects after taking down Kidflix, which had 1.8 "
    "million users sharing child sexual abuse material.",
)
OTHER = (
    "Ofcom fines image board under Online Safety Act",
    "The regulator fined the site £20,000 for failing to answer a statutory information request.",
)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def indexed(item_id: int, story_id: int, seen: datetime, title: str, text: str) -> Indexed:
    return Indexed(item_id, story_id, seen, fingerprint(title, text), signals_of(title, text, embed))


def find(index: StoryIndex, text: tuple[str, str], since: datetime, *, seen: datetime = T0) -> int | None:
    title, lead = text
    return decide(index, shipped(), embed, fingerprint(title, lead), title, lead, seen, since).story_id


def test_the_index_finds_a_copy_within_the_window_only() -> None:
    index = StoryIndex()
    index.add(indexed(1, 100, T0, *WIRE))
    index.add(indexed(2, 200, T0, *OTHER))
    assert find(index, COPY, since=T0 - timedelta(hours=72)) == 100
    assert find(index, COPY, since=T0 + timedelta(seconds=1)) is None  # the original left the window


def test_a_paraphrase_sharing_no_rare_word_is_found_by_its_vector() -> None:
    index = StoryIndex()
    index.add(indexed(1, 100, T0, *WIRE))
    title = "Police shut down a huge child abuse website used by nearly two million people"
    found = index.nearest(signals_of(title, "", embed).vector, T0 - timedelta(hours=1))
    assert [e.item_id for e in found] == [1]


def test_an_unindexed_item_about_nothing_in_the_window_is_not_embedded() -> None:
    index = StoryIndex()
    index.add(indexed(1, 100, T0, *WIRE))
    title, lead = "Premier League transfer deadline day", "Every signing from the window."
    calls: list[list[str]] = []

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return embed(texts)

    fp = fingerprint(title, lead)
    decision = decide(index, shipped(), counting, fp, title, lead, T0, T0 - timedelta(hours=1), indexed=False)
    assert decision.story_id is None and not calls


def test_items_that_left_the_window_are_dropped_from_memory() -> None:
    index = StoryIndex()
    entry = indexed(0, 0, T0, *OTHER)
    for n in range(1200):
        index.add(Indexed(n, n, T0 + timedelta(minutes=n), entry.fp, entry.signals))
    index.candidates(fingerprint(*COPY), since=T0 + timedelta(minutes=1100))
    assert len(index) == 100
    assert len(index.nearest(entry.signals.vector, T0 + timedelta(minutes=1100), limit=500)) == 100


def add(store: Store, text: tuple[str, str], seen: datetime, story: int | None = None) -> tuple[int, int]:
    title, lead = text
    entry = Entry(guid=f"g{seen.isoformat()}{title}", link="", title=title, summary=lead, published=seen)
    story = store.stories.new_story(seen) if story is None else story
    item_id = store.items.add_item(
        normalize(entry, Source("s", "https://s.example/feed"), seen), story_id=story
    )
    store.stories.add_fingerprint(
        item_id, story, seen, fingerprint(title, lead), signals_of(title, lead, embed)
    )
    return item_id, story


def stored_find(store: Store, text: tuple[str, str], since: datetime) -> int | None:
    return find(store.stories.story_index(since), text, since)


def test_the_index_sees_what_another_connection_wrote(db_target: str) -> None:
    one, two = Store.open(db_target), Store.open(db_target)
    since = T0 - timedelta(hours=72)
    assert stored_find(one, COPY, since) is None  # loaded, empty
    with two.transaction():
        _, story = add(two, WIRE, T0)
    assert stored_find(one, COPY, since) == story
    one.close()
    two.close()


def test_a_rolled_back_fingerprint_is_not_offered(db_target: str) -> None:
    store = Store.open(db_target)
    since = T0 - timedelta(hours=72)
    store.stories.story_index(since)
    with pytest.raises(RuntimeError), store.transaction():
        add(store, WIRE, T0)
        assert stored_find(store, COPY, since) is not None
        raise RuntimeError("a source failed half way")
    assert stored_find(store, COPY, since) is None
    # Nor when only a savepoint inside a larger transaction is rolled back.
    with store.transaction():
        with pytest.raises(RuntimeError), store.transaction():
            add(store, WIRE, T0)
            raise RuntimeError("one source of a commit group")
        assert stored_find(store, COPY, since) is None
    store.close()


def test_pruned_stories_leave_the_index(db_target: str) -> None:
    store = Store.open(db_target)
    since = T0 - timedelta(hours=72)
    with store.transaction():
        _, story = add(store, WIRE, T0)
    assert stored_find(store, COPY, since) is not None
    with store.transaction():
        store.history.delete_stories([story])
    assert stored_find(store, COPY, since) is None
    store.close()


def test_only_writes_to_the_index_make_another_connection_load_it_again(db_target: str) -> None:
    one, two = Store.open(db_target), Store.open(db_target)
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
    assert stored_find(one, COPY, since) is None
    one.close()
    two.close()


# --- corrections: split, merge, labels, fitted models ---------------------------------------------


def test_an_item_split_out_of_its_story_is_its_own_story_in_the_index_too(db_target: str) -> None:
    store = Store.open(db_target)
    since = T0 - timedelta(hours=72)
    with store.transaction():
        _, story = add(store, WIRE, T0)
        copy, _ = add(store, COPY, T0 + timedelta(hours=1), story=story)
        assert stored_find(store, COPY, since) == story
        alone = store.stories.split_item(copy, T0 + timedelta(hours=2))
    assert alone != story
    assert [i for i, _, _ in store.stories.story_items(alone)] == [copy]
    index = store.stories.story_index(since)
    assert index.get(copy).story_id == alone
    other = Store.open(db_target)  # another connection sees the move
    assert other.stories.story_index(since).get(copy).story_id == alone
    other.close()
    store.close()


def test_merging_a_story_moves_every_item_and_the_index(db_target: str) -> None:
    store = Store.open(db_target)
    since = T0 - timedelta(hours=72)
    with store.transaction():
        one, story_a = add(store, WIRE, T0)
        two, story_b = add(store, OTHER, T0)
        assert store.stories.merge_stories(story_b, story_a) == [two]
    assert sorted(i for i, _, _ in store.stories.story_items(story_a)) == [one, two]
    assert store.stories.story_index(since).get(two).story_id == story_a
    store.close()


def test_labels_are_kept_and_exported_in_the_labeled_set_format(db_target: str, tmp_path: Path) -> None:
    store = Store.open(db_target)
    with store.transaction():
        added = [add(store, text, T0 + timedelta(hours=h)) for text, h in ((WIRE, 0), (COPY, 3), (OTHER, 4))]
        (one, _), (two, _), (three, _) = added
        store.story_model.record_label(one, two, True, "U1", T0)
        store.story_model.record_label(one, three, False, "U2", T0)
        store.history.delete_stories([story for _, story in added])  # retention: the copies stay
    found = store.story_model.labels()
    assert [(label.same, label.user_id) for label in found] == [(True, "U1"), (False, "U2")]
    path = tmp_path / "labels.toml"
    path.write_text(labeled.labels_toml(found))
    rows = labeled.read(path)
    assert len({r.story for r in rows}) == 3 and len(rows) == 4
    copy = next(r for r in rows if r.entry.title == COPY[0])
    assert copy.seen - next(r for r in rows if r.story == copy.story and r is not copy).seen == timedelta(
        hours=3
    )
    store.close()


def test_story_why_labels_export_and_fit_from_the_command_line(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store.open(db)
    with store.transaction():
        one, story = add(store, WIRE, T0)
        predicted, decision = assign_story(store, fingerprint(*COPY), *COPY, T0, timedelta(hours=72))
        two = store.items.add_item(labeled.item_of(labeled.read(EVENTS)[0]), story_id=predicted)
        store.story_model.save_decision(two, predicted, decision)
        store.story_model.record_label(one, two, True, "U1", T0)
    store.close()
    assert predicted == story
    why = run_newsalert("story", str(story), "--why", db=db)
    assert why.returncode == 0, why.stderr
    assert "joined: P(same)" in why.stdout and "semantic" in why.stdout and "best rejected" in why.stdout
    out = tmp_path / "labels.toml"
    exported = run_newsalert("stories", "labels", "--export", str(out), db=db)
    assert exported.returncode == 0 and len(labeled.read(out)) == 2
    fitted = run_newsalert("stories", "fit", "--labeled", str(EVENTS), db=db, timeout=120)
    assert fitted.returncode == 0, fitted.stderr
    assert "before" in fitted.stdout and "after" in fitted.stdout and "kept: story model 1" in fitted.stdout
    store = Store.open(db)
    model = store.story_model.active_model()
    assert model is not None and model.figures["train"]["e2e_events.toml"]["items"] == 4
    store.close()
    broken = tmp_path / "broken.toml"
    broken.write_text("[[story]]\nid = 1\n")
    refused = run_newsalert("stories", "fit", "--labeled", str(broken), db=db)
    assert refused.returncode == 2 and "broken.toml" in refused.stderr and "Traceback" not in refused.stderr


def test_a_fitted_model_is_versioned_and_used(db_target: str) -> None:
    store = Store.open(db_target)
    assert store.story_model.active_model() is None and store.story_model.model() == shipped()
    stricter = StoryModel(shipped().weights, shipped().bias, 0.999, "2026-03-01", {"held_out": {"x": 1}})
    with store.transaction():
        first = store.story_model.save_model(stricter, T0)
    assert store.story_model.model().threshold == 0.999
    with store.transaction():
        second = store.story_model.save_model(shipped(), T0)
    assert second > first and store.story_model.model().threshold == shipped().threshold
    store.close()


def test_a_fit_with_nothing_held_out_to_judge_it_on_is_refused() -> None:
    # e2e_events.toml is all fitting weeks (2026-W11) and there are no labels: "no worse on the
    # held-out weeks" would be judged on no pair at all, so the current model stays.
    result = refit([EVENTS], [], shipped(), embed)
    assert not any(scores.true_pairs for scores in result.after.values())
    assert not result.kept and result.why == NOTHING_TO_JUDGE
