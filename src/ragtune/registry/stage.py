"""The registry stage of the pipeline: track the run, register the adapter, decide its alias.

:func:`run_registry` is the one entry the pipeline component (and ``ragtune run``) calls.
It logs the dataset, train and evaluate stages into the pipeline's MLflow run (params, metrics with
the loss curve as step metrics, and their files: dataset card, train metrics, eval report, scores
and metrics), registers the adapter as a new model version with its lineage, applies the promotion
rule and writes ``decision.json`` to ``out_dir``. Rerunning it for the same pipeline run reuses the
MLflow run and the model version.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from ragtune.core.artifacts import Artifact, DatasetDir, DecisionDir, DocumentsDir, EvaluationDir, ModelDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import InputError
from ragtune.core.modelload import read_adapter_meta
from ragtune.core.records import documents_fingerprint
from ragtune.core.reports.evaluation import EvalMetrics
from ragtune.core.reports.synth import SynthReport
from ragtune.core.reports.train import LossPoint, TrainReport
from ragtune.registry.evalsummary import EvalSummary
from ragtune.registry.promote import PromotionDecision, promote
from ragtune.registry.register import ModelVersionInfo, adapter_sha256, register_model
from ragtune.registry.tracking import (
    MetricValue,
    client_for,
    display_uri,
    experiment_name,
    log_stage,
    numeric_leaves,
    set_run_tags,
    start_pipeline_run,
    tracking_uri,
)

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)

#: The :class:`SynthReport` fields logged as metrics of the ``dataset`` stage.
SYNTH_METRIC_FIELDS = frozenset(
    {
        "generated",
        "kept",
        "train",
        "eval",
        "rejected",
        "kept_share",
        "rejected_by_reason",
        "retried",
        "kept_after_retry",
        "items_repaired",
        "cache_hits",
        "cache_misses",
        "llm_stats",
        "elapsed_s",
    }
)


class MlflowPointer(BaseModel):
    """Where the pipeline run was tracked."""

    tracking_uri: str = Field(description="Tracking URI as shown to users (credentials removed).")
    experiment: str
    run_id: str
    pipeline_run_id: str


class DecisionRecord(PromotionDecision):
    """``decision.json``: the promotion decision plus the version, the MLflow run and the evidence."""

    model_version: ModelVersionInfo
    mlflow: MlflowPointer
    eval: EvalSummary


def train_metrics(report: TrainReport) -> dict[str, MetricValue]:
    """The train report as MLflow metrics: its scalars, and the loss curve as step series.

    Every loss of :class:`~ragtune.core.reports.train.LossPoint` (``loss``, ``eval_loss``) becomes a
    series named after it, with the points where it was measured.
    """
    metrics: dict[str, MetricValue] = dict(numeric_leaves(report.model_dump(mode="json")))
    for name in (field for field in LossPoint.model_fields if field != "step"):
        points = [(p.step, value) for p in report.loss_curve if (value := getattr(p, name)) is not None]
        if points:
            metrics[name] = points
    return metrics


def eval_metrics(metrics: EvalMetrics) -> dict[str, MetricValue]:
    """The evaluation report as MLflow metrics: every number in it, by slash-joined path.

    The paired comparisons (a list in the file) are keyed ``comparisons/<name>/<metric>/...`` and the
    judge check's verdict is ``judge_check/passed`` (1 or 0), so the evidence is searchable in MLflow.
    """
    found: dict[str, MetricValue] = dict(numeric_leaves(metrics.model_dump(mode="json")))
    for comparison in metrics.comparisons:
        prefix = f"comparisons/{comparison.name}/{comparison.metric}"
        found.update(numeric_leaves(comparison.model_dump(mode="json"), prefix))
    if metrics.judge_check is not None:
        found["judge_check/passed"] = float(metrics.judge_check.passed)
    return found


def read_train_report(train_dir: Path) -> TrainReport | None:
    """The train stage's report, ``None`` (with a warning) when the folder has none."""
    return _optional_report(ModelDir(train_dir), TrainReport)


def read_synth_report(dataset_dir: Path) -> SynthReport | None:
    """The synthesis stage's report, ``None`` (with a warning) when the dataset has none."""
    return _optional_report(DatasetDir(dataset_dir), SynthReport)


def _optional_report(artifact: Artifact, model: type[R]) -> R | None:
    """A report the registry logs but does not decide on: its absence costs only its metrics.

    A report that is there but does not validate is an InputError naming the file and the field.
    """
    if not artifact.report_path.is_file():
        log.warning(
            "%s: no %s; its stage is logged without its metrics", artifact.report_path, model.__name__
        )
        return None
    return artifact.read_report(model)


def synth_metrics(report: SynthReport) -> dict[str, MetricValue]:
    """The synthesis report's numbers worth comparing across runs, as MLflow metrics.

    Sizes and yield, rejections by reason, retries, cache use and each LLM role's stats: the
    concurrency adaptive limiting settled on, the rounds sent and the time spent waiting on the
    model (``llm_stats/generator/concurrency`` ...). Per-category counts stay in the file.
    """
    logged = report.model_dump(mode="json", include=set(SYNTH_METRIC_FIELDS))
    return dict(numeric_leaves(logged))


def dataset_system_prompt(dataset_dir: Path) -> str | None:
    """The system message of the dataset's first training item (what the model was tuned with)."""
    path = DatasetDir(dataset_dir).train_path
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                return None
            for message in item.get("messages") or []:
                if isinstance(message, Mapping) and message.get("role") == "system":
                    return str(message.get("content", "")) or None
            return None
    return None


def _count_lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def _existing(paths: Sequence[Path]) -> list[Path]:
    return [p for p in paths if p.exists()]


def pipeline_lineage(documents_dir: Path, git_revision: str | None = None) -> dict[str, str]:
    """The lineage every caller of :func:`run_registry` records: the parsed corpus's hash and the git
    revision the run was submitted for (when there is one; else the tags fall back to ``git_revision()``).

    The KFP component and any local caller compute it here, so a model version gets the same
    ``ragtune.corpus_hash`` / ``ragtune.git_commit`` tags however it was registered.
    """
    lineage = {"corpus_hash": documents_fingerprint(DocumentsDir(documents_dir).documents_path)}
    if git_revision:
        lineage["git_commit"] = git_revision
    return lineage


def check_scored_adapter(metrics: EvalMetrics, metrics_path: Path, adapter_dir: Path) -> None:
    """Refuse to register an adapter other than the one the evaluation scored (one line naming both)."""
    registered = adapter_sha256(adapter_dir)
    if metrics.adapter_sha256 != registered:
        scored = metrics.adapter_sha256 or "no adapter digest (an evaluation without adapter_sha256)"
        raise InputError(
            f"{metrics_path}: scored {scored}, but {adapter_dir} is adapter {registered};"
            " evaluate this adapter or register the one that was scored"
        )


def run_registry(
    config: RagtuneConfig,
    train_dir: Path,
    eval_dir: Path,
    dataset_dir: Path,
    lineage: Mapping[str, Any],
    pipeline_run_id: str,
    out_dir: Path,
    force: bool = False,
) -> PromotionDecision:
    """Log the run's stages to MLflow, register the adapter, promote it; write ``out_dir/decision.json``.

    Reads ``train_dir/adapter/`` and the train report (``TrainReport``; logged without it when
    absent), the evaluation report (``EvalMetrics``), ``report.html``, ``scores.jsonl`` and
    ``pairwise.jsonl`` (evaluate stage), and
    ``dataset_dir/README.md`` (the dataset card), ``train.jsonl``/``eval.jsonl`` (for counts and
    the system message) and ``synth_report.json`` (``SynthReport``; its counts and LLM stats are
    logged as the dataset stage's metrics, which are logged without them when it is absent). ``lineage`` holds at least ``corpus_hash`` and ``dataset_hash``.
    """
    train_dir, eval_dir, dataset_dir, out_dir = (
        Path(train_dir),
        Path(eval_dir),
        Path(dataset_dir),
        Path(out_dir),
    )
    adapter_dir = ModelDir(train_dir).adapter_dir
    manifest = read_adapter_meta(adapter_dir).model_dump(mode="json")  # fail before anything is logged
    evaluation = EvaluationDir(eval_dir)
    eval_report = evaluation.read_report(EvalMetrics)
    check_scored_adapter(eval_report, evaluation.report_path, adapter_dir)
    summary = EvalSummary.from_metrics(eval_report)
    train_report = read_train_report(train_dir)
    synth_report = read_synth_report(dataset_dir)

    run_id = start_pipeline_run(config, pipeline_run_id)

    counts: dict[str, MetricValue] = {
        f"{split}_items": n
        for split in ("train", "eval", "rejected")
        if (n := _count_lines(dataset_dir / f"{split}.jsonl")) is not None
    }
    if synth_report is not None:
        counts.update(synth_metrics(synth_report))
    log_stage(
        config,
        run_id,
        "dataset",
        params={"lineage": dict(lineage)} if lineage else None,
        metrics=counts,
        artifacts=_existing([DatasetDir(dataset_dir).card_path, *sorted(dataset_dir.glob("*.json"))]),
    )

    log_stage(
        config,
        run_id,
        "train",
        params=manifest,
        metrics=train_metrics(train_report) if train_report is not None else None,
        artifacts=_existing(
            [
                ModelDir(train_dir).report_path,
                adapter_dir / ModelDir.ADAPTER_META,
                adapter_dir / "adapter_config.json",
                *sorted(train_dir.glob("*.png")),
            ]
        ),
    )

    log_stage(
        config,
        run_id,
        "evaluate",
        metrics=eval_metrics(eval_report),
        artifacts=_existing(
            [
                evaluation.report_path,
                evaluation.html_path,
                evaluation.scores_path,
                evaluation.pairwise_path,
                *sorted(eval_dir.glob("*.png")),
            ]
        ),
    )

    info = register_model(
        config,
        run_id,
        adapter_dir,
        summary,
        lineage,
        system_prompt=dataset_system_prompt(dataset_dir),
    )
    decision = promote(config, info, summary, force=force)

    client = client_for(config)
    set_run_tags(
        config,
        run_id,
        {
            "ragtune.promotion": decision.alias,
            "ragtune.promotion_reason": decision.reason,
        },
    )
    client.set_terminated(run_id)

    out_dir.mkdir(parents=True, exist_ok=True)
    record = DecisionRecord(
        **decision.model_dump(),
        model_version=info,
        mlflow=MlflowPointer(
            tracking_uri=display_uri(tracking_uri(config)),
            experiment=experiment_name(config),
            run_id=run_id,
            pipeline_run_id=pipeline_run_id,
        ),
        eval=summary,
    )
    DecisionDir(out_dir).write_report(record)
    return decision


def read_decision(out_dir: Path) -> DecisionRecord:
    """The ``decision.json`` :func:`run_registry` wrote to ``out_dir`` (an InputError naming it if unreadable)."""
    return DecisionDir(out_dir).read_report(DecisionRecord)
