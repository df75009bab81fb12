"""Judge-free knowledge metrics: does the model prefer the corpus's facts to same-kind swaps?

Two multiple-choice metrics per eval set, scored by likelihood (:mod:`ragtune.evaluate.likelihood`)
with the item's question as the closed-book prompt:

- ``corpus_facts`` (primary): the options are a fact-bearing sentence of the item's source chunk
  and up to K distractors with one term swapped (:mod:`ragtune.evaluate.distractors`). Ground
  truth is the corpus, not the teacher that wrote the reference answers.
- ``dataset_recall`` (secondary): the item's reference answer against fact-altered copies of it.

Each contender with local weights (base, tuned, champion) gets accuracy and mean margin with a
cluster-bootstrap interval; tuned is compared with base and champion, paired per statement.
External contenders have no weights to score: they are listed as not scored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from ragtune.core.records import InstructionItem
from ragtune.core.reports.evaluation import (
    COMPARISONS,
    Comparison,
    Difference,
    LikelihoodMetric,
    LikelihoodMetricName,
    LikelihoodScore,
)
from ragtune.evaluate.distractors import CorpusTerms, corpus_statements, distractors
from ragtune.evaluate.generators import answer_messages
from ragtune.evaluate.likelihood import Choice, MCQuestion
from ragtune.evaluate.metrics import MetricSettings
from ragtune.evaluate.stats import Interval


class Probe(NamedTuple):
    """One scored statement: the eval item it belongs to and its multiple-choice question."""

    item_id: str
    category: str
    question: MCQuestion


class ProbeSet(NamedTuple):
    """The probes of one metric on one eval set, and how many items yielded none."""

    metric: LikelihoodMetricName
    probes: list[Probe]
    items_without: int


def _probe_set(
    metric: LikelihoodMetricName,
    items: Sequence[InstructionItem],
    statements: Callable[[InstructionItem], list[str]],
    terms: CorpusTerms,
    k: int,
    seed: int,
) -> ProbeSet:
    probes, without = [], 0
    for item in items:
        found = [
            Probe(item.item_id, item.category, MCQuestion(answer_messages(item), [text, *wrong]))
            for text in statements(item)
            if (wrong := distractors(text, terms, k, seed))
        ]
        without += not found
        probes += found
    return ProbeSet(metric, probes, without)


def build_probes(
    items: Sequence[InstructionItem], terms: CorpusTerms, *, k: int, per_item: int, seed: int
) -> tuple[ProbeSet, ProbeSet]:
    """``corpus_facts`` (source-chunk sentences) and ``dataset_recall`` (the reference) probes."""
    facts = _probe_set(
        "corpus_facts", items, lambda item: corpus_statements(item, terms, per_item), terms, k, seed
    )
    recall = _probe_set("dataset_recall", items, lambda item: [item.answer], terms, k, seed)
    return facts, recall


def _difference(interval: Interval | None) -> Difference:
    if interval is None:
        return Difference(mean=None, ci_low=None, ci_high=None, n=0)
    return Difference(mean=interval.mean, ci_low=interval.low, ci_high=interval.high, n=interval.n)


def _contender_score(
    name: str, probes: Sequence[Probe], picks: Sequence[Choice], settings: MetricSettings, purpose: str
) -> LikelihoodScore:
    ids = [p.item_id for p in probes]
    accuracy = settings.interval([c.correct for c in picks], ids, f"{purpose}:{name}:accuracy")
    margin = settings.interval([c.margin for c in picks], ids, f"{purpose}:{name}:margin")
    return LikelihoodScore(
        contender=name,
        n_statements=len(picks),
        n_clusters=accuracy.n_clusters if accuracy else 0,
        accuracy=accuracy.mean if accuracy else None,
        accuracy_ci_low=accuracy.low if accuracy else None,
        accuracy_ci_high=accuracy.high if accuracy else None,
        margin_mean=margin.mean if margin else None,
        margin_ci_low=margin.low if margin else None,
        margin_ci_high=margin.high if margin else None,
    )


def _paired(
    probes: Sequence[Probe],
    first: Sequence[Choice],
    second: Sequence[Choice],
    settings: MetricSettings,
    purpose: str,
) -> tuple[Difference, Difference]:
    """Paired differences of accuracy and margin, per statement, over clusters."""
    ids = [p.item_id for p in probes]
    accuracy = settings.interval(
        [a.correct - b.correct for a, b in zip(first, second, strict=True)], ids, f"{purpose}:accuracy"
    )
    margin = settings.interval(
        [a.margin - b.margin for a, b in zip(first, second, strict=True)], ids, f"{purpose}:margin"
    )
    return _difference(accuracy), _difference(margin)


def _comparisons(
    probes: Sequence[Probe],
    picked: Mapping[str, Sequence[Choice]],
    settings: MetricSettings,
    metric: LikelihoodMetricName,
    purpose: str,
) -> list[Comparison]:
    found = []
    for first, second in COMPARISONS:
        if first not in picked or second not in picked:
            continue
        name = f"{first}-{second}"
        overall, margin = _paired(probes, picked[first], picked[second], settings, f"{purpose}:{name}")
        per_category = {}
        for category in sorted({p.category for p in probes}):
            rows = [i for i, p in enumerate(probes) if p.category == category]
            per_category[category], _ = _paired(
                [probes[i] for i in rows],
                [picked[first][i] for i in rows],
                [picked[second][i] for i in rows],
                settings,
                f"{purpose}:{name}:{category}",
            )
        found.append(
            Comparison(
                name=name,
                first=first,
                second=second,
                metric=metric,
                per_category=per_category,
                margin=margin,
                **overall.model_dump(),
            )
        )
    return found


def likelihood_metric(
    probe_set: ProbeSet,
    picked: Mapping[str, Sequence[Choice]],
    *,
    k: int,
    settings: MetricSettings,
    eval_set: str,
    not_scored: Sequence[str] = (),
) -> LikelihoodMetric:
    """One metric's report on one eval set from the contenders' choices on its probes."""
    probes = probe_set.probes
    purpose = f"{eval_set}:{probe_set.metric}"
    clusters = set(settings.cluster_labels([p.item_id for p in probes]))
    return LikelihoodMetric(
        metric=probe_set.metric,
        n_items=len({p.item_id for p in probes}),
        n_statements=len(probes),
        n_clusters=len(clusters),
        distractors=k,
        items_without_statement=probe_set.items_without,
        contenders={
            name: _contender_score(name, probes, picks, settings, purpose) for name, picks in picked.items()
        },
        comparisons=_comparisons(probes, picked, settings, probe_set.metric, purpose),
        not_scored=list(not_scored),
    )
