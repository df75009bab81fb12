"""Extractive answers and the faithfulness filter in the synthesis stage, against the fake server."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ragtune.core.facts import text_sentences
from ragtune.core.records import Chunk, read_jsonl
from ragtune.synth import run_synth
from ragtune.synth.extractive import (
    ChoiceReply,
    answerable,
    compose,
    model_pick,
    retrieval_pick,
    with_antecedents,
)
from ragtune.synth.faithfulness import SourceSentence
from ragtune.synth.stage import resolve_answer_mode
from tests.llm.fake_openai import FakeOpenAI
from tests.synth.conftest import BuiltCorpus, make_config
from tests.synth.helpers import assert_every_slot_accounted, read_lines
from tests.synth.responder import kind_of

CATEGORIES = 3


def kept_items(out: Path) -> list[dict]:
    return read_lines(out / "train.jsonl") + read_lines(out / "eval.jsonl")


def test_auto_mode_extracts_for_the_local_model_and_generates_for_an_endpoint(
    synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    assert resolve_answer_mode(make_config(tmp_path)) == "extractive"
    assert resolve_answer_mode(make_config(tmp_path, synth_server.endpoint())) == "generate"
    assert resolve_answer_mode(make_config(tmp_path, answer_mode="generate")) == "generate"


def test_retrieval_pick_takes_the_best_and_those_close_to_it_in_source_order() -> None:
    scores = np.array([0.2, 0.9, 0.85, 0.5, 0.82])
    assert retrieval_pick(scores, max_sentences=3, margin=0.1) == [1, 2, 4]
    assert retrieval_pick(scores, max_sentences=2, margin=0.1) == [1, 2]
    assert retrieval_pick(scores, max_sentences=3, margin=0.01) == [1]
    assert retrieval_pick(np.zeros(0), 3, 0.1) == []
    sources = [SourceSentence("b", 0, "B0."), SourceSentence("a", 1, "A1."), SourceSentence("a", 0, "A0.")]
    extract = compose(sources, [0, 1, 2], chunk_order=["a", "b"])
    assert (extract.answer, extract.citations) == ("A0. A1. B0.", ["a", "b"])
    # the model's numbers index the shortlist; out of range and repeats are dropped
    assert model_pick(ChoiceReply(sentences=[2, 9, 2, 1]), listed=[4, 0, 3], max_sentences=3) == [0, 4]
    assert ChoiceReply.model_validate({"sentences": ["2", "x", 3]}).sentences == [2, 3]


def test_only_complete_standalone_sentences_are_quoted() -> None:
    def ok(text: str) -> bool:
        return answerable(SourceSentence("c", 0, text))

    assert ok("Insomnia is difficulty falling asleep or staying asleep.")
    assert not ok("and staying asleep despite the opportunity to sleep.")  # a chunk cut it
    assert not ok("Insomnia is difficulty falling asleep or staying")
    assert not ok("This chapter concentrates on ADHD, one of the most diagnosed conditions.")
    assert not ok("It is a paraphrase written for the ragtune example corpus.")
    sources = [
        SourceSentence("c", 0, "CBT for insomnia is the first-line treatment."),
        SourceSentence("c", 1, "It combines stimulus control and sleep restriction."),
        SourceSentence("d", 4, "They often begin in childhood."),  # its antecedent is not quoted
    ]
    assert with_antecedents(sources, [1, 2]) == [0, 1]
    assert with_antecedents(sources, [0, 1]) == [0, 1]


def test_extractive_answers_are_sentences_of_their_cited_chunks(
    built_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    config = make_config(tmp_path, synth_server.endpoint(), answer_mode="extractive")
    out = tmp_path / "out"
    report = run_synth(config, built_corpus.documents, built_corpus.index_dir, out)

    assert_every_slot_accounted(out, report, expected_slots=CATEGORIES * 4)
    assert report.answer_mode == "extractive" and report.kept >= 6
    assert not [r for r in synth_server.chat_requests() if kind_of(r.body) == "answer"]  # no answer written
    assert report.faithfulness_checked >= report.kept and report.faithfulness_pass_rate == 1.0
    # the same question extracts the same answer: only question-stage rejections are retried
    assert {key.split("/")[0] for key in report.retried_by_reason} <= {"question", "dedup"}
    doc_of = {c.chunk_id: c.doc_id for c in read_jsonl(built_corpus.index_dir / "chunks.jsonl", Chunk)}
    for item in kept_items(out):
        context = {c["chunk_id"]: c["text"] for c in item["context"]}
        provenance = item["provenance"]
        source_doc = provenance["doc_id"]
        assert provenance["answer_mode"] == "extractive"
        support = provenance["support"]
        for entry in support:
            assert entry["supported"] and entry["similarity"] > 0.99 and entry["sentence"] == entry["support"]
            assert entry["sentence"] in text_sentences(context[entry["chunk_id"]])
            assert entry["missing_terms"] == entry["contradicted_terms"] == []
            assert doc_of[entry["chunk_id"]] == source_doc  # quoted only from the question's document
        assert " ".join(s["sentence"] for s in support) == item["answer"]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Answers: `extractive`" in card and f"{report.faithfulness_pass_rate:.0%}" in card


def test_extractive_model_choice_picks_among_the_best_sentences(
    single_doc_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        synth_server.endpoint(),
        answer_mode="extractive",
        extractive_choice="model",
        questions_per_category=3,
        question_types=["definition", "criteria", "treatment"],
    )
    out = tmp_path / "out"
    report = run_synth(config, single_doc_corpus.documents, single_doc_corpus.index_dir, out)
    picks = [r for r in synth_server.chat_requests() if kind_of(r.body) == "extract"]
    assert len(picks) == report.generated - report.rejected_by_stage.get("question", 0)
    assert report.templates["extract"] == "extract@1"
    for item in kept_items(out):
        # the fake model picks one sentence: the second best scored
        (entry,) = item["provenance"]["support"]
        assert entry["sentence"] == item["answer"] and entry["supported"]


def test_an_unfaithful_answer_is_rejected_naming_its_sentence(
    single_doc_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        synth_server.endpoint(),
        question_types=["ok", "negated"],
        questions_per_category=2,
        max_chunks_per_category=1,
    )
    out = tmp_path / "out"
    report = run_synth(config, single_doc_corpus.documents, single_doc_corpus.index_dir, out)

    assert_every_slot_accounted(out, report, expected_slots=2)
    (rejected,) = read_lines(out / "rejected.jsonl")
    assert (rejected["stage"], rejected["reason"]) == ("faithfulness", "unsupported_claim")
    first = rejected["answer"].split(". ")[0]
    assert " not " in first and rejected["detail"].startswith("sentence 1 ")
    assert first in rejected["detail"] and "not in the source: not" in rejected["detail"]
    support = rejected["provenance"]["support"]
    assert support[0]["supported"] is False and support[0]["missing_terms"] == ["not"]
    assert rejected["provenance"]["answer_mode"] == "generate" and rejected["attempts"] == 2  # retried once
    (kept,) = kept_items(out)
    assert kept["provenance"]["answer_mode"] == "generate"
    assert all(s["supported"] for s in kept["provenance"]["support"])
    assert report.faithfulness_checked == 2 and report.faithfulness_passed == 1
    assert report.faithfulness_pass_rate == 0.5 and report.rejected_by_reason == {"unsupported_claim": 1}


def test_the_judges_entailment_verdict_rejects_what_the_terms_cannot_see(
    single_doc_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        synth_server.endpoint(),
        question_types=["ok", "doubtful"],
        questions_per_category=2,
        max_chunks_per_category=1,
        retry_rejected=False,
    )
    config.llm.judge = synth_server.endpoint(model="fake-judge")
    out = tmp_path / "out"
    report = run_synth(config, single_doc_corpus.documents, single_doc_corpus.index_dir, out)

    assert report.faithfulness_method == "terms+embedding+judge:openai:fake-judge"
    (rejected,) = read_lines(out / "rejected.jsonl")
    assert (rejected["stage"], rejected["reason"]) == ("faithfulness", "unsupported_claim")
    (verdict,) = rejected["provenance"]["support"]
    assert verdict["judge"] == "not entailed" and verdict["similarity"] >= 0.75
    assert verdict["missing_terms"] == verdict["contradicted_terms"] == []
    assert "judge: not entailed" in rejected["detail"] and "Mistakenly," in rejected["detail"]
    (kept,) = kept_items(out)
    assert [s["judge"] for s in kept["provenance"]["support"]] == ["entailed"] * len(
        kept["provenance"]["support"]
    )
