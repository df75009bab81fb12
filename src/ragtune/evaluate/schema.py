"""What the evaluate stage writes: per-item rows, the metrics summary, and the returned report.

``metrics.json`` is :class:`EvalMetrics`. The registry's gate reads ``primary_metric``,
``judge_check`` and the paired ``comparisons`` on the primary metric (``tuned-base``,
``tuned-champion``); ``delta_*`` stay tuned − base on the judge, and each contender's
``contenders.<name>.score_mean`` (also flat in ``means``) its mean judge score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ragtune.evaluate.judgecheck import JudgeCheck
from ragtune.evaluate.leakage import Leakage
from ragtune.evaluate.stats import Outcome, Verdict, WinTieLoss

METRICS_SCHEMA_VERSION = 2
BASE, TUNED, BASE_RAG, TUNED_RAG, CHAMPION = "base", "tuned", "base_rag", "tuned_rag", "champion"
COMPARISONS = ((TUNED, BASE), (TUNED, BASE_RAG), (TUNED_RAG, BASE_RAG), (TUNED, CHAMPION))
"""The paired differences the report answers: does tuning beat the base, beat RAG alone, add to
RAG, and beat the current champion."""

Metric = Literal["judge", "reference"]
"""judge: the LLM judge's 1-10 score; reference: embedding cosine of the answer to the reference."""


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


class Difference(BaseModel):
    """A paired mean difference with its bootstrap CI over ``n`` items."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int


class Comparison(Difference):
    """``first`` − ``second`` on one metric, paired per item, overall and per category."""

    name: str = Field(description="first-second, e.g. tuned-base.")
    first: str
    second: str
    metric: Metric
    per_category: dict[str, Difference] = Field(default_factory=dict)


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
    primary_metric: Metric = Field(
        "judge", description="The metric comparisons and the promotion gate rest on (resolved from auto)."
    )
    judge_check: JudgeCheck | None = Field(None, description="The judge's sanity check.")
    comparisons: list[Comparison] = Field(
        default_factory=list, description="Paired differences (tuned-base, ...), on both metrics."
    )
    leakage: Leakage | None = Field(None, description="Eval questions with a near-duplicate in training.")

    def comparison(self, name: str, metric: str | None = None) -> Comparison | None:
        """The comparison ``name`` on ``metric`` (default: the primary metric), if computed."""
        wanted = metric or self.primary_metric
        return next((c for c in self.comparisons if c.name == name and c.metric == wanted), None)


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
    primary_metric: Metric = "judge"
    judge_check: JudgeCheck | None = None
    comparisons: list[Comparison] = Field(default_factory=list)
    scores_path: Path
    pairwise_path: Path
    metrics_path: Path
    report_path: Path
