"""The evaluate stage: the tuned model judged against its base (and optional extra contenders).

:func:`run_evaluate` reads ``eval.jsonl``, has every contender answer each question alone, asks the LLM
judge for a 1–10 score per answer (against the reference answer and its context) and for pairwise
verdicts in both orders, and writes ``scores.jsonl``, ``pairwise.jsonl``, ``metrics.json`` and
``report.html``. The modules each do one job: ``generators`` (who answers), ``prompts`` and
``templates/`` (the rubric), ``parsing`` (reading the judge), ``judge`` (asking it), ``stats`` (the
bootstrap and pairwise arithmetic), ``similarity`` (ROUGE-L, cosine), ``metrics``, ``plots``,
``report`` and ``stage`` (the stage function); the judge-free knowledge metrics: ``distractors``
(corpus statements, same-kind fact swaps), ``likelihood`` (multiple choice by likelihood),
``knowledge`` (accuracy, margin, paired comparisons), ``evalsets`` (both eval sets) and
``judgecheck`` (the judge's check on three kinds of known-worse answers).
"""

from ragtune.core.reports.evaluation import EvalMetrics
from ragtune.evaluate.parsing import JudgeScore, PairVerdict, parse_judge_score, parse_pairwise_verdict
from ragtune.evaluate.schema import EvalReport, PairRow, ScoreRow
from ragtune.evaluate.stage import run_evaluate

__all__ = [
    "EvalMetrics",
    "EvalReport",
    "JudgeScore",
    "PairRow",
    "PairVerdict",
    "ScoreRow",
    "parse_judge_score",
    "parse_pairwise_verdict",
    "run_evaluate",
]
