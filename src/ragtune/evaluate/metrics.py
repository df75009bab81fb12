"""From per-item rows to the numbers in ``metrics.json`` (sums, means with CIs, delta, win rates)."""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from ragtune.core.records import InstructionItem
from ragtune.core.reports.evaluation import (
    BASE,
    COMPARISONS,
    TUNED,
    CategoryScore,
    ClusterUnit,
    Comparison,
    ContenderSummary,
    Difference,
    EvalMetrics,
    JudgeCheck,
    Leakage,
    Metric,
    PairwiseSummary,
)
from ragtune.evaluate.schema import PairRow, ScoreRow
from ragtune.evaluate.stats import (
    Interval,
    bootstrap_mean_ci,
    mean_or_none,
    paired_bootstrap_ci,
    score_sum,
    tally_outcomes,
)


class JudgeInfo(BaseModel):
    model: str
    base_url: str | None
    is_weak: bool
    templates: dict[str, str]


class MetricSettings(BaseModel):
    seed: int
    bootstrap_samples: int
    confidence: float
    max_new_tokens: int
    bootstrap_unit: ClusterUnit = "item"
    clusters: dict[str, str] = Field(
        default_factory=dict, description="item_id -> its cluster (an item missing here is its own)."
    )

    def cluster_labels(self, item_ids: Sequence[str]) -> list[str]:
        """The bootstrap cluster of each item (the item itself where none is known)."""
        return [self.clusters.get(i, f"item:{i}") for i in item_ids]

    def interval(self, values: Sequence[float], item_ids: Sequence[str], purpose: str) -> Interval | None:
        """:func:`bootstrap_mean_ci` of per-item ``values``, clustered, with the ``purpose``'s generator."""
        return bootstrap_mean_ci(
            values,
            samples=self.bootstrap_samples,
            confidence=self.confidence,
            rng=_rng(self.seed, purpose),
            clusters=self.cluster_labels(item_ids),
        )


def cluster_of(item: InstructionItem, unit: ClusterUnit) -> str:
    """The bootstrap cluster of ``item`` under ``unit`` (items sharing it are resampled together)."""
    provenance = item.provenance
    if unit == "document":
        return f"doc:{provenance.doc_id}"
    if unit == "section":
        return "section:" + "/".join([provenance.doc_id, *provenance.section_path])
    if unit == "source_chunk":
        return f"chunk:{provenance.source_chunk_id}"
    return f"item:{item.item_id}"


def bootstrap_unit_for(holdout: str) -> ClusterUnit:
    """The cluster the held-out split implies: what was held out together is drawn together."""
    return {"documents": "document", "sections": "section"}.get(holdout, "source_chunk")  # type: ignore[return-value]


def _rng(seed: int, purpose: str) -> np.random.Generator:
    """A generator per purpose, so adding a contender does not change another one's interval."""
    return np.random.default_rng([seed, zlib.crc32(purpose.encode("utf-8"))])


def summarize_contender(name: str, rows: Sequence[ScoreRow], settings: MetricSettings) -> ContenderSummary:
    scores = [r.score for r in rows]
    scored_rows = [r for r in rows if r.score is not None]
    scored = [float(r.score or 0) for r in scored_rows]
    interval = settings.interval(scored, [r.item_id for r in scored_rows], f"mean:{name}")
    categories = sorted({r.category for r in rows})
    per_category = {}
    for category in categories:
        in_category = [r.score for r in rows if r.category == category and r.score is not None]
        per_category[category] = CategoryScore(
            n_scored=len(in_category), score_mean=mean_or_none(in_category)
        )
    answered = [r for r in rows if r.answer is not None]
    return ContenderSummary(
        name=name,
        model=rows[0].model if rows else "",
        n_items=len(rows),
        n_answered=len(answered),
        n_scored=len(scored),
        answer_failures=len(rows) - len(answered),
        judge_failures=sum(1 for r in answered if r.score is None),
        score_sum=score_sum(scores),
        score_mean=interval.mean if interval else None,
        score_ci_low=interval.low if interval else None,
        score_ci_high=interval.high if interval else None,
        rouge_l_mean=mean_or_none([r.rouge_l for r in rows]),
        cosine_mean=mean_or_none([r.cosine for r in rows]),
        per_category=per_category,
    )


def metric_value(row: ScoreRow, metric: Metric) -> float | None:
    """One row's value on ``metric``: the judge score, or the answer's cosine to the reference."""
    value = row.score if metric == "judge" else row.cosine
    return None if value is None else float(value)


def paired_interval(
    rows: Sequence[ScoreRow], first: str, second: str, metric: Metric, settings: MetricSettings
) -> Interval | None:
    """``first`` − ``second`` over the items both have a value for, with a paired bootstrap CI."""
    values = {(r.item_id, r.contender): metric_value(r, metric) for r in rows}
    items = list(dict.fromkeys(r.item_id for r in rows))
    both = [i for i in items if values.get((i, first)) is not None and values.get((i, second)) is not None]
    purpose = f"delta:{first}-{second}" + ("" if metric == "judge" else f":{metric}")
    return paired_bootstrap_ci(
        [values[(i, first)] or 0.0 for i in both],
        [values[(i, second)] or 0.0 for i in both],
        samples=settings.bootstrap_samples,
        confidence=settings.confidence,
        rng=_rng(settings.seed, purpose),
        clusters=settings.cluster_labels(both),
    )


def paired_difference(
    rows: Sequence[ScoreRow], first: str, second: str, metric: Metric, settings: MetricSettings
) -> Difference:
    interval = paired_interval(rows, first, second, metric, settings)
    if interval is None:
        return Difference(mean=None, ci_low=None, ci_high=None, n=0)
    return Difference(mean=interval.mean, ci_low=interval.low, ci_high=interval.high, n=interval.n)


def compute_comparisons(
    rows: Sequence[ScoreRow], contender_names: Sequence[str], settings: MetricSettings
) -> list[Comparison]:
    """Every pair of :data:`COMPARISONS` whose two contenders were evaluated, on both metrics."""
    comparisons = []
    categories = sorted({r.category for r in rows})
    for first, second in COMPARISONS:
        if first not in contender_names or second not in contender_names:
            continue
        for metric in ("judge", "reference"):
            overall = paired_difference(rows, first, second, metric, settings)
            per_category = {
                category: paired_difference(
                    [r for r in rows if r.category == category], first, second, metric, settings
                )
                for category in categories
            }
            comparisons.append(
                Comparison(
                    name=f"{first}-{second}",
                    first=first,
                    second=second,
                    metric=metric,
                    per_category=per_category,
                    **overall.model_dump(),
                )
            )
    return comparisons


def compute_metrics(
    rows: Sequence[ScoreRow],
    pairs: Sequence[PairRow],
    *,
    contender_names: Sequence[str],
    judge: JudgeInfo,
    settings: MetricSettings,
    llm_usage: dict[str, dict[str, object]] | None = None,
    warnings: Sequence[str] = (),
    primary_metric: Metric = "judge",
    judge_check: JudgeCheck | None = None,
    leakage: Leakage | None = None,
) -> EvalMetrics:
    """Every number of ``metrics.json`` from the rows (one per item × contender) and pair rows."""
    by_contender = {name: [r for r in rows if r.contender == name] for name in contender_names}
    summaries = {name: summarize_contender(name, by_contender[name], settings) for name in contender_names}
    item_ids = list(dict.fromkeys(r.item_id for r in rows))
    score_of = {(r.item_id, r.contender): r.score for r in rows}

    common = [i for i in item_ids if all(score_of.get((i, name)) is not None for name in contender_names)]
    sums_common = {name: score_sum([score_of[(i, name)] for i in common]) for name in contender_names}

    delta = None
    if BASE in contender_names and TUNED in contender_names:
        delta = paired_interval(rows, TUNED, BASE, "judge", settings)
    delta_n = delta.n if delta else 0

    pairwise = {}
    for name in contender_names:
        outcomes = [p.outcome for p in pairs if p.contender == name]
        if outcomes:
            pairwise[name] = PairwiseSummary(contender=name, **tally_outcomes(outcomes).model_dump())

    failures = {
        "answers": {name: s.answer_failures for name, s in summaries.items()},
        "judge_scores": {name: s.judge_failures for name, s in summaries.items()},
        "judge_pairwise": {name: p.failures for name, p in pairwise.items()},
    }
    parse_counts = Counter(r.parsed_from for r in rows if r.parsed_from is not None)
    return EvalMetrics(
        judge_model=judge.model,
        judge_base_url=judge.base_url,
        judge_is_weak=judge.is_weak,
        judge_templates=judge.templates,
        n_items=len(item_ids),
        categories=sorted({r.category for r in rows}),
        contender_names=list(contender_names),
        seed=settings.seed,
        bootstrap_samples=settings.bootstrap_samples,
        confidence=settings.confidence,
        max_new_tokens=settings.max_new_tokens,
        contenders=summaries,
        means={name: s.score_mean for name, s in summaries.items()},
        sums={name: s.score_sum for name, s in summaries.items()},
        n_common=len(common),
        sums_common=sums_common,
        delta_mean=delta.mean if delta else None,
        delta_ci_low=delta.low if delta else None,
        delta_ci_high=delta.high if delta else None,
        delta_n=delta_n,
        delta_prob_positive=delta.prob_positive if delta else None,
        pairwise=pairwise,
        failures=failures,
        failures_total=sum(sum(group.values()) for group in failures.values()),
        judge_parse={key: parse_counts.get(key, 0) for key in ("json", "partial_json", "text")},
        llm_usage=llm_usage or {},
        warnings=list(warnings),
        primary_metric=primary_metric,
        judge_check=judge_check,
        comparisons=compute_comparisons(rows, contender_names, settings),
        leakage=leakage,
        bootstrap_unit=settings.bootstrap_unit,
    )
