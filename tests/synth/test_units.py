"""Pure parts of the synthesis stage: categories, slots, templates, filters, split, citations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragtune.core.config import LLMEndpoint, build_config
from ragtune.core.errors import ConfigError
from ragtune.core.records import Chunk, Document, Section
from ragtune.synth import filters, generator_endpoint
from ragtune.synth.categories import build_categories, category_path, plan_slots
from ragtune.synth.prompts import AnswerReply, resolve_citations, synth_templates
from ragtune.synth.split import SplitItem, choose_held_out, split_held
from ragtune.synth.stage import Candidate, SynthInvariantError, _check_every_slot_accounted


def chunk(doc_id: str, path: list[str], text: str) -> Chunk:
    return Chunk(
        chunk_id=Chunk.make_id(doc_id, path, text),
        doc_id=doc_id,
        section_id="s1",
        section_path=path,
        text=text,
        token_count=len(text.split()),
    )


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


# -- categories and slots ---------------------------------------------------------------------------


def test_category_path_does_not_count_a_title_heading_twice() -> None:
    # Markdown: the H1 title is the first heading of every path
    assert category_path("Anxiety Disorders", ["Anxiety Disorders", "Key features", "Panic"], 1) == (
        "Anxiety Disorders",
    )
    assert category_path("Anxiety Disorders", ["Anxiety Disorders", "Key features", "Panic"], 2) == (
        "Anxiety Disorders",
        "Key features",
    )
    # TEI/PDF: first-level divisions sit directly under the header title
    assert category_path("Schizophrenia", ["Overview"], 1) == ("Schizophrenia",)
    assert category_path("Schizophrenia", ["Overview"], 2) == ("Schizophrenia", "Overview")
    assert category_path("Schizophrenia", [], 3) == ("Schizophrenia",)  # untitled front matter


def test_categories_follow_the_table_of_contents() -> None:
    doc = Document(
        doc_id="d1",
        source_uri="x.md",
        sha256="0" * 64,
        title="Mood",
        parser="markdown",
        sections=[
            Section(section_id="s0", heading="Mood", level=1, path=[], text=""),
            Section(section_id="s1", heading="Overview", level=2, path=["Mood"], text="Low mood."),
            Section(section_id="s2", heading="Empty", level=2, path=["Mood"], text=""),
        ],
    )
    chunks = [chunk("d1", ["Mood", "Overview"], "Low mood lasts two weeks.")]
    (only,) = build_categories([doc], chunks, depth=1)
    assert only.name == "Mood" and only.chunks == chunks
    deeper = {c.name: len(c.chunks) for c in build_categories([doc], chunks, depth=2)}
    assert deeper == {"Mood": 0, "Mood › Overview": 1, "Mood › Empty": 0}


def test_slots_fill_the_quota_round_robin_and_deterministically() -> None:
    doc_chunks = [chunk("d1", ["T", f"S{i}"], f"text {i}") for i in range(3)]
    doc = Document(doc_id="d1", source_uri="x", sha256="0" * 64, title="T", parser="text", sections=[])
    categories = build_categories([doc], doc_chunks, 1)
    types = ["definition", "criteria"]
    slots = plan_slots(categories, quota=7, question_types=types, seed=0)
    assert len(slots) == 7
    per_chunk = {c.chunk_id: sum(s.chunk == c for s in slots) for c in doc_chunks}
    assert sorted(per_chunk.values()) == [2, 2, 3]
    assert len({s.slot_id for s in slots}) == 7  # the third slot of a chunk repeats a type: repeat=1
    assert plan_slots(categories, 7, types, seed=0) == slots
    assert plan_slots(categories, 7, types, seed=1) != slots
    assert len(plan_slots(categories, 7, types, seed=0, max_chunks=1)) == 7
    assert {s.chunk.chunk_id for s in plan_slots(categories, 7, types, seed=0, max_chunks=1)} == {
        slots[0].chunk.chunk_id
    }


def test_a_chunks_slots_do_not_depend_on_other_categories() -> None:
    docs = [
        Document(doc_id=d, source_uri=d, sha256="0" * 64, title=d.upper(), parser="text", sections=[])
        for d in ("a", "b")
    ]
    a_chunks = [chunk("a", ["A", "x"], "alpha one"), chunk("a", ["A", "y"], "alpha two")]
    before = plan_slots(build_categories(docs, [*a_chunks, chunk("b", ["B"], "beta")], 1), 4, ["t1", "t2"], 0)
    after = plan_slots(
        build_categories(docs, [*a_chunks, chunk("b", ["B"], "beta, edited")], 1), 4, ["t1", "t2"], 0
    )
    assert [s for s in before if s.category == "A"] == [s for s in after if s.category == "A"]


# -- templates --------------------------------------------------------------------------------------


def test_packaged_templates_load_with_versions() -> None:
    templates = synth_templates()
    for name in ("question", "answer", "judge_grounded", "system", "card.md"):
        template = templates.get(name)
        assert template.version and template.ref == f"{name}@{template.version}"
        assert template.origin.startswith("ragtune.synth/templates/")
    assert set(templates.refs()) == {"question", "answer", "judge_grounded", "system", "card.md"}


def test_templates_dir_overrides_by_file_name(tmp_path: Path) -> None:
    (tmp_path / "question.j2").write_text(
        "{# version: 7-custom #}\nAsk about {{ chunk_text }}", encoding="utf-8"
    )
    templates = synth_templates(tmp_path)
    assert templates.get("question").ref == "question@7-custom"
    assert templates.get("question").render(chunk_text="x") == "Ask about x"
    assert templates.get("answer").origin.startswith("ragtune.synth")  # not overridden: packaged


def test_a_template_without_version_or_variables_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "question.j2").write_text("Ask {{ chunk_text }}", encoding="utf-8")
    with pytest.raises(ConfigError, match="version"):
        synth_templates(tmp_path).get("question")
    (tmp_path / "answer.j2").write_text("{# version: 1 #}{{ nope }}", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot render"):
        synth_templates(tmp_path).get("answer").render(question="q")
    with pytest.raises(ConfigError, match="not a folder"):
        synth_templates(tmp_path / "missing")


# -- filters ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "not in the context",
        "The answer is not found in the provided context.",
        "I cannot answer that from the passage.",
        "I'm sorry, but I don't know.",
        "The context does not mention dosages.",
        "There is insufficient information to say.",
        "As an AI, I am unable to answer.",
        "The answer is not in the answer text.",
    ],
)
def test_refusals_are_recognised(text: str) -> None:
    assert filters.refusal_phrase(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "Panic attacks peak within minutes and cannot be predicted in panic disorder.",
        "Exposure therapy is not a quick fix, but it works for most people.",
        "Symptoms must not be explained by a medical condition.",
    ],
)
def test_ordinary_answers_are_not_refusals(text: str) -> None:
    assert filters.refusal_phrase(text) is None


def test_questions_pointing_at_their_source_are_recognised() -> None:
    assert filters.source_reference("According to the passage, what is panic?") == "the passage"
    assert filters.source_reference("What does this text say about sleep?") == "this text"
    assert filters.source_reference("Based on the provided context, why?") is not None
    assert filters.source_reference("How is a text message used in therapy?") is None
    assert filters.source_reference("What is a panic attack?") is None


def test_statements_are_not_questions() -> None:
    assert filters.is_question("A 30-year-old has sudden chest pain and fear. What is the likely cause?")
    assert filters.is_question("Describe the first-line treatment of insomnia.")
    assert not filters.is_question("The question is unclear.")
    assert not filters.is_question("Panic disorder")


def test_length_bounds() -> None:
    assert filters.length_problem("Why?", 15, 100) == filters.TOO_SHORT
    assert filters.length_problem("x" * 101, 15, 100) == filters.TOO_LONG
    assert filters.length_problem("  What is a panic attack?  ", 15, 100) is None


def test_duplicates_keep_the_first_and_compare_with_kept_items_only() -> None:
    texts = ["What is panic?", "what is PANIC ?!", "How is sleep treated?", "Sleep treatment?", "Unrelated"]
    a, b = np.radians(22), np.radians(44)  # cos 22° = 0.927: items 2~3 and 3~4 are near, 2~4 are not
    vectors = np.stack(
        [
            unit(1, 0, 0),
            unit(0.2, 1, 0),
            unit(0, 0, 1),
            unit(0, np.sin(a), np.cos(a)),
            unit(0, np.sin(b), np.cos(b)),
        ]
    )
    found = filters.find_duplicates(texts, vectors, threshold=0.92)
    assert found[0] is None and found[2] is None
    assert found[1] == filters.DuplicateOf(filters.DUPLICATE, 0, 1.0)  # exact (normalised), despite vectors
    assert found[3] is not None and found[3].reason == filters.NEAR_DUPLICATE and found[3].index == 2
    # item 4 is close to item 3 only, which was dropped: compared with kept items, it stays
    assert float(vectors[4] @ vectors[3]) >= 0.92 and found[4] is None


def test_groundedness_and_relevance_scores() -> None:
    context = ["A panic attack is a sudden surge of intense fear that peaks within minutes."]
    grounded = "A panic attack is a surge of intense fear peaking within minutes."
    assert filters.lexical_support(grounded, context) > 0.8
    assert filters.lexical_support("The Eiffel Tower was completed in 1889.", context) == 0.0
    assert filters.lexical_support("", context) == 0.0
    same, other = unit(1, 0), unit(0, 1)
    assert filters.local_groundedness(grounded, context, same, np.stack([same])) > 0.9
    assert filters.local_groundedness("The Eiffel Tower.", context, other, np.stack([same])) == 0.0
    assert filters.judge_groundedness(5) == 1.0 and filters.judge_groundedness(3) == 0.5
    assert filters.judge_groundedness(1) == 0.0


# -- split ------------------------------------------------------------------------------------------


def test_split_keeps_source_chunks_and_near_duplicates_on_one_side() -> None:
    items = [SplitItem(f"i{n}", "A" if n < 10 else "B", f"c{n // 2}") for n in range(20)]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[7] = vectors[12]  # a near-duplicate pair across categories and chunks
    held = choose_held_out([(i.category, i.unit("chunks")) for i in items], "chunks", 0.3, seed=0)
    is_eval = split_held(items, [vectors], 0.92, "chunks", held)
    side = dict(zip([i.item_id for i in items], is_eval, strict=True))
    for n in range(0, 20, 2):
        assert side[f"i{n}"] == side[f"i{n + 1}"]  # one source chunk, one side
    assert side["i7"] == side["i12"]
    assert sum(is_eval[:10]) >= 2 and sum(is_eval[10:]) >= 2  # stratified: each category has eval items
    assert not all(is_eval[:10]) and not all(is_eval[10:])
    assert all(side[i.item_id] for i in items if i.unit("chunks") in held)
    assert choose_held_out([(i.category, i.unit("chunks")) for i in items], "chunks", 0.3, seed=0) == held


def test_split_holds_out_a_share_even_of_tiny_categories() -> None:
    assert choose_held_out([("A", "chunk:c0")], "chunks", 0.9, 0) == frozenset()  # never every unit
    assert choose_held_out([], "chunks", 0.2, 0) == frozenset()
    # seven categories of one chunk each (what a weak generator leaves): still one held-out chunk
    sources = [(f"C{n}", f"chunk:c{n}") for n in range(7)]
    assert len(choose_held_out(sources, "chunks", 0.2, 0)) == 1
    assert choose_held_out(sources, "chunks", 0.0, 0) == frozenset()


def test_an_empty_eval_side_is_said_out_loud(caplog: pytest.LogCaptureFixture) -> None:
    kept = [SplitItem("i0", "A", "c0"), SplitItem("i1", "A", "c1")]
    with caplog.at_level("WARNING"):
        assert split_held(kept, [np.eye(2, dtype=np.float32)], 0.92, "chunks", {"chunk:c9"}) == [False, False]
    assert "no item about the 1 held-out chunks was kept" in caplog.text


# -- replies, config, invariant ------------------------------------------------------------------


def test_citations_resolve_ids_prefixes_and_positions() -> None:
    contexts = [chunk("d", ["A"], "one"), chunk("d", ["A"], "two")]
    first, second = contexts[0].chunk_id, contexts[1].chunk_id
    assert resolve_citations([first, f"[{second[:8]}]", "2", "9", "zzzzzzzz", first], contexts) == [
        first,
        second,
    ]
    assert AnswerReply.model_validate({"answer": "a", "citations": 2}).citations == ["2"]
    assert AnswerReply.model_validate({"answer": "a", "citations": None}).citations == []


def test_synth_config_bounds_and_modes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"synth\.max_answer_chars"):
        build_config({"synth": {"min_answer_chars": 50, "max_answer_chars": 10}})
    with pytest.raises(ConfigError, match=r"synth\.mode"):
        build_config({"synth": {"mode": "other"}})
    local = build_config({})
    assert generator_endpoint(local).base_url is None
    served = build_config({"llm": {"generator": {"base_url": "http://x/v1", "model": "m"}}})
    assert generator_endpoint(served) == served.llm.generator
    assert isinstance(generator_endpoint(served), LLMEndpoint)


def test_the_slot_invariant_is_enforced() -> None:
    doc = Document(doc_id="d", source_uri="x", sha256="0" * 64, title="T", parser="text", sections=[])
    slots = plan_slots(build_categories([doc], [chunk("d", ["T"], "text")], 1), 2, ["a", "b"], 0)
    candidates = [Candidate(slot) for slot in slots]
    with pytest.raises(SynthInvariantError, match="1 kept \\+ 0 rejected != 2 slots"):
        _check_every_slot_accounted(candidates, candidates[:1], [])
