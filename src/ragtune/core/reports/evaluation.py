"""What the evaluate stage reports: the report file of an :class:`~ragtune.core.artifacts.EvaluationDir`
(``metrics.json``) is :class:`EvalMetrics`.

It lives in core because the registry reads it too (``EvaluationDir(path).read_report(EvalMetrics)``):
the gate reads ``primary_metric`` (``judge`` or ``corpus_facts`` under ``auto``), ``primary_eval_set``,
``judge_check`` and, through :meth:`EvalMetrics.comparison`, the paired difference on the primary
metric (``tuned-base``, ``tuned-champion``) — for a likelihood metric that is the comparison of
``eval_sets[primary_eval_set]``. ``delta_*`` stay tuned − base on the judge, and each contender's
``contenders.<name>.score_mean`` (also flat in ``means``) its mean judge score. Every interval is a
cluster bootstrap over ``bootstrap_unit`` (items sharing a source chunk, or a document when the split
held out documents, are resampled together). The evaluate stage computes these numbers; only their
models are here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

METRICS_SCHEMA_VERSION = 3
BASE, TUNED, BASE_RAG, TUNED_RAG, CHAMPION = "base", "tuned", "base_rag", "tuned_rag", "champion"
COMPARISONS = ((TUNED, BASE), (TUNED, BASE_RAG), (TUNED_RAG, BASE_RAG), (TUNED, CHAMPION))
"""The paired differences the report answers: does tuning beat the base, beat RAG alone, add to
RAG, and beat the current champion."""

Metric = Literal["judge", "reference", "corpus_facts", "dataset_recall"]
"""judge: the LLM judge's 1-10 score; reference: embedding cosine of the answer to the reference;
corpus_facts: closed-book multiple choice between a statement of the source documents and copies with
one fact-bearing term swapped, scored by likelihood (accuracy); dataset_recall: the same with the
reference answer and fact-altered copies of it."""

LikelihoodMetricName = Literal["corpus_facts", "dataset_recall"]
LIKELIHOOD_METRICS: tuple[LikelihoodMetricName, ...] = ("corpus_facts", "dataset_recall")

ClusterUnit = Literal["item", "source_chunk", "section", "document"]
"""What the bootstrap resamples: items sharing one are drawn together (they are not independent)."""

GENERALIZATION, KNOWLEDGE = "generalization", "knowledge"
EVAL_SETS = (GENERALIZATION, KNOWLEDGE)
"""generalization: items whose source chunks (or sections, documents) training never saw (eval.jsonl);
knowledge: new questions about facts the training set covers (eval_knowledge.jsonl)."""

CheckKind = Literal["off_topic", "fact_altered", "truncated"]
"""Known-worse answers of the judge check: another category's reference (a topic detector passes),
the reference with one fact swapped (same wording, wrong fact) and the reference cut short."""

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


class Share(BaseModel):
    """A share of items with its cluster-bootstrap interval over ``n`` items."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int


class JudgeCheckKind(BaseModel):
    """The judge check on one kind of known-worse answer."""

    kind: CheckKind
    n: int = Field(description="Items with an answer of this kind.")
    discrimination: Share = Field(description="Reference scored above the worse answer.")
    consistency: Share = Field(description="Pairwise verdict the same in both answer orders.")
    reference_wins: Share = Field(description="Reference won pairwise in both orders.")
    score_gap: float | None = Field(description="Mean reference score − worse score (scored items).")


class JudgeCheck(BaseModel):
    """The sanity check's numbers and verdict (``metrics.json`` ``judge_check``).

    ``passed`` applies the thresholds to the *lower* interval bounds of every kind in ``kinds``; the
    flat ``discrimination``/``consistency`` are over all kinds together.
    """

    n: int = Field(description="Items checked (those with at least one known-worse answer).")
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
    kinds: dict[str, JudgeCheckKind] = Field(
        default_factory=dict, description="Per kind of known-worse answer, with intervals."
    )
    bootstrap_unit: ClusterUnit = "item"


class Leakage(BaseModel):
    """``metrics.json`` ``leakage``: how many eval items have a question, answer or context near-duplicate in training."""

    n_eval: int
    n_train: int
    ngram: int = LEAKAGE_NGRAM
    cosine_threshold: float
    ngram_hits: int = Field(
        description="Eval questions sharing a 13-gram with a training question or answer."
    )
    embedding_hits: int = Field(description="Eval questions at or above the cosine threshold.")
    leaked: int = Field(description="Eval items with any kind of near-duplicate (question, answer, context).")
    share: float = Field(description="leaked / n_eval.")
    max_share: float = Field(description="evaluate.max_leakage: above it the stage fails.")
    item_ids: list[str] = Field(default_factory=list, description="Some leaking eval items (at most 20).")
    answer_hits: int = Field(
        0,
        description="Eval answers sharing a 13-gram with a training answer, or at or above the cosine threshold.",
    )
    context_hits: int = Field(
        0,
        description=(
            "Eval items whose source or retrieved chunks a training answer rested on (retrieved) or"
            " quotes (a shared 13-gram)."
        ),
    )


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
    margin: Difference | None = Field(
        None, description="Likelihood metrics: paired difference of the mean margin (mean is accuracy)."
    )


class LikelihoodScore(BaseModel):
    """One contender on one likelihood metric: accuracy and mean margin, with cluster intervals."""

    contender: str
    n_statements: int
    n_clusters: int
    accuracy: float | None = Field(description="Share of statements scored above all their distractors.")
    accuracy_ci_low: float | None
    accuracy_ci_high: float | None
    margin_mean: float | None = Field(
        description="Mean of (statement − best distractor) length-normalised log-likelihood."
    )
    margin_ci_low: float | None
    margin_ci_high: float | None


class LikelihoodMetric(BaseModel):
    """``corpus_facts`` or ``dataset_recall`` on one eval set: multiple choice scored by likelihood."""

    metric: LikelihoodMetricName
    n_items: int = Field(description="Eval items with at least one scored statement.")
    n_statements: int
    n_clusters: int
    distractors: int = Field(description="Distractors per statement at most (K).")
    items_without_statement: int = Field(description="Items with no statement that has a distractor.")
    contenders: dict[str, LikelihoodScore] = Field(default_factory=dict)
    comparisons: list[Comparison] = Field(default_factory=list, description="tuned-base, tuned-champion.")
    not_scored: list[str] = Field(
        default_factory=list, description="Contenders without local weights (external endpoints): not scored."
    )


class EvalSetMetrics(BaseModel):
    """One eval set's judge-free knowledge metrics and judge check (``metrics.json`` ``eval_sets``)."""

    name: str
    file: str
    present: bool = Field(description="False: the file was absent or empty (n_items 0).")
    n_items: int
    n_clusters: int
    bootstrap_unit: ClusterUnit
    corpus_facts: LikelihoodMetric | None = None
    dataset_recall: LikelihoodMetric | None = None
    judge_check: JudgeCheck | None = None

    def likelihood(self, metric: str) -> LikelihoodMetric | None:
        return (
            self.corpus_facts
            if metric == "corpus_facts"
            else self.dataset_recall
            if metric == "dataset_recall"
            else None
        )


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
    bootstrap_unit: ClusterUnit = Field(
        "item", description="What every interval's bootstrap resamples (generalization set)."
    )
    eval_sets: dict[str, EvalSetMetrics] = Field(
        default_factory=dict, description="generalization and knowledge: likelihood metrics, judge check."
    )
    primary_eval_set: str = Field(
        GENERALIZATION, description="The eval set whose comparison decides, for a likelihood primary metric."
    )
    adapter_sha256: str | None = Field(
        None,
        description="sha256 of the adapter files the tuned contender was (adapter_fingerprint); the gate refuses another.",
    )

    def comparison(
        self, name: str, metric: str | None = None, eval_set: str | None = None
    ) -> Comparison | None:
        """The comparison ``name`` on ``metric`` (default: the primary metric), if computed.

        A likelihood metric's comparison comes from ``eval_sets[eval_set]`` (default: the primary
        eval set); the judge's and the reference cosine's from ``comparisons`` (generalization set).
        """
        wanted = metric or self.primary_metric
        if wanted in LIKELIHOOD_METRICS:
            found = self.eval_sets.get(eval_set or self.primary_eval_set)
            scored = found.likelihood(wanted) if found is not None else None
            pool = scored.comparisons if scored is not None else []
        else:
            pool = self.comparisons
        return next((c for c in pool if c.name == name and c.metric == wanted), None)
