"""The evidence summary ``ragtune run`` ends with, rendered from fixture files of a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.summary import DECISION, EVAL_METRICS, SYNTH_REPORT, render_summary, summary_for_run
from ragtune.core.errors import InputError
from ragtune.core.reports.evaluation import (
    EvalMetrics,
    EvalSetMetrics,
    JudgeCheck,
    JudgeCheckKind,
    Leakage,
    LikelihoodMetric,
    LikelihoodScore,
    Share,
)
from ragtune.registry import PromotionDecision
from tests.registry.conftest import comparison, eval_metrics, synth_report

SYNTH = synth_report()


def _metrics() -> EvalMetrics:
    """A reference-metric evaluation of 10 items with a flagged judge and one leaking question."""
    metrics = eval_metrics(tuned=5.5, base=5.0, ci_low=-0.5, ci_high=1.5, n=10)
    base, tuned = metrics.contenders["base"], metrics.contenders["tuned"]
    return metrics.model_copy(
        update={
            "primary_metric": "reference",
            "judge_is_weak": True,
            "contenders": {
                "base": base.model_copy(update={"cosine_mean": 0.61, "rouge_l_mean": 0.2}),
                "tuned": tuned.model_copy(update={"cosine_mean": 0.70, "rouge_l_mean": 0.3, "n_scored": 9}),
            },
            "comparisons": [
                comparison("tuned-base", 0.09, 0.03, 0.15, 10, "reference"),
                comparison("tuned-base", 0.5, -0.5, 1.5, 10),
                comparison("tuned-base_rag", -0.05, -0.12, 0.01, 10, "reference"),
            ],
            "judge_check": JudgeCheck.model_validate(
                {"n": 10, "discrimination": 0.4, "consistency": 0.3, "score_gap": 0.2}
                | {"min_discrimination": 0.8, "min_consistency": 0.7, "passed": False, "reasons": ["x"]}
            ),
            "leakage": Leakage(
                n_eval=10,
                n_train=30,
                cosine_threshold=0.95,
                ngram_hits=1,
                embedding_hits=0,
                leaked=1,
                share=0.1,
                max_share=0.2,
            ),
        }
    )


METRICS = _metrics()
DECISION_DATA = PromotionDecision(
    model_name="ragtune-adapter",
    version=2,
    alias="challenger",
    promoted=False,
    metric="reference",
    n=10,
    reason="Not promoted (on the reference metric): only 10 paired scored items.",
    model_uri="models:/ragtune-adapter@challenger",
)


def test_summary_shows_dataset_comparisons_judge_check_and_decision() -> None:
    text = render_summary(SYNTH, METRICS, DECISION_DATA)
    assert "Dataset: 44 kept of 80 question slots (55%): 34 train, 10 eval." in text
    assert "Rejected 36: not_grounded 20, too_short 16." in text
    assert "primary metric reference (embedding cosine to the RAG-grounded reference answer)" in text
    lines = text.splitlines()
    tuned_base = next(line for line in lines if "tuned − base (fine-tuning vs base)" in line)
    assert "+0.090" in tuned_base and "[+0.030, +0.150]" in tuned_base and "n=10" in tuned_base
    assert "above 0" in tuned_base
    assert "includes 0" in next(line for line in lines if "tuned vs RAG alone" in line)
    assert not any("+0.500" in line for line in lines)  # only the primary metric's rows
    assert "Judge check: FLAGGED (cannot decide promotion); discrimination 40% (min 80%)" in text
    assert "Leakage: 1 of 10 eval questions (10%, limit 20%)" in text
    assert "Decision: ragtune-adapter version 2 -> challenger (metric reference, n=10)." in text
    assert "Why: Not promoted (on the reference metric): only 10 paired scored items." in text
    assert len(lines) <= 25  # one screen


def test_summary_reads_a_run_folder_and_says_what_is_missing(tmp_path: Path) -> None:
    for relative, text in (
        (SYNTH_REPORT, SYNTH.model_dump_json()),
        (EVAL_METRICS, METRICS.model_dump_json()),
    ):
        (tmp_path / relative).parent.mkdir(parents=True)
        (tmp_path / relative).write_text(text)
    text = summary_for_run(tmp_path)
    assert "Dataset: 44 kept" in text and "Decision: no decision.json." in text
    assert "Evaluation: 10 items; primary metric reference" in text  # metrics.json read as EvalMetrics
    assert not (tmp_path / DECISION).exists()
    assert "Evaluation: no metrics.json." in render_summary(SYNTH, None, None)


def test_summary_refuses_a_malformed_report_naming_it(tmp_path: Path) -> None:
    (tmp_path / SYNTH_REPORT).parent.mkdir(parents=True)
    (tmp_path / SYNTH_REPORT).write_text(json.dumps({"generated": 80, "kept": 44}))
    with pytest.raises(InputError, match=r"synth_report\.json: not a valid SynthReport"):
        summary_for_run(tmp_path)


def _likelihood(base: float, tuned: float, delta: tuple[float, float, float]) -> LikelihoodMetric:
    def score(name: str, accuracy: float) -> LikelihoodScore:
        return LikelihoodScore(
            contender=name,
            n_statements=40,
            n_clusters=12,
            accuracy=accuracy,
            accuracy_ci_low=accuracy - 0.1,
            accuracy_ci_high=accuracy + 0.1,
            margin_mean=0.01,
            margin_ci_low=-0.01,
            margin_ci_high=0.03,
        )

    return LikelihoodMetric(
        metric="corpus_facts",
        n_items=20,
        n_statements=40,
        n_clusters=12,
        distractors=3,
        items_without_statement=0,
        contenders={"base": score("base", base), "tuned": score("tuned", tuned)},
        comparisons=[comparison("tuned-base", *delta, 40, "corpus_facts")],
    )


def test_summary_shows_corpus_facts_per_eval_set_and_the_judge_check_per_kind() -> None:
    kind = JudgeCheckKind(
        kind="fact_altered",
        n=10,
        discrimination=Share(value=0.5, ci_low=0.2, ci_high=0.8, n=10),
        consistency=Share(value=0.9, ci_low=0.7, ci_high=1.0, n=10),
        reference_wins=Share(value=0.4, ci_low=0.1, ci_high=0.7, n=10),
        score_gap=0.5,
    )
    assert METRICS.judge_check is not None
    check = METRICS.judge_check.model_copy(update={"kinds": {"fact_altered": kind}})
    generalization = EvalSetMetrics(
        name="generalization",
        file="eval.jsonl",
        present=True,
        n_items=20,
        n_clusters=12,
        bootstrap_unit="source_chunk",
        corpus_facts=_likelihood(0.60, 0.62, (0.02, -0.05, 0.09)),
        judge_check=check,
    )
    knowledge = EvalSetMetrics(
        name="knowledge",
        file="eval_knowledge.jsonl",
        present=False,
        n_items=0,
        n_clusters=0,
        bootstrap_unit="source_chunk",
    )
    metrics = METRICS.model_copy(
        update={
            "primary_metric": "corpus_facts",
            "bootstrap_unit": "source_chunk",
            "judge_check": check,
            "eval_sets": {"generalization": generalization, "knowledge": knowledge},
        }
    )
    text = render_summary(SYNTH, metrics, DECISION_DATA)
    lines = text.splitlines()
    assert (
        "Paired differences on corpus_facts (generalization set), 95% bootstrap CIs over source_chunk:"
        in text
    )
    tuned_base = next(line for line in lines if "tuned − base (fine-tuning vs base)" in line)
    assert "+0.020" in tuned_base and "[-0.050, +0.090]" in tuned_base and "includes 0" in tuned_base
    facts = next(line for line in lines if line.lstrip().startswith("generalization  corpus facts"))
    assert (
        "base 60% [50%, 70%]" in facts and "tuned 62% [52%, 72%]" in facts and "n=40 (12 clusters)" in facts
    )
    assert "  knowledge       absent (eval_knowledge.jsonl: n=0)" in lines
    assert "fact_altered 50% [20%, 80%] / 90% [70%, 100%] n=10" in text
    assert len(lines) <= 30  # one screen
