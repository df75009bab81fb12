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
from ragtune.core.reports.evaluation import Comparison, EvalMetrics
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
}


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
    rows = _comparison_rows(metrics.comparisons, metric)
    if rows:
        lines.append(f"Paired differences on {metric}, {level} bootstrap CIs:")
        lines += rows
    else:
        lines.append("Paired differences: none (no tuned model, or no item scored for both).")
    check = metrics.judge_check
    if check is not None:
        state = "passed" if check.passed else "FLAGGED (cannot decide promotion)"
        lines.append(
            f"Judge check: {state}; discrimination {_pct(check.discrimination)}"
            f" (min {_pct(check.min_discrimination)}), position consistency"
            f" {_pct(check.consistency)} (min {_pct(check.min_consistency)}),"
            f" score gap {_num(check.score_gap, 2)}, n={check.n}."
        )
    if metrics.judge_is_weak:
        lines.append("Judge: the small local model (a smoke test, not a verdict).")
    leakage = metrics.leakage
    if leakage is not None:
        lines.append(
            f"Leakage: {leakage.leaked} of {leakage.n_eval} eval questions"
            f" ({_pct(leakage.share)}, limit {_pct(leakage.max_share)}) have a near-duplicate in training."
        )
    return lines


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
