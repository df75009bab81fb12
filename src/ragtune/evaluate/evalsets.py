"""The two eval sets, each reported on its own: knowledge metrics by likelihood and the judge check.

``generalization`` (``eval.jsonl``) holds items whose source chunks, sections or documents training
never saw; ``knowledge`` (``eval_knowledge.jsonl``) new questions about facts the training set
covers. A set whose file is absent is reported as absent (``present: false``, n 0), not dropped.
Each set's intervals resample its own clusters: for the generalization set what the split held out
together (:func:`~ragtune.evaluate.metrics.bootstrap_unit_for`), for the knowledge set the source
chunk.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from ragtune.core.cache import ContentCache, cache_key
from ragtune.core.llm import ChatModel
from ragtune.core.records import InstructionItem
from ragtune.core.reports.evaluation import ClusterUnit, EvalSetMetrics, JudgeCheck
from ragtune.evaluate.distractors import CorpusTerms, distractors
from ragtune.evaluate.generators import release
from ragtune.evaluate.judge import Judge
from ragtune.evaluate.judgecheck import check_judge
from ragtune.evaluate.knowledge import ProbeSet, build_probes, likelihood_metric
from ragtune.evaluate.likelihood import Choice, MCQuestion, choices, option_scores
from ragtune.evaluate.metrics import MetricSettings, cluster_of

LIKELIHOOD_CACHE_NAMESPACE = "eval-likelihood"
LIKELIHOOD_CACHE_VERSION = "likelihood@1"
"""Part of every cache key: bump it when the scoring changes what a cached choice means."""


class EvalSet(NamedTuple):
    """One eval set: its name, file, items (after ``evaluate.max_items``), the items the judge
    check asks about (after ``evaluate.judge_check_items``) and bootstrap settings."""

    name: str
    file: str
    present: bool
    items: list[InstructionItem]
    check_items: list[InstructionItem]
    settings: MetricSettings


def eval_set(
    name: str,
    file: str,
    present: bool,
    items: list[InstructionItem],
    base: MetricSettings,
    unit: ClusterUnit,
    check_items: list[InstructionItem] | None = None,
) -> EvalSet:
    """An :class:`EvalSet` whose settings cluster its items by ``unit`` (all items checked by default)."""
    clusters = {item.item_id: cluster_of(item, unit) for item in items}
    settings = base.model_copy(update={"bootstrap_unit": unit, "clusters": clusters})
    return EvalSet(name, file, present, items, items if check_items is None else check_items, settings)


class KnowledgeSettings(NamedTuple):
    distractors: int
    statements_per_item: int
    batch_size: int
    min_discrimination: float
    min_consistency: float


def fact_alteration(terms: CorpusTerms, seed: int) -> Callable[[str], str | None]:
    """The judge check's fact-altered answer: the text with its first same-kind swap, if any."""

    def alter(text: str) -> str | None:
        made = distractors(text, terms, 1, seed)
        return made[0] if made else None

    return alter


def _weights(model: ChatModel) -> Callable[[], tuple[object, object]] | None:
    weights = getattr(model, "weights", None)
    return weights if callable(weights) else None


def _decode_choices(size: int) -> Callable[[bytes], list[Choice]]:
    def decode(data: bytes) -> list[Choice]:
        rows = json.loads(data)
        if not isinstance(rows, list) or len(rows) != size:
            raise ValueError(f"expected {size} choices")
        return [Choice(float(correct), float(margin)) for correct, margin in rows]

    return decode


def score_contenders(
    contenders: Mapping[str, ChatModel],
    questions: Sequence[MCQuestion],
    batch_size: int,
    cache: ContentCache | None = None,
) -> tuple[dict[str, list[Choice]], list[str]]:
    """Each contender with local weights answers every question by likelihood; plus who could not.

    A model is loaded once for all questions of every set and released after. The choices are
    cached under the model's identity (its weights' hash) and the questions, so a rerun loads no model.
    """
    picked: dict[str, list[Choice]] = {}
    not_scored: list[str] = []
    for name, contender in contenders.items():
        load = _weights(contender)
        if load is None:
            not_scored.append(name)
            continue
        key = cache_key(LIKELIHOOD_CACHE_VERSION, contender.name, [list(q) for q in questions])
        cached = cache.get_decoded(key, _decode_choices(len(questions))) if cache is not None else None
        if cached is not None:
            picked[name] = cached
            continue
        try:
            model, tokenizer = load()
            scores = option_scores(
                model, tokenizer, questions, batch_size=batch_size, desc=f"likelihood: {name}"
            )
        finally:
            release(contender)
        picked[name] = choices(scores)
        if cache is not None:
            cache.put_json(key, [list(choice) for choice in picked[name]])
    return picked, not_scored


def _split(picked: Mapping[str, list[Choice]], sizes: Sequence[int]) -> list[dict[str, list[Choice]]]:
    """``picked`` cut into consecutive parts of ``sizes`` (one per probe set, in order)."""
    parts, start = [], 0
    for size in sizes:
        parts.append({name: choices_[start : start + size] for name, choices_ in picked.items()})
        start += size
    return parts


def evaluate_sets(
    sets: Sequence[EvalSet],
    judge: Judge,
    contenders: Mapping[str, ChatModel],
    terms: CorpusTerms,
    settings: KnowledgeSettings,
    cache: ContentCache | None = None,
) -> dict[str, EvalSetMetrics]:
    """Every set's ``corpus_facts``, ``dataset_recall`` and judge check (see the module docstring)."""
    seed = sets[0].settings.seed if sets else 0
    probe_sets: list[tuple[EvalSet, ProbeSet, ProbeSet]] = [
        (
            s,
            *build_probes(
                s.items, terms, k=settings.distractors, per_item=settings.statements_per_item, seed=seed
            ),
        )
        for s in sets
    ]
    ordered = [probes for _, facts, recall in probe_sets for probes in (facts, recall)]
    questions = [probe.question for probes in ordered for probe in probes.probes]
    picked, not_scored = score_contenders(contenders, questions, settings.batch_size, cache)
    parts = iter(_split(picked, [len(probes.probes) for probes in ordered]))
    alter = fact_alteration(terms, seed)
    found = {}
    for s, facts, recall in probe_sets:
        metrics = [
            likelihood_metric(
                probes,
                next(parts),
                k=settings.distractors,
                settings=s.settings,
                eval_set=s.name,
                not_scored=not_scored,
            )
            for probes in (facts, recall)
        ]
        found[s.name] = EvalSetMetrics(
            name=s.name,
            file=s.file,
            present=s.present,
            n_items=len(s.items),
            n_clusters=len(set(s.settings.clusters.values())),
            bootstrap_unit=s.settings.bootstrap_unit,
            corpus_facts=metrics[0],
            dataset_recall=metrics[1],
            judge_check=_judge_check(judge, s, settings, alter) if s.check_items else None,
        )
    return found


def _judge_check(
    judge: Judge, s: EvalSet, settings: KnowledgeSettings, alter: Callable[[str], str | None]
) -> JudgeCheck:
    return check_judge(
        judge,
        s.check_items,
        min_discrimination=settings.min_discrimination,
        min_consistency=settings.min_consistency,
        settings=s.settings,
        alter=alter,
    )
