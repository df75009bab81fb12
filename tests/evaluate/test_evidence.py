"""Evidence the evaluation gives: the judge's sanity check, the four-way comparison, leakage."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.errors import InputError
from ragtune.core.llm import ChatModel, ChatRequest, ChatResponse
from ragtune.core.modelload import adapter_fingerprint
from ragtune.core.records import Chunk, InstructionItem, write_jsonl
from ragtune.evaluate import run_evaluate
from ragtune.evaluate.distractors import CorpusTerms, item_texts
from ragtune.evaluate.evalsets import fact_alteration
from ragtune.evaluate.generators import model_answerers
from ragtune.evaluate.judge import Judge
from ragtune.evaluate.judgecheck import check_judge, mismatched_answers
from ragtune.evaluate.leakage import measure_leakage, ngrams
from ragtune.evaluate.metrics import MetricSettings
from ragtune.evaluate.stage import resolve_primary_metric
from ragtune.index.retriever import ScoredChunk
from tests.evaluate.fakes import ScriptedAnswerer, WordHashEncoder
from tests.evaluate.helpers import make_item

CATEGORIES = ["Anxiety", "Sleep", "Mood", "Eating"]
TOPICS = [
    "panic attacks",
    "insomnia",
    "depression",
    "anorexia",
    "phobias",
    "narcolepsy",
    "mania",
    "bulimia",
    "worry",
    "apnea",
    "grief",
    "binge eating",
]


def items(count: int = 12) -> list[InstructionItem]:
    return [
        make_item(
            f"item-{i}",
            CATEGORIES[i % len(CATEGORIES)],
            f"What characterises {TOPICS[i % len(TOPICS)]} (case {i})?",
            f"{TOPICS[i % len(TOPICS)].capitalize()} show signs number {i} described in section {i}.",
            [f"Section {i}: {TOPICS[i % len(TOPICS)]} show signs number {i}."],
        )
        for i in range(count)
    ]


def _section(prompt: str, tag: str) -> str:
    match = re.search(rf"<{tag}>\n(.*?)\n</{tag}>", prompt, re.DOTALL)
    return match.group(1) if match else ""


class GroundedJudge(ChatModel):
    """Prefers the answer that agrees with the reference: scores it 9 (others 2), picks it pairwise."""

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        prompt = request.messages[-1]["content"]
        reference = _section(prompt, "reference")
        if "<answer>" in prompt:
            score = 9 if _section(prompt, "answer") == reference else 2
            return ChatResponse(text=json.dumps({"score": score, "reason": "r"}), model=self.name)
        a, b = _section(prompt, "answer_a"), _section(prompt, "answer_b")
        winner = "A" if a == reference else "B" if b == reference else "tie"
        return ChatResponse(text=json.dumps({"winner": winner, "reason": "r"}), model=self.name)


class RandomJudge(ChatModel):
    """Scores and picks at random (seeded): a judge that cannot tell anything apart."""

    def __init__(self, name: str, seed: int = 7) -> None:
        super().__init__(name)
        self.rng = random.Random(seed)

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        if "<answer>" in request.messages[-1]["content"]:
            text = json.dumps({"score": self.rng.randint(1, 10), "reason": "r"})
        else:
            text = json.dumps({"winner": self.rng.choice(["A", "B", "tie"]), "reason": "r"})
        return ChatResponse(text=text, model=self.name)


SETTINGS = MetricSettings(seed=0, bootstrap_samples=500, confidence=0.95, max_new_tokens=8)


def check(judge: ChatModel, count: int = 20, pool: list[InstructionItem] | None = None) -> Any:
    pool = pool or items(count)
    terms = CorpusTerms.from_texts(item_texts(pool))
    return check_judge(
        Judge(judge, weak=False),
        pool,
        min_discrimination=0.8,
        min_consistency=0.7,
        settings=SETTINGS,
        alter=fact_alteration(terms, seed=0),
    )


class TopicJudge(ChatModel):
    """A topic detector: any answer that shares a word with the question scores 9 (else 2); pairwise
    it picks the answer sharing more words with the question, a tie when both share as many."""

    @staticmethod
    def overlap(question: str, answer: str) -> int:
        return len(set(re.findall(r"[a-z]+", question.lower())) & set(re.findall(r"[a-z]+", answer.lower())))

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        prompt = request.messages[-1]["content"]
        question = _section(prompt, "question")
        if "<answer>" in prompt:
            score = 9 if self.overlap(question, _section(prompt, "answer")) else 2
            return ChatResponse(text=json.dumps({"score": score, "reason": "r"}), model=self.name)
        a = self.overlap(question, _section(prompt, "answer_a"))
        b = self.overlap(question, _section(prompt, "answer_b"))
        winner = "A" if a > b else "B" if b > a else "tie"
        return ChatResponse(text=json.dumps({"winner": winner, "reason": "r"}), model=self.name)


def test_a_random_judge_is_flagged() -> None:
    result = check(RandomJudge("random"))
    assert result.n == 20 and not result.passed
    assert result.discrimination is not None and result.discrimination < 0.8
    assert result.consistency is not None and result.consistency < 0.7
    assert any("discrimination" in r for r in result.reasons)


def test_a_judge_preferring_grounded_answers_passes() -> None:
    result = check(GroundedJudge("grounded"))
    assert result.passed and result.reasons == []
    assert (result.n, result.discrimination, result.consistency, result.reference_wins) == (20, 1.0, 1.0, 1.0)
    assert result.score_gap == 7.0
    assert set(result.kinds) == {"off_topic", "fact_altered", "truncated"}
    altered = result.kinds["fact_altered"]
    assert altered.n == 20 and altered.discrimination.ci_low == 1.0 and altered.consistency.ci_low == 1.0


def test_a_topic_detector_passes_off_topic_answers_but_is_flagged_on_altered_facts() -> None:
    result = check(TopicJudge("topic"))
    assert result.kinds["off_topic"].discrimination.value == 1.0
    # same wording with a wrong number (or a condition named in the question swapped, which it spots)
    altered = result.kinds["fact_altered"].discrimination
    assert (
        altered.value is not None
        and altered.value < 1.0
        and altered.ci_low is not None
        and altered.ci_low < 0.8
    )
    assert not result.passed
    assert any(r.startswith("fact_altered: discrimination") for r in result.reasons)
    assert not any(r.startswith("off_topic: discrimination") for r in result.reasons)


def test_thresholds_apply_to_the_lower_bounds() -> None:
    # 18 of 20 answers told apart (90%) is above 0.8, but its interval's lower bound is not
    class MostlyGrounded(GroundedJudge):
        async def _complete(self, request: ChatRequest) -> ChatResponse:
            prompt = request.messages[-1]["content"]
            if "<answer>" in prompt and re.search(r"case 1[89]\)", _section(prompt, "question")):
                return ChatResponse(text=json.dumps({"score": 5, "reason": "r"}), model=self.name)
            return await super()._complete(request)

    result = check(MostlyGrounded("mostly"))
    off_topic = result.kinds["off_topic"].discrimination
    assert off_topic.value == 0.9 and off_topic.ci_low is not None and off_topic.ci_low < 0.8
    assert not result.passed and any("off_topic: discrimination 0.90" in r for r in result.reasons)


class HalfGrounded(GroundedJudge):
    """Grounded on even case numbers; on odd ones it scores every answer 5 (tells nothing apart)."""

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        prompt = request.messages[-1]["content"]
        if "<answer>" in prompt and re.search(r"case \d*[13579]\)", _section(prompt, "question")):
            return ChatResponse(text=json.dumps({"score": 5, "reason": "r"}), model=self.name)
        return await super()._complete(request)


def test_items_sharing_a_cluster_are_resampled_together_in_the_judge_check() -> None:
    pool = items(20)
    by_parity = {item.item_id: f"chunk:{n % 2}" for n, item in enumerate(pool)}

    def discrimination(settings: MetricSettings) -> Any:
        judge = Judge(HalfGrounded("half"), weak=False)
        found = check_judge(judge, pool, min_discrimination=0.8, min_consistency=0.7, settings=settings)
        return found.kinds["off_topic"].discrimination

    naive = discrimination(SETTINGS)
    clustered = discrimination(SETTINGS.model_copy(update={"clusters": by_parity}))
    assert naive.value == clustered.value == 0.5
    assert (clustered.ci_low, clustered.ci_high) == (0.0, 1.0)  # two clusters: all right or all wrong
    assert 0.0 < naive.ci_low < 0.5 < naive.ci_high < 1.0


def test_without_fact_altered_answers_the_check_cannot_pass() -> None:
    pool = items(20)
    result = check_judge(
        Judge(GroundedJudge("g"), weak=False),
        pool,
        min_discrimination=0.8,
        min_consistency=0.7,
        settings=SETTINGS,
    )
    assert result.kinds["off_topic"].discrimination.ci_low == 1.0 and "fact_altered" not in result.kinds
    assert not result.passed and result.reasons == [
        "fact_altered: 0 item(s), fewer than 5: too few to bound the judge"
    ]


def test_mismatched_answers_come_from_another_category() -> None:
    pool = items(8)
    by_answer = {i.answer: i for i in pool}
    for item, wrong in zip(pool, mismatched_answers(pool, seed=3), strict=True):
        assert wrong is not None and by_answer[wrong].category != item.category
    assert mismatched_answers(pool[:1], seed=3) == [None]  # nothing to mismatch with
    alone = check(GroundedJudge("g"), pool=pool[:1])
    assert not alone.passed and "off_topic" not in alone.kinds
    assert any("fewer than 5" in r for r in alone.reasons)  # one truncated answer proves nothing


def test_auto_primary_metric_needs_a_checked_strong_judge() -> None:
    passed = check(GroundedJudge("grounded"), 8)
    failed = check(RandomJudge("random"), 8)
    assert resolve_primary_metric("auto", passed, weak=False) == "judge"
    assert resolve_primary_metric("auto", passed, weak=True) == "corpus_facts"
    assert resolve_primary_metric("auto", failed, weak=False) == "corpus_facts"
    assert resolve_primary_metric("judge", failed, weak=True) == "judge"
    assert resolve_primary_metric("reference", passed, weak=False) == "reference"


def _chunk(n: int, text: str) -> Chunk:
    return Chunk(chunk_id=f"c{n}", doc_id="d", section_id="s", section_path=["S"], text=text, token_count=5)


class FakeRetriever:
    """Returns, for each question, the context chunk of the matching item (what a good index would)."""

    def __init__(self, pool: list[InstructionItem]) -> None:
        self.by_question = {i.question: i.context[0].text for i in pool}
        self.asked: list[tuple[int, int]] = []

    def search_many(self, queries: list[str], k: int = 5) -> list[list[ScoredChunk]]:
        self.asked.append((len(queries), k))
        return [[ScoredChunk(chunk=_chunk(n, self.by_question[q]), score=1.0)] for n, q in enumerate(queries)]


def _answerer(name: str, pool: list[InstructionItem], good_with_context: bool) -> ScriptedAnswerer:
    references = {i.question: i.answer for i in pool}

    def answer(prompt: str) -> str:
        question = prompt.split("Question: ")[-1]
        if "Context:" in prompt and good_with_context:
            return references[question]
        return f"{name} is not sure about {question}"

    return ScriptedAnswerer(f"test:{name}", answer)


def config(tmp_path: Path, **evaluate_settings: object) -> RagtuneConfig:
    return build_config(
        {
            "run": {"root": str(tmp_path / "runs")},
            "synth": {"top_k": 2},
            "llm": {"judge": {"base_url": "http://judge.invalid/v1"}},  # not the weak local judge
            "evaluate": {"bootstrap_samples": 200, "primary_metric": "auto", **evaluate_settings},
        }
    )


def test_four_way_comparison_with_retrieval(tmp_path: Path) -> None:
    pool = items(8)
    dataset = tmp_path / "dataset"
    write_jsonl(dataset / "eval.jsonl", pool)
    retriever = FakeRetriever(pool)
    out = tmp_path / "eval"
    base, tuned = _answerer("base", pool, True), _answerer("tuned", pool, True)
    report = run_evaluate(
        config(tmp_path),
        dataset,
        None,
        out,
        answerers={"base": base, "tuned": tuned},
        judge_model=GroundedJudge("judge"),
        encoder=WordHashEncoder(),
        retriever=retriever,
    )
    assert report.metrics.contender_names == ["base", "base_rag", "tuned", "tuned_rag"]
    assert retriever.asked == [(8, 2)]  # one batched search, synth.top_k chunks
    rag_prompts = [q for q in tuned.asked if "Context:" in q]
    assert len(rag_prompts) == 8 and "Section 0: panic attacks" in rag_prompts[0]
    assert report.metrics.judge_check is not None and report.metrics.judge_check.passed
    assert report.metrics.primary_metric == "judge"
    metrics = json.loads((out / "metrics.json").read_text())
    by_name = {(c["name"], c["metric"]): c for c in metrics["comparisons"]}
    assert set(by_name) == {
        (name, metric)
        for name in ("tuned-base", "tuned-base_rag", "tuned_rag-base_rag")
        for metric in ("judge", "reference")
    }
    # the RAG twins answer from the context (judge 9), the plain ones do not (2)
    assert by_name[("tuned-base_rag", "judge")]["mean"] == -7.0
    assert by_name[("tuned_rag-base_rag", "judge")]["mean"] == 0.0
    assert by_name[("tuned-base", "judge")]["n"] == 8
    assert set(by_name[("tuned-base", "judge")]["per_category"]) == set(CATEGORIES)
    assert by_name[("tuned-base", "judge")]["per_category"]["Anxiety"]["n"] == 2
    assert by_name[("tuned-base_rag", "reference")]["mean"] < 0  # cosine agrees
    pairs = {json.loads(line)["contender"] for line in (out / "pairwise.jsonl").read_text().splitlines()}
    assert pairs == {"base"}  # pairwise against the RAG twins is left to the paired scores
    html = (out / "report.html").read_text()
    assert "Judge sanity check" in html and "tuned_rag − base_rag" in html


def test_leakage_over_the_threshold_fails_the_stage(tmp_path: Path) -> None:
    pool = items(6)
    dataset = tmp_path / "dataset"
    write_jsonl(dataset / "eval.jsonl", pool)
    leaked = [
        make_item("train-1", "Anxiety", pool[0].question, "x", []),
        make_item("train-2", "Sleep", pool[1].question, "y", []),
    ]
    write_jsonl(dataset / "train.jsonl", leaked)
    answerers = {"base": _answerer("base", pool, False)}

    def run(**settings: object) -> Any:
        return run_evaluate(
            config(tmp_path, **settings),
            dataset,
            None,
            tmp_path / "eval",
            answerers=answerers,
            encoder=WordHashEncoder(),
            judge_model=GroundedJudge("j"),
        )

    with pytest.raises(
        InputError,
        match=r"2 of 6 eval items \(33%\).*\(questions 2, answers 0, contexts 0\).*evaluate.max_leakage 20%",
    ):
        run()
    report = run(max_leakage=0.5)
    leakage = json.loads(report.metrics_path.read_text())["leakage"]
    assert (leakage["leaked"], leakage["embedding_hits"], leakage["n_train"]) == (2, 2, 2)
    assert leakage["item_ids"] == ["item-0", "item-1"]


def test_leakage_counts_13_gram_overlap_with_answers() -> None:
    long_question = (
        "what do the guidelines say about the first line treatment of panic disorder in adults today"
    )
    assert len(ngrams(long_question)) == len(long_question.split()) - 12
    eval_items = [
        make_item("e1", "A", long_question, "a", []),
        make_item("e2", "A", "Short question here?", "b", []),
    ]
    train = [make_item("t1", "A", "unrelated", "Notes: " + long_question + " and more.", [])]
    leakage = measure_leakage(eval_items, train, None, cosine_threshold=0.95, max_share=0.2)
    assert (leakage.ngram_hits, leakage.embedding_hits, leakage.leaked, leakage.share) == (1, 0, 1, 0.5)


def _adapter(folder: Path, base_model: str) -> Path:
    folder.mkdir(parents=True)
    manifest = {
        "base_model": base_model,
        "base_model_path": base_model,
        "lora_r": 2,
        "lora_alpha": 4,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj"],
        "qlora": False,
        "max_seq_len": 64,
        "dataset_sha256": "d" * 64,
        "global_step": 1,
        "dtype": "float32",
        "deepspeed": "off",
    }
    (folder / "ragtune_adapter.json").write_text(json.dumps(manifest))
    (folder / "adapter_model.safetensors").write_bytes(base_model.encode())
    return folder


def test_the_champion_is_a_contender_only_on_the_same_base(tmp_path: Path) -> None:
    """Nothing is loaded here: local models load lazily, on their first question."""
    cfg = config(tmp_path)
    same = _adapter(tmp_path / "same", cfg.train.base_model)
    other = _adapter(tmp_path / "other", "another-model")
    answerers, warnings = model_answerers(cfg, None, None, {"champion": same})
    assert list(answerers) == ["base", "champion"] and warnings == []
    assert answerers["champion"].name == f"adapter:{adapter_fingerprint(same)[:32]}"
    answerers, warnings = model_answerers(cfg, None, None, {"champion": other})
    assert list(answerers) == ["base"]
    assert "champion" in warnings[0] and "not comparable" in warnings[0]


@pytest.mark.slow  # loads the packaged embedder
def test_rag_contenders_retrieve_from_a_real_index(tmp_path: Path) -> None:
    """The component's path: an index folder from the index stage, searched with the run's embedder."""
    from tests.synth.conftest import build_corpus, make_documents

    built = build_corpus(tmp_path / "corpus", make_documents(), tmp_path / "cache")
    pool = [
        make_item(
            "q-apnoea", "Sleep", "What does obstructive sleep apnoea cause?", "Snoring and pauses.", ["x"]
        ),
        make_item(
            "q-care", "Mood", "Which talking therapies help with low mood?", "Behavioural activation.", ["y"]
        ),
    ]
    dataset = tmp_path / "dataset"
    write_jsonl(dataset / "eval.jsonl", pool)
    base = ScriptedAnswerer("test:base", lambda prompt: "answer")
    run_evaluate(
        config(tmp_path, bootstrap_samples=100),
        dataset,
        None,
        tmp_path / "eval",
        index_dir=built.index_dir,
        answerers={"base": base},
        judge_model=GroundedJudge("j"),
    )
    rag = {q.split("Question: ")[-1]: q for q in base.asked if "Context:" in q}
    assert "loud snoring, pauses in breathing" in rag["What does obstructive sleep apnoea cause?"]
    assert "behavioural activation" in rag["Which talking therapies help with low mood?"]


def test_leakage_measures_eval_answers_and_contexts_not_only_questions() -> None:
    passage = (
        "panic attacks peak within ten minutes and bring a pounding heart trembling sweating and dizziness"
    )
    eval_items = [
        make_item("e-answer", "A", "When does the fear peak?", "They " + passage + ".", ["other text"]),
        make_item("e-quoted", "A", "What comes with the fear?", "A pounding heart.", [passage]),
        make_item("e-clean", "A", "What helps with insomnia?", "Regular wake times help.", ["wake times"]),
    ]
    train = [make_item("t1", "B", "What is a panic attack?", "Notes: " + passage + ".", ["unrelated"])]
    leakage = measure_leakage(eval_items, train, None, cosine_threshold=0.95, max_share=0.2)
    assert (leakage.ngram_hits, leakage.embedding_hits) == (0, 0)  # the questions alone look clean
    assert (leakage.answer_hits, leakage.context_hits, leakage.leaked) == (1, 1, 2)
    assert leakage.item_ids == ["e-answer", "e-quoted"]

    # a training answer that rested on an eval item's source chunk leaks it, whatever it says
    behind = make_item("t2", "B", "Unrelated?", "Unrelated words.", [])
    behind.provenance.context_chunk_ids.append(eval_items[2].provenance.source_chunk_id)
    leakage = measure_leakage(eval_items[2:], [behind], None, cosine_threshold=0.95, max_share=0.2)
    assert (leakage.context_hits, leakage.leaked) == (1, 1)
