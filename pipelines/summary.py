"""The one-screen evidence summary ``ragtune run`` (and so ``make demo``) ends with.

It answers, from the run's own files, what a user needs to judge the result: how large the
dataset is and why items were rejected (``synth_report.json``), the four-way comparison on the
primary metric with n and CIs, whether the judge passed its sanity check, leakage
(``metrics.json``, read as its typed report), and what the gate decided and why (``decision.json``).
:func:`render_summary` is pure (contents in, text out); :func:`summary_for_run` finds the files in a
local run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from ragtune.core.artifacts import Artifact, DatasetDir, DecisionDir, EvaluationDir
from ragtune.core.reports.evaluation import (
    LIKELIHOOD_METRICS,
    Comparison,
    EvalMetrics,
    EvalSetMetrics,
    JudgeCheck,
    LikelihoodMetric,
    Share,
)
from ragtune.core.reports.synth import SynthReport
from ragtune.registry import PromotionDecision

M = TypeVar("M", bound=BaseModel)

SYNTH_REPORT = Path("synthesize-dataset") / "dataset" / DatasetDir.REPORT
EVAL_METRICS = Path("evaluate-adapter") / "evaluation" / EvaluationDir.REPORT
DECISION = Path("register-model") / "decision" / DecisionDir.REPORT

QUESTIONS = {
    "tuned-base": "fine-tuning vs base",
    "tuned-base_rag": "tuned vs RAG alone",
    "tuned_rag-base_rag": "tuning adds to RAG",
    "tuned-champion": "tuned vs champion",
}
_METRIC_WORDS = {
    "judge": "judge score 1-10",
    "reference": "embedding cosine to the RAG-grounded reference answer",
    "corpus_facts": "closed-book likelihood accuracy on corpus statements vs same-kind fact swaps",
    "dataset_recall": "closed-book likelihood accuracy on reference answers vs fact-altered copies",
}
_LIKELIHOOD_WORDS = {"corpus_facts": "corpus facts", "dataset_recall": "recall"}


def _num(value: Any, digits: int = 3, sign: bool = False) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{100 * value:.0f}%"


def _dataset_lines(report: SynthReport) -> list[str]:
    share = f" ({_pct(report.kept / report.generated)})" if report.generated else ""
    lines = [
        f"Dataset: {report.kept} kept of {report.generated} question slots{share}:"
        f" {report.train} train, {report.eval} eval."
    ]
    if report.rejected_by_reason:
        ranked = sorted(report.rejected_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append(
            f"Rejected {report.rejected}: " + ", ".join(f"{reason} {count}" for reason, count in ranked) + "."
        )
    return lines


def _comparison_rows(comparisons: Sequence[Comparison], metric: str) -> list[str]:
    rows = []
    for entry in comparisons:
        if entry.metric != metric:
            continue
        label = f"{entry.name.replace('-', ' − ')} ({QUESTIONS.get(entry.name, entry.name)})"
        interval = f"[{_num(entry.ci_low, sign=True)}, {_num(entry.ci_high, sign=True)}]"
        verdict = ""
        low, high = entry.ci_low, entry.ci_high
        if low is not None and high is not None:
            verdict = "above 0" if low > 0 else "below 0" if high < 0 else "includes 0"
        rows.append(f"  {label:<44} {_num(entry.mean, sign=True):>8}  {interval:<20} n={entry.n}  {verdict}")
    return rows


def _evaluation_lines(metrics: EvalMetrics) -> list[str]:
    metric = metrics.primary_metric
    level = _pct(metrics.confidence)
    lines = [
        f"Evaluation: {metrics.n_items} items; primary metric {metric} ({_METRIC_WORDS.get(metric, metric)})."
    ]
    if metrics.contenders:
        lines.append(f"  {'contender':<12} {'judge mean':>10} {'cosine':>8} {'ROUGE-L':>8}  scored")
        for name, entry in metrics.contenders.items():
            lines.append(
                f"  {name:<12} {_num(entry.score_mean, 2):>10} {_num(entry.cosine_mean):>8}"
                f" {_num(entry.rouge_l_mean):>8}  {entry.n_scored}/{entry.n_items}"
            )
    pool = metrics.comparisons
    where = ""
    if metric in LIKELIHOOD_METRICS:
        chosen = metrics.eval_sets.get(metrics.primary_eval_set)
        scored = chosen.likelihood(metric) if chosen is not None else None
        pool, where = (scored.comparisons if scored else []), f" ({metrics.primary_eval_set} set)"
    rows = _comparison_rows(pool, metric)
    if rows:
        lines.append(
            f"Paired differences on {metric}{where}, {level} bootstrap CIs over {metrics.bootstrap_unit}:"
        )
        lines += rows
    else:
        lines.append(f"Paired differences on {metric}: none (no tuned model, or nothing scored for both).")
    lines += _knowledge_lines(metrics)
    check = metrics.judge_check
    if check is not None:
        lines += _judge_check_lines(check)
    if metrics.judge_is_weak:
        lines.append("Judge: the small local model (a smoke test, not a verdict).")
    leakage = metrics.leakage
    if leakage is not None:
        lines.append(
            f"Leakage: {leakage.leaked} of {leakage.n_eval} eval questions"
            f" ({_pct(leakage.share)}, limit {_pct(leakage.max_share)}) have a near-duplicate in training."
        )
    return lines


def _share(share: Share) -> str:
    return f"{_pct(share.value)} [{_pct(share.ci_low)}, {_pct(share.ci_high)}]"


def _judge_check_lines(check: JudgeCheck) -> list[str]:
    state = "passed" if check.passed else "FLAGGED (cannot decide promotion)"
    lines = [
        f"Judge check: {state}; discrimination {_pct(check.discrimination)}"
        f" (min {_pct(check.min_discrimination)}), position consistency"
        f" {_pct(check.consistency)} (min {_pct(check.min_consistency)}),"
        f" score gap {_num(check.score_gap, 2)}, n={check.n}."
    ]
    if check.kinds:
        lines.append(
            "  per kind, discrimination / consistency [CI] (lower bounds must reach the minima): "
            + "; ".join(
                f"{kind.kind} {_share(kind.discrimination)} / {_share(kind.consistency)} n={kind.n}"
                for kind in check.kinds.values()
            )
        )
    return lines


def _likelihood_row(name: str, metric: LikelihoodMetric) -> str:
    label = f"  {name:<15} {_LIKELIHOOD_WORDS[metric.metric]:<13}"
    if not metric.contenders:
        return (
            f"{label} not scored (n={metric.n_statements}; no local weights: {', '.join(metric.not_scored)})"
        )
    scores = "  ".join(
        f"{contender} {_pct(score.accuracy)} [{_pct(score.accuracy_ci_low)}, {_pct(score.accuracy_ci_high)}]"
        for contender, score in metric.contenders.items()
    )
    delta = next((c for c in metric.comparisons if c.name == "tuned-base"), None)
    moved = ""
    if delta is not None:
        moved = f"  tuned − base {_num(delta.mean, sign=True)} [{_num(delta.ci_low, sign=True)}, {_num(delta.ci_high, sign=True)}]"
    return f"{label} {scores}{moved}  n={metric.n_statements} ({metric.n_clusters} clusters)"


def _knowledge_lines(metrics: EvalMetrics) -> list[str]:
    """Per eval set, the judge-free metrics: each contender's accuracy and tuned − base, with CIs."""
    if not metrics.eval_sets:
        return []
    some = next((m for s in metrics.eval_sets.values() if (m := s.corpus_facts) is not None), None)
    k = f"K={some.distractors}" if some is not None else "K distractors"
    lines = [f"Knowledge, judge-free (closed-book likelihood vs {k} same-kind fact swaps, accuracy [CI]):"]
    for name, entry in metrics.eval_sets.items():
        lines += _eval_set_rows(name, entry)
    return lines


def _eval_set_rows(name: str, entry: EvalSetMetrics) -> list[str]:
    if not entry.present or entry.n_items == 0:
        return [f"  {name:<15} absent ({entry.file}: n=0)"]
    return [_likelihood_row(name, m) for m in (entry.corpus_facts, entry.dataset_recall) if m is not None]


def render_summary(
    synth_report: SynthReport | None,
    metrics: EvalMetrics | None,
    decision: PromotionDecision | None,
) -> str:
    """The summary text from the three reports; a missing one is said to be missing."""
    lines = ["Evidence summary", "================"]
    lines += _dataset_lines(synth_report) if synth_report else ["Dataset: no synth_report.json."]
    lines += _evaluation_lines(metrics) if metrics else ["Evaluation: no metrics.json."]
    if decision:
        lines.append(
            f"Decision: {decision.model_name} version {decision.version} -> {decision.alias}"
            f" (metric {decision.metric}, n={decision.n})."
        )
        lines.append(f"Why: {decision.reason}")
    else:
        lines.append("Decision: no decision.json.")
    return "\n".join(lines)


def _read(artifact: Artifact, model: type[M]) -> M | None:
    return artifact.read_report(model) if artifact.report_path.is_file() else None


def summary_for_run(run_dir: Path) -> str:
    """:func:`render_summary` for a local run folder (``ragtune run``'s ``run_dir``)."""
    run_dir = Path(run_dir)
    return render_summary(
        _read(DatasetDir(run_dir / SYNTH_REPORT.parent), SynthReport),
        _read(EvaluationDir(run_dir / EVAL_METRICS.parent), EvalMetrics),
        _read(DecisionDir(run_dir / DECISION.parent), PromotionDecision),
    )
