"""Judge-free knowledge metrics per eval set: probes, paired comparisons over clusters, the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.core.cache import ContentCache
from ragtune.core.storage import open_storage
from ragtune.evaluate.distractors import CorpusTerms, item_texts
from ragtune.evaluate.evalsets import KnowledgeSettings, eval_set, evaluate_sets, score_contenders
from ragtune.evaluate.judge import Judge
from ragtune.evaluate.knowledge import Probe, ProbeSet, build_probes, likelihood_metric
from ragtune.evaluate.likelihood import Choice, MCQuestion
from ragtune.evaluate.metrics import MetricSettings
from tests.evaluate.fakes import ScriptedAnswerer
from tests.evaluate.helpers import make_item
from tests.evaluate.test_evidence import GroundedJudge
from tests.evaluate.test_likelihood import Bigram, word_tokenizer

SETTINGS = MetricSettings(seed=0, bootstrap_samples=400, confidence=0.95, max_new_tokens=8)
PROMPT = [{"role": "user", "content": "q"}]


def probes(n: int, category: str = "A") -> list[Probe]:
    return [Probe(f"i{k}", category, MCQuestion(PROMPT, ["true", "false"])) for k in range(n)]


def test_paired_accuracy_and_margin_with_cluster_intervals() -> None:
    found = probes(4) + probes(2, "B")
    found = [p._replace(item_id=f"i{k}") for k, p in enumerate(found)]
    tuned = [Choice(1.0, 0.5)] * 6
    base = [Choice(1.0, 0.25)] * 3 + [Choice(0.0, -0.25)] * 3
    settings = SETTINGS.model_copy(update={"clusters": {f"i{k}": f"chunk:{k // 3}" for k in range(6)}})
    metric = likelihood_metric(
        ProbeSet("corpus_facts", found, items_without=1),
        {"base": base, "tuned": tuned},
        k=1,
        settings=settings,
        eval_set="knowledge",
        not_scored=["gpt"],
    )
    assert (metric.n_statements, metric.n_clusters, metric.items_without_statement) == (6, 2, 1)
    assert metric.contenders["base"].accuracy == 0.5 and metric.contenders["tuned"].accuracy == 1.0
    comparison = metric.comparisons[0]
    assert (comparison.name, comparison.metric, comparison.mean, comparison.n) == (
        "tuned-base",
        "corpus_facts",
        0.5,
        6,
    )
    # two clusters, one all right and one all wrong for base: the interval spans [0, 1]
    assert (comparison.ci_low, comparison.ci_high) == (0.0, 1.0)
    assert comparison.margin is not None and comparison.margin.mean == 0.5
    assert set(comparison.per_category) == {"A", "B"} and comparison.per_category["B"].mean == 1.0
    assert metric.not_scored == ["gpt"]


class Weighted(ScriptedAnswerer):
    """An answerer with local weights (a bigram table) that counts how often they are loaded."""

    def __init__(self, name: str, seed: int, tokenizer: Any) -> None:
        super().__init__(name, lambda q: "answer")
        self.model, self.tokenizer, self.loads = Bigram(seed), tokenizer, 0

    def weights(self) -> tuple[Any, Any]:
        self.loads += 1
        return self.model, self.tokenizer


ITEMS = [
    make_item(
        f"k{n}",
        "Mood",
        f"How long does an episode last (case {n})?",
        f"A depressive episode lasts at least {word} weeks and is common.",
        [f"A depressive episode lasts at least {word} weeks. Mania lasts at least one week and is rare."],
    )
    for n, word in enumerate(["two", "three", "four", "five", "six", "eight"])
]


def test_every_eval_set_gets_both_metrics_and_the_judge_check(tmp_path: Path) -> None:
    tok = word_tokenizer()
    base, tuned = Weighted("hf:base", 0, tok), Weighted("adapter:x", 1, tok)
    terms = CorpusTerms.from_texts(item_texts(ITEMS))
    sets = [
        eval_set("generalization", "eval.jsonl", True, ITEMS[:4], SETTINGS, "source_chunk"),
        eval_set("knowledge", "eval_knowledge.jsonl", False, [], SETTINGS, "source_chunk"),
    ]
    cache = ContentCache(open_storage(str(tmp_path / "cache")), "eval-likelihood")
    knobs = KnowledgeSettings(
        distractors=2, statements_per_item=2, batch_size=4, min_discrimination=0.8, min_consistency=0.7
    )
    judge = Judge(GroundedJudge("g"), weak=False)
    found = evaluate_sets(
        sets, judge, {"base": base, "tuned": tuned, "gpt": ScriptedAnswerer("gpt", str)}, terms, knobs, cache
    )
    generalization, knowledge = found["generalization"], found["knowledge"]
    assert generalization.corpus_facts is not None and generalization.dataset_recall is not None
    facts = generalization.corpus_facts
    assert facts.n_items == 4 and facts.n_statements == 8 and set(facts.contenders) == {"base", "tuned"}
    assert facts.not_scored == ["gpt"] and [c.name for c in facts.comparisons] == ["tuned-base"]
    assert generalization.judge_check is not None and set(generalization.judge_check.kinds) >= {
        "off_topic",
        "fact_altered",
    }
    assert not knowledge.present and knowledge.n_items == 0 and knowledge.judge_check is None
    assert knowledge.corpus_facts is not None and knowledge.corpus_facts.n_statements == 0
    assert (base.loads, tuned.loads) == (1, 1)

    again = evaluate_sets(sets, judge, {"base": base, "tuned": tuned}, terms, knobs, cache)
    assert (base.loads, tuned.loads) == (1, 1)  # served from the cache
    assert again["generalization"].corpus_facts == facts.model_copy(update={"not_scored": []})


def test_probes_pair_each_statement_with_its_distractors() -> None:
    terms = CorpusTerms.from_texts(item_texts(ITEMS))
    facts, recall = build_probes(ITEMS[:2], terms, k=2, per_item=1, seed=0)
    assert [p.item_id for p in facts.probes] == ["k0", "k1"] and facts.items_without == 0
    first = facts.probes[0].question
    assert first.options[0] == "A depressive episode lasts at least two weeks."
    assert len(first.options) == 3 and first.prompt[-1]["content"].startswith("How long")
    assert recall.probes[0].question.options[0] == ITEMS[0].answer


def test_a_contender_without_weights_is_not_scored() -> None:
    picked, missing = score_contenders(
        {"gpt": ScriptedAnswerer("gpt", str)}, [MCQuestion(PROMPT, ["a", "b"])], 2
    )
    assert picked == {} and missing == ["gpt"]
