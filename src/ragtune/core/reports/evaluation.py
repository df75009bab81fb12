"""What the evaluate stage reports: the report file of an :class:`~ragtune.core.artifacts.EvaluationDir`
(``metrics.json``) is :class:`EvalMetrics`.

It lives in core because the registry reads it too (``EvaluationDir(path).read_report(EvalMetrics)``):
the gate reads ``primary_metric``, ``judge_check`` and the paired ``comparisons`` on the primary metric
(``tuned-base``, ``tuned-champion``); ``delta_*`` stay tuned − base on the judge, and each contender's
``contenders.<name>.score_mean`` (also flat in ``means``) its mean judge score. The evaluate stage
computes these numbers (bootstrap, judge check, leakage); only their models are here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

METRICS_SCHEMA_VERSION = 2
BASE, TUNED, BASE_RAG, TUNED_RAG, CHAMPION = "base", "tuned", "base_rag", "tuned_rag", "champion"
COMPARISONS = ((TUNED, BASE), (TUNED, BASE_RAG), (TUNED_RAG, BASE_RAG), (TUNED, CHAMPION))
"""The paired differences the report answers: does tuning beat the base, beat RAG alone, add to
RAG, and beat the current champion."""

Metric = Literal["judge", "reference"]
"""judge: the LLM judge's 1-10 score; reference: embedding cosine of the answer to the reference."""

Verdict = Literal["A", "B", "tie"]
"""What the judge said about one ordering: answer A better, answer B better, or a tie."""

Outcome = Literal["win", "tie", "loss"]
"""The combined result of both orderings, from the first contender's side."""

LEAKAGE_NGRAM = 13
"""Word n-gram length an eval question shares with training data to count as leaking."""


class WinTieLoss(BaseModel):
    """Counts of combined pairwise outcomes; rates are over the decided items (failures excluded)."""

    n_items: int
    n_decided: int
    wins: int
    ties: int
    losses: int
    failures: int
    win_rate: float | None
    tie_rate: float | None
    loss_rate: float | None


class JudgeCheck(BaseModel):
    """The sanity check's numbers and verdict (``metrics.json`` ``judge_check``)."""

    n: int = Field(description="Items checked (those with a mismatched answer from another category).")
    discrimination: float | None = Field(
        description="Share of checked items where the reference answer scored above the mismatched one."
    )
    consistency: float | None = Field(
        description="Share of checked items whose pairwise verdict was the same in both answer orders."
    )
    reference_wins: float | None = Field(
        None, description="Share of checked items where the reference won pairwise in both orders."
    )
    score_gap: float | None = Field(description="Mean reference score − mismatched score (scored items).")
    min_discrimination: float
    min_consistency: float
    passed: bool
    reasons: list[str] = Field(default_factory=list, description="Why the judge is flagged, if it is.")


class Leakage(BaseModel):
    """``metrics.json`` ``leakage``: how many eval questions have a near-duplicate in training."""

    n_eval: int
    n_train: int
    ngram: int = LEAKAGE_NGRAM
    cosine_threshold: float
    ngram_hits: int = Field(
        description="Eval questions sharing a 13-gram with a training question or answer."
    )
    embedding_hits: int = Field(description="Eval questions at or above the cosine threshold.")
    leaked: int = Field(description="Eval questions with either kind of near-duplicate.")
    share: float = Field(description="leaked / n_eval.")
    max_share: float = Field(description="evaluate.max_leakage: above it the stage fails.")
    item_ids: list[str] = Field(default_factory=list, description="Some leaking eval items (at most 20).")


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
    adapter_sha256: str | None = Field(
        None,
        description="sha256 of the adapter files the tuned contender was (adapter_fingerprint); the gate refuses another.",
    )

    def comparison(self, name: str, metric: str | None = None) -> Comparison | None:
        """The comparison ``name`` on ``metric`` (default: the primary metric), if computed."""
        wanted = metric or self.primary_metric
        return next((c for c in self.comparisons if c.name == name and c.metric == wanted), None)
