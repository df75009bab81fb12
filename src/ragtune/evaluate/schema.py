"""What the evaluate stage writes per item, and what :func:`~ragtune.evaluate.run_evaluate` returns.

The summary in ``metrics.json`` is :class:`~ragtune.core.reports.evaluation.EvalMetrics`, in core
because the registry reads it too; the rows of ``scores.jsonl`` and ``pairwise.jsonl`` only this
stage reads and writes.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ragtune.core.reports.evaluation import EvalMetrics, Outcome, Verdict


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScoreRow(Row):
    """One line of ``scores.jsonl``: one item answered by one contender, judged and compared."""

    item_id: str
    category: str
    contender: str = Field(description="base, tuned, or an extra contender's name.")
    model: str = Field(
        description="Identity of the answering model (hf:<name>, adapter:<hash>, openai:<model>)."
    )
    answer: str | None = Field(description="None when the contender failed to answer.")
    answer_error: str | None = None
    score: int | None = Field(None, description="Judge score 1-10; None when unanswered or unparseable.")
    reason: str | None = Field(None, description="The judge's reason.")
    judge_error: str | None = Field(None, description="Why there is no score (judge failure), if any.")
    judge_raw: str | None = Field(None, description="The judge's reply when it could not be parsed.")
    parsed_from: str | None = Field(None, description="json, partial_json or text.")
    rouge_l: float | None = None
    cosine: float | None = None


class PairRow(Row):
    """One pairwise comparison of ``tuned`` against another contender on one item, both orders."""

    item_id: str
    category: str
    contender: str = Field(description="The model tuned is compared with.")
    verdict_tuned_first: Verdict | None = Field(description="Judge's pick with tuned shown as answer A.")
    verdict_tuned_second: Verdict | None = Field(description="Judge's pick with tuned shown as answer B.")
    outcome: Outcome | None = Field(description="Tuned's combined result; None is a failure.")
    error: str | None = None


class EvalReport(BaseModel):
    """What :func:`~ragtune.evaluate.run_evaluate` returns: the report it wrote and where its files are."""

    metrics: EvalMetrics = Field(description="The report, as written to metrics.json.")
    scores_path: Path
    pairwise_path: Path
    metrics_path: Path
    report_path: Path
