"""What the evaluate stage writes: per-item rows, the metrics summary, and the returned report.

``metrics.json`` is :class:`EvalMetrics`; the registry promotes on ``delta_mean`` /
``delta_ci_low`` / ``delta_ci_high`` (tuned − base, paired bootstrap) and reads each contender's
``contenders.<name>.score_mean`` (also flat in ``means``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ragtune.evaluate.stats import Outcome, Verdict, WinTieLoss

METRICS_SCHEMA_VERSION = 1
BASE, TUNED = "base", "tuned"


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


class CategoryScore(BaseModel):
    n_scored: int
    score_mean: float | None


class ContenderSummary(BaseModel):
    name: str
    model: str
    n_items: int
    n_answered: int
    n_scored: int
    answer_failures: int
    judge_failures: int = Field(description="Answered but no usable judge score (excluded from means).")
    score_sum: int = Field(description="The paper's figure: sum of judge scores over scored items.")
    score_mean: float | None
    score_ci_low: float | None
    score_ci_high: float | None
    rouge_l_mean: float | None
    cosine_mean: float | None
    per_category: dict[str, CategoryScore]


class PairwiseSummary(WinTieLoss):
    """Tuned against ``contender``: wins/ties/losses are tuned's; each item judged in both orders."""

    contender: str
    against: str = "tuned"


class EvalMetrics(BaseModel):
    """Everything in ``metrics.json``."""

    schema_version: int = METRICS_SCHEMA_VERSION
    judge_model: str = Field(description="Model name of the judge endpoint.")
    judge_base_url: str | None = Field(description="None: the packaged local model judged.")
    judge_is_weak: bool = Field(
        description="True when the judge is the small local model: scores are noise-prone."
    )
    judge_templates: dict[str, str] = Field(description="Rubric template ids (name@version).")
    n_items: int
    categories: list[str]
    contender_names: list[str]
    seed: int
    bootstrap_samples: int
    confidence: float
    max_new_tokens: int
    contenders: dict[str, ContenderSummary]
    means: dict[str, float | None] = Field(description="score_mean per contender, flat.")
    sums: dict[str, int] = Field(description="score_sum per contender (the paper's figure), flat.")
    n_common: int = Field(description="Items every contender has a score for.")
    sums_common: dict[str, int] = Field(description="score_sum over the common items: comparable sums.")
    delta_mean: float | None = Field(description="Mean of tuned − base over items both have scores for.")
    delta_ci_low: float | None
    delta_ci_high: float | None
    delta_n: int
    delta_prob_positive: float | None = Field(description="Share of bootstrap means of the delta above 0.")
    pairwise: dict[str, PairwiseSummary] = Field(description="Tuned vs each other contender, by its name.")
    failures: dict[str, dict[str, int]] = Field(
        description="answers / judge_scores / judge_pairwise failure counts by contender."
    )
    failures_total: int
    judge_parse: dict[str, int] = Field(
        description="How judge scores were parsed: json / partial_json / text."
    )
    llm_usage: dict[str, dict[str, object]] = Field(default_factory=dict, description="Token ledgers.")
    warnings: list[str] = Field(default_factory=list)


class EvalReport(BaseModel):
    """What :func:`ragtune.evaluate.evaluate` returns: the headline numbers and where the files are."""

    judge_model: str
    judge_is_weak: bool
    n_items: int
    contenders: list[str]
    means: dict[str, float | None]
    sums: dict[str, int]
    delta_mean: float | None = Field(description="tuned − base mean judge score (paired).")
    delta_ci_low: float | None
    delta_ci_high: float | None
    delta_n: int
    pairwise: dict[str, PairwiseSummary]
    failures_total: int
    warnings: list[str]
    scores_path: Path
    pairwise_path: Path
    metrics_path: Path
    report_path: Path
