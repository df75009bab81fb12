"""The synthesis stage end to end against the fake OpenAI server (see ``responder.py``)."""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ragtune.core.records import Chunk, read_jsonl, sha256_hex, write_jsonl
from ragtune.index import run_index
from ragtune.synth import run_synth
from ragtune.synth.prompts import synth_templates
from tests.llm.fake_openai import FakeOpenAI
from tests.synth.conftest import BuiltCorpus, make_config, make_documents
from tests.synth.helpers import assert_every_slot_accounted, read_lines
from tests.synth.responder import (
    OFFTOPIC_QUESTION,
    context_ids,
    first_message,
    kind_of,
    passage_of,
    question_of,
    synth_responder,
)

CATEGORIES = 3  # documents in the sample corpus, one category each at toc_depth 1


def test_dataset_files_load_and_carry_provenance(
    built_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    from datasets import load_dataset

    config = make_config(tmp_path, synth_server.endpoint())
    out = tmp_path / "out"
    report = run_synth(config, built_corpus.documents, built_corpus.index_dir, out)

    assert_every_slot_accounted(out, report, expected_slots=CATEGORIES * 4)
    assert report.kept >= 8 and report.train >= 1 and report.eval >= 1
    assert set(report.per_category) == {"Anxiety Disorders", "Depressive Disorders", "Sleep-Wake Disorders"}

    data = load_dataset(
        "json",
        data_files={"train": str(out / "train.jsonl"), "eval": str(out / "eval.jsonl")},
        cache_dir=str(tmp_path / "hf"),
    )
    assert (data["train"].num_rows, data["eval"].num_rows) == (report.train, report.eval)
    assert [m["role"] for m in data["train"][0]["messages"]] == ["system", "user", "assistant"]
    # the card's YAML lets the folder itself be loaded too
    folder = load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    assert set(folder) == {"train", "eval"}

    chunks = {c.chunk_id: c for c in read_jsonl(built_corpus.index_dir / "chunks.jsonl", Chunk)}
    templates = synth_templates().refs() | {n: synth_templates().get(n).ref for n in ("question", "answer")}
    for item in read_lines(out / "train.jsonl") + read_lines(out / "eval.jsonl"):
        provenance = item["provenance"]
        source = chunks[provenance["source_chunk_id"]]
        assert provenance["doc_id"] == source.doc_id and provenance["section_path"] == source.section_path
        assert item["category"] == source.section_path[0]
        assert provenance["context_chunk_ids"] == [c["chunk_id"] for c in item["context"]]
        assert len(item["context"]) == 3
        for context in item["context"]:
            assert (
                context["sha256"]
                == sha256_hex(chunks[context["chunk_id"]].text)
                == sha256_hex(context["text"])
            )
        assert provenance["generator_model"] == "openai:fake-model"
        assert provenance["question_template"] == templates["question"]
        assert provenance["answer_template"] == templates["answer"]
        assert item["messages"][1]["content"] == item["question"]
        assert item["messages"][2]["content"] == item["answer"]

    # no source chunk and no near-duplicate question on both sides of the split
    train_chunks = {i["provenance"]["source_chunk_id"] for i in read_lines(out / "train.jsonl")}
    eval_chunks = {i["provenance"]["source_chunk_id"] for i in read_lines(out / "eval.jsonl")}
    assert not train_chunks & eval_chunks

    alpaca = read_lines(out / "train.alpaca.jsonl")
    assert [row["instruction"] for row in alpaca] == [i["question"] for i in read_lines(out / "train.jsonl")]
    assert set(alpaca[0]) == {"instruction", "input", "output"}
    assert len(read_lines(out / "eval.alpaca.jsonl")) == report.eval

    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"| train | {report.train} |" in card and "| Anxiety Disorders | 3 | 4 |" in card
    assert "local:lexical+embedding" in card and "openai:fake-model" in card
    assert synth_templates().get("question").ref in card and 'load_dataset("json"' in card
    assert "whitespace-separated words" in card and f"{report.cache_misses} misses" in card
    assert json.loads((out / "synth_report.json").read_text(encoding="utf-8")) == json.loads(
        report.model_dump_json()
    )


def test_filters_reject_crafted_items_with_their_reasons(
    single_doc_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    types = [
        "ok",
        "dup",
        "neardup",
        "short",
        "long",
        "refuse",
        "ungrounded",
        "offtopic",
        "garbage",
        "mentions",
        "statement",
    ]
    config = make_config(
        tmp_path,
        synth_server.endpoint(),
        question_types=types,
        questions_per_category=len(types),
        max_chunks_per_category=1,  # every type asked once of the same chunk
        retry_rejected=False,  # one attempt each: the retry is tested below
    )
    out = tmp_path / "out"
    report = run_synth(config, single_doc_corpus.documents, single_doc_corpus.index_dir, out)
    assert_every_slot_accounted(out, report, expected_slots=len(types))

    rejected = {r["question_type"]: r for r in read_lines(out / "rejected.jsonl")}
    expected = {
        "short": ("question", "too_short"),
        "long": ("question", "too_long"),
        "garbage": ("question", "malformed"),
        "mentions": ("question", "mentions_source"),
        "statement": ("question", "not_a_question"),
        "refuse": ("answer", "refusal"),
        "ungrounded": ("grounding", "ungrounded"),
        "offtopic": ("relevance", "irrelevant"),
    }
    for qtype, (stage, reason) in expected.items():
        assert (rejected[qtype]["stage"], rejected[qtype]["reason"]) == (stage, reason), rejected[qtype]
    assert "Sure! Here it is" not in (rejected["garbage"]["raw"] or "")  # the model's own words, read back
    assert "{what about" in rejected["garbage"]["raw"]
    assert rejected["refuse"]["answer"].startswith("I cannot") and rejected["refuse"]["detail"]
    assert rejected["ungrounded"]["scores"]["groundedness"] < 0.5
    assert rejected["offtopic"]["question"] == OFFTOPIC_QUESTION
    assert rejected["offtopic"]["scores"]["relevance"] < 0.3

    # of the three identical or near-identical questions one is kept, the others point at it
    kept = read_lines(out / "train.jsonl") + read_lines(out / "eval.jsonl")
    assert len(kept) == 1 and kept[0]["question_type"] in {"ok", "dup", "neardup"}
    duplicates = [r for r in rejected.values() if r["stage"] == "dedup"]
    assert len(duplicates) == 2 and {r["reason"] for r in duplicates} <= {"duplicate", "near_duplicate"}
    kept_slot = f"{kept[0]['provenance']['source_chunk_id']}:{kept[0]['question_type']}:0"
    assert all(r["duplicate_of"] == kept_slot for r in duplicates)
    # duplicates are dropped before answering: no answer request for them
    answered = [question_of(first_message(r.body)) for r in synth_server.chat_requests()]
    # the five broken questions, and two of the three (near-)identical ones
    rejected_before_answering = {"garbage", "short", "long", "mentions", "statement", "dup", "neardup"}
    assert sum(q is not None for q in answered) == len(types) - len(rejected_before_answering)


def test_repairs_and_one_retry_turn_rejections_into_items_and_are_counted(
    single_doc_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    types = ["ok", "leadin", "answered", "rambling", "flaky", "refuse", "mentions", "garbage"]
    config = make_config(
        tmp_path,
        synth_server.endpoint(temperature=0.7),  # sampled: another seed may write another question
        question_types=types,
        questions_per_category=len(types),
        max_chunks_per_category=1,
    )
    out = tmp_path / "out"
    report = run_synth(config, single_doc_corpus.documents, single_doc_corpus.index_dir, out)
    assert_every_slot_accounted(out, report, expected_slots=len(types))  # kept + rejected = generated

    kept = {i["question_type"]: i for i in read_lines(out / "train.jsonl") + read_lines(out / "eval.jsonl")}
    rejected = {r["question_type"]: r for r in read_lines(out / "rejected.jsonl")}
    assert set(kept) == {"ok", "leadin", "answered", "rambling", "flaky"}
    assert set(rejected) == {"refuse", "mentions", "garbage"}

    assert kept["leadin"]["question"].startswith("How are these told apart")
    assert kept["leadin"]["question"].endswith("?")
    assert kept["leadin"]["provenance"]["repairs"] == ["question:stripped_lead_in", "question:question_mark"]
    assert kept["answered"]["question"].endswith("?") and "chapter" not in kept["answered"]["question"]
    assert kept["answered"]["provenance"]["repairs"] == ["question:cut_after_question"]
    rambling = kept["rambling"]
    assert rambling["provenance"]["repairs"] == [
        "answer:stripped_lead_in",
        "answer:dropped_repeated_sentence",
        "answer:closed_truncated_sentence",
    ]
    assert not rambling["answer"].startswith("Based on") and rambling["answer"].endswith(".")
    assert rambling["messages"][2]["content"] == rambling["answer"]  # the repaired text is what trains
    assert kept["ok"]["provenance"]["repairs"] == [] and kept["ok"]["provenance"]["attempts"] == 1

    # the flaky slot failed once (malformed), was retried with another seed and kept
    flaky = kept["flaky"]["provenance"]
    assert (flaky["attempts"], flaky["retry_of"]) == (2, "question/malformed")
    # the rest were retried and rejected again, with their second reason; garbage stays garbage
    assert all(r["attempts"] == 2 for r in rejected.values())
    assert rejected["refuse"]["retry_of"] == "answer/refusal" and rejected["refuse"]["reason"] == "refusal"
    assert (
        rejected["mentions"]["reason"] == "mentions_source" and rejected["garbage"]["reason"] == "malformed"
    )

    assert report.kept == 5 and report.kept_share == round(5 / len(types), 4)
    assert (report.retried, report.kept_after_retry) == (4, 1)
    assert report.retried_by_reason == {
        "question/malformed": 2,
        "question/mentions_source": 1,
        "answer/refusal": 1,
    }
    assert report.items_repaired == 3
    assert (
        report.repairs["question:stripped_lead_in"] == 1
        and report.repairs["answer:closed_truncated_sentence"] == 1
    )
    # a retry of a question asks again with another seed; a retry of an answer keeps the question
    questions = Counter(
        _question_type(r.body) for r in synth_server.chat_requests() if kind_of(r.body) == "question"
    )
    assert questions["flaky"] == 2 and questions["refuse"] == 1 and questions["ok"] == 1


def test_without_repairs_or_retry_the_same_slots_are_rejected(
    single_doc_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    types = ["ok", "leadin", "rambling", "flaky"]
    config = make_config(
        tmp_path,
        synth_server.endpoint(),
        question_types=types,
        questions_per_category=len(types),
        max_chunks_per_category=1,
        repairs=False,
        retry_rejected=False,
    )
    out = tmp_path / "out"
    report = run_synth(config, single_doc_corpus.documents, single_doc_corpus.index_dir, out)
    assert_every_slot_accounted(out, report, expected_slots=len(types))
    rejected = {r["question_type"]: r["reason"] for r in read_lines(out / "rejected.jsonl")}
    assert rejected == {"leadin": "mentions_source", "rambling": "mentions_source", "flaky": "malformed"}
    assert (report.kept, report.retried, report.items_repaired, report.repairs) == (1, 0, 0, {})


def _question_type(body: dict[str, Any]) -> str | None:
    match = re.search(r"Write one (.+?) question", first_message(body))
    return match.group(1) if match and kind_of(body) in {"question", "repair"} else None


def test_every_slot_ends_kept_or_rejected_under_faults(
    built_corpus: BuiltCorpus, fast_backoff: None, tmp_path: Path
) -> None:
    others = itertools.count()
    lock = threading.Lock()

    def plan(index: int, body: dict[str, Any]) -> str | None:
        qtype = _question_type(body)
        if qtype == "definition":
            return "server_error"  # fails on every retry: an LLM failure
        if qtype == "criteria":
            return "malformed"  # not JSON, also on the repair request
        with lock:
            turn = next(others)
        if turn % 5 == 1:
            return "rate_limit"  # 429 with Retry-After, then retried
        if turn % 5 == 3:
            return "hang"  # times out on the client, then retried
        return None  # the rates below: more transient faults at random

    rates = {"rate_limit": 0.1, "server_error": 0.1, "malformed": 0.05}
    with FakeOpenAI(
        responder=synth_responder, plan=plan, rates=rates, retry_after_s=0.01, hang_s=1.0
    ) as server:
        endpoint = server.endpoint(timeout_s=0.4, max_retries=3, concurrency=4)
        config = make_config(
            tmp_path, endpoint, question_types=["definition", "criteria", "differential", "treatment"]
        )
        config.synth.questions_per_category = 6
        out = tmp_path / "out"
        report = run_synth(config, built_corpus.documents, built_corpus.index_dir, out)
        actions = Counter(r.action for r in server.chat_requests())

    assert_every_slot_accounted(out, report, expected_slots=CATEGORIES * 6)
    assert actions["rate_limit"] and actions["hang"]  # the faults did happen
    assert report.llm_stats["generator"]["retries"] > 0
    rejected = read_lines(out / "rejected.jsonl")
    failures = [r for r in rejected if r["question_type"] == "definition"]
    assert failures and all(r["reason"] == "llm_failure" and "HTTP 500" in r["detail"] for r in failures)
    malformed = [r for r in rejected if r["question_type"] == "criteria"]
    assert malformed and all(r["reason"] == "malformed" and r["stage"] == "question" for r in malformed)
    assert all("Sure! Here it is" in (r["raw"] or "") for r in malformed)
    assert report.kept >= 1


def test_a_rerun_makes_no_call_and_writes_the_same_dataset(
    built_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    config = make_config(tmp_path, synth_server.endpoint())
    first = run_synth(config, built_corpus.documents, built_corpus.index_dir, tmp_path / "first")
    calls = synth_server.chat_count
    assert calls == first.cache_misses > 0 and first.cache_hits == 0
    second = run_synth(config, built_corpus.documents, built_corpus.index_dir, tmp_path / "second")
    assert synth_server.chat_count == calls  # nothing asked again
    assert (second.cache_hits, second.cache_misses) == (first.cache_misses, 0)
    assert second.ledger["generator"]["calls"] == 0
    for name in ("train.jsonl", "eval.jsonl", "rejected.jsonl", "train.alpaca.jsonl"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_a_changed_document_reasks_only_its_own_chunks(
    corpus_copy: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    config = make_config(tmp_path, synth_server.endpoint())
    run_synth(config, corpus_copy.documents, corpus_copy.index_dir, tmp_path / "before")
    before = list(synth_server.chat_requests())
    contexts_before = {
        question_of(first_message(r.body)): context_ids(first_message(r.body))
        for r in before
        if kind_of(r.body) == "answer"
    }
    old_chunks = read_jsonl(corpus_copy.index_dir / "chunks.jsonl", Chunk)

    documents = make_documents()
    changed = documents[1]  # Depressive Disorders
    section = changed.sections[2]
    section.text = "Sleep, appetite and energy change: early waking, weight loss and heavy limbs are typical."
    write_jsonl(corpus_copy.documents, documents)
    run_index(make_config(tmp_path), corpus_copy.documents, corpus_copy.root / "reindexed")
    chunks = read_jsonl(corpus_copy.root / "reindexed" / "chunks.jsonl", Chunk)
    new_chunk = next(c for c in chunks if c.text == section.text)
    old_chunk = next(
        c for c in old_chunks if c.doc_id == changed.doc_id and c.section_id == section.section_id
    )
    changed_texts = {c.text for c in chunks if c.doc_id == changed.doc_id}

    synth_server.reset()
    report = run_synth(config, corpus_copy.documents, corpus_copy.root / "reindexed", tmp_path / "after")
    after = synth_server.chat_requests()
    assert report.cache_hits > 0

    questions = [passage_of(first_message(r.body)) for r in after if kind_of(r.body) == "question"]
    assert section.text in questions  # the changed chunk was asked about
    assert all(p in changed_texts for p in questions)  # and only chunks of the changed document
    for request in after:
        if kind_of(request.body) != "answer":
            continue
        prompt = first_message(request.body)
        question, now = question_of(prompt), context_ids(prompt)
        if question not in contexts_before:
            continue  # a new question (from the changed document)
        # an old question is answered again only when its context changed with the document
        assert now != contexts_before[question]
        assert new_chunk.chunk_id in now or old_chunk.chunk_id in contexts_before[question]


def test_a_spent_budget_rejects_the_rest_cleanly(
    built_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    endpoint = synth_server.endpoint(budget_tokens=1, concurrency=2)
    config = make_config(tmp_path, endpoint)
    report = run_synth(config, built_corpus.documents, built_corpus.index_dir, tmp_path / "out")
    assert_every_slot_accounted(tmp_path / "out", report, expected_slots=CATEGORIES * 4)
    assert report.rejected_by_reason.get("budget_exhausted", 0) >= CATEGORIES * 4 - 2
    assert report.ledger["generator"]["exhausted"] is True
    assert synth_server.chat_count <= 2  # requests already in flight when the budget ran out


def test_an_llm_judge_decides_groundedness_when_configured(
    single_doc_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    packaged = synth_templates().get("question")
    source = Path(packaged.origin).name  # question.j2
    from importlib import resources

    text = resources.files("ragtune.synth").joinpath("templates", source).read_text(encoding="utf-8")
    (templates / source).write_text(
        text.replace(f"{{# version: {packaged.version} #}}", f"{{# version: {packaged.version}-test #}}"),
        encoding="utf-8",
    )

    config = make_config(
        tmp_path,
        synth_server.endpoint(),
        question_types=["ok", "ungrounded"],
        questions_per_category=2,
        max_chunks_per_category=1,
        templates_dir=str(templates),
    )
    config.llm.judge = synth_server.endpoint(model="fake-judge")
    out = tmp_path / "out"
    report = run_synth(config, single_doc_corpus.documents, single_doc_corpus.index_dir, out)

    assert_every_slot_accounted(out, report, expected_slots=2)
    assert report.groundedness_method == "judge:openai:fake-judge"
    assert "judge" in report.ledger and report.ledger["judge"]["calls"] == 2
    (rejected,) = read_lines(out / "rejected.jsonl")
    assert (rejected["question_type"], rejected["reason"]) == ("ungrounded", "ungrounded")
    assert "judge score 1/5" in rejected["detail"]
    (kept,) = read_lines(out / "train.jsonl") + read_lines(out / "eval.jsonl")
    assert kept["provenance"]["question_template"] == f"question@{packaged.version}-test"
    assert "judge_grounded@1" in (out / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("depth", [2])
def test_deeper_toc_gives_one_category_per_section(
    single_doc_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path, depth: int
) -> None:
    config = make_config(tmp_path, synth_server.endpoint(), toc_depth=depth, questions_per_category=1)
    report = run_synth(config, single_doc_corpus.documents, single_doc_corpus.index_dir, tmp_path / "out")
    assert set(report.per_category) == {
        "Anxiety Disorders › Overview",
        "Anxiety Disorders › Panic attacks",
        "Anxiety Disorders › Approaches to care",
    }
    assert report.generated == 3


def test_shards_partition_the_slots_and_warm_the_cache_for_the_merge(
    built_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    """The cluster fan-out: disjoint shards make the slots' calls; the merge run makes none of them."""
    from ragtune.synth.stage import in_shard

    config = make_config(tmp_path, synth_server.endpoint())
    generated = []
    rejected_slots: list[set[str]] = []
    for index in range(3):
        out = tmp_path / f"shard-{index}"
        report = run_synth(config, built_corpus.documents, built_corpus.index_dir, out, shard=(index, 3))
        generated.append(report.generated)
        rejected_slots.append({r["slot_id"] for r in read_lines(out / "rejected.jsonl")})
    calls_after_shards = synth_server.chat_count

    merged = run_synth(config, built_corpus.documents, built_corpus.index_dir, tmp_path / "merged")
    # every slot's call was made by a shard; the merge adds only the knowledge set's rewordings,
    # which need the final training split
    merge_calls = synth_server.chat_requests()[calls_after_shards:]
    assert {kind_of(r.body) for r in merge_calls} == {"paraphrase"}
    assert (
        merged.cache_misses
        == len(merge_calls)
        == merged.eval_knowledge + sum(merged.knowledge_rejected_by_reason.values())
    )
    assert merged.cache_hits > 0
    assert not any((tmp_path / f"shard-{i}" / "eval_knowledge.jsonl").exists() for i in range(3))
    assert sum(generated) == merged.generated == CATEGORIES * 4  # the shards cover every slot once
    assert all(not (rejected_slots[i] & rejected_slots[j]) for i in range(3) for j in range(i + 1, 3))
    assert sum(1 for g in generated if g) >= 2  # the hash really spreads the slots
    assert in_shard("any-slot", None)
    with pytest.raises(ValueError, match="shard must be"):
        run_synth(config, built_corpus.documents, built_corpus.index_dir, tmp_path / "bad", shard=(3, 3))


def test_held_out_documents_stay_out_of_training_answers(
    built_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    """synth.holdout documents: eval asks about whole documents no training answer was written from."""
    config = make_config(tmp_path, synth_server.endpoint(), holdout="documents", eval_fraction=0.3)
    out = tmp_path / "out"
    report = run_synth(config, built_corpus.documents, built_corpus.index_dir, out)
    assert report.train >= 1 and report.eval >= 1
    chunks = {c.chunk_id: c for c in read_jsonl(built_corpus.index_dir / "chunks.jsonl", Chunk)}
    train, evaluation = read_lines(out / "train.jsonl"), read_lines(out / "eval.jsonl")
    eval_docs = {i["provenance"]["doc_id"] for i in evaluation}
    assert eval_docs and not eval_docs & {i["provenance"]["doc_id"] for i in train}
    train_context_docs = {chunks[c].doc_id for i in train for c in i["provenance"]["context_chunk_ids"]}
    assert not train_context_docs & eval_docs  # retrieval behind training answers never reached them
    eval_context_docs = {chunks[c].doc_id for i in evaluation for c in i["provenance"]["context_chunk_ids"]}
    assert eval_context_docs <= eval_docs  # and eval references rest only on held-out text


def test_the_knowledge_eval_set_rewords_training_questions_and_keeps_their_answers(
    built_corpus: BuiltCorpus, synth_server: FakeOpenAI, tmp_path: Path
) -> None:
    config = make_config(tmp_path, synth_server.endpoint(), knowledge_eval_items=100)
    out = tmp_path / "out"
    report = run_synth(config, built_corpus.documents, built_corpus.index_dir, out)
    train = {i["item_id"]: i for i in read_lines(out / "train.jsonl")}
    knowledge = read_lines(out / "eval_knowledge.jsonl")
    assert report.eval_knowledge == len(knowledge) >= 1
    rejected = report.knowledge_rejected_by_reason
    assert rejected.get("near_duplicate_wording", 0) >= 1  # "Which features ..." repeated, one word added
    assert len(knowledge) + sum(rejected.values()) == len(train)  # every training item was asked about
    for item in knowledge:
        original = train[item["provenance"]["paraphrase_of"]]
        assert item["answer"] == original["answer"] and item["context"] == original["context"]
        assert item["question"] != original["question"] and item["question"].startswith("Could you explain")
        assert item["messages"][1]["content"] == item["question"]
        assert item["messages"][2]["content"] == original["answer"]
        assert item["provenance"]["question_template"] == synth_templates().get("paraphrase").ref
    assert report.files["eval_knowledge"] == "eval_knowledge.jsonl"
    assert report.templates["paraphrase"] == synth_templates().get("paraphrase").ref
