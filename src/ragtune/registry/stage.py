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
from typing import Any

from pydantic import BaseModel, Field

from ragtune.core.artifacts import DatasetDir, DecisionDir, DocumentsDir, EvaluationDir, ModelDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.modelload import read_adapter_meta
from ragtune.core.records import documents_fingerprint, read_json_object
from ragtune.registry.evalsummary import EvalSummary
from ragtune.registry.promote import PromotionDecision, promote
from ragtune.registry.register import ModelVersionInfo, register_model
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


_CURVE_KEYS = ("loss_curve", "curve", "history", "log_history")


def train_metrics(data: Mapping[str, Any]) -> dict[str, MetricValue]:
    """Train ``metrics.json`` as MLflow metrics: the scalars, and the loss curve as step series.

    The curve is a list of points such as ``{"step": 10, "loss": 1.9, "eval_loss": 2.1}``; every
    numeric field other than ``step`` becomes a series named after it.
    """
    metrics: dict[str, MetricValue] = dict(numeric_leaves(data))
    for key in _CURVE_KEYS:
        curve = data.get(key)
        if not isinstance(curve, list):
            continue
        series: dict[str, list[tuple[int, float]]] = {}
        for point in curve:
            if not isinstance(point, Mapping) or not isinstance(point.get("step"), int | float):
                continue
            for name, value in numeric_leaves(point).items():
                if name != "step" and name != "epoch":
                    series.setdefault(name, []).append((int(point["step"]), value))
        for name, points in series.items():
            metrics[name if name not in metrics else f"curve/{name}"] = points
        break
    return metrics


def eval_metrics(data: Mapping[str, Any]) -> dict[str, MetricValue]:
    """Eval ``metrics.json`` as MLflow metrics: every number in it, by slash-joined path.

    The paired comparisons (a list in the file) are keyed ``comparisons/<name>/<metric>/...`` and the
    judge check's verdict is ``judge_check/passed`` (1 or 0), so the evidence is searchable in MLflow.
    """
    metrics: dict[str, MetricValue] = dict(numeric_leaves(data))
    comparisons = data.get("comparisons")
    for entry in comparisons if isinstance(comparisons, list) else []:
        if isinstance(entry, Mapping) and entry.get("name") and entry.get("metric"):
            metrics.update(numeric_leaves(entry, f"comparisons/{entry['name']}/{entry['metric']}"))
    check = data.get("judge_check")
    if isinstance(check, Mapping) and isinstance(check.get("passed"), bool):
        metrics["judge_check/passed"] = float(check["passed"])
    return metrics


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

    Reads ``train_dir/adapter/`` and ``train_dir/metrics.json`` (train stage),
    ``eval_dir/metrics.json``, ``report.html``, ``scores.jsonl`` and ``pairwise.jsonl`` (evaluate stage), and
    ``dataset_dir/README.md`` (the dataset card) and ``train.jsonl``/``eval.jsonl`` (for counts and
    the system message). ``lineage`` holds at least ``corpus_hash`` and ``dataset_hash``.
    """
    train_dir, eval_dir, dataset_dir, out_dir = (
        Path(train_dir),
        Path(eval_dir),
        Path(dataset_dir),
        Path(out_dir),
    )
    adapter_dir = ModelDir(train_dir).adapter_dir
    manifest = read_adapter_meta(adapter_dir).model_dump(mode="json")  # fail before anything is logged
    eval_path = EvaluationDir(eval_dir).report_path
    eval_data = read_json_object(eval_path)
    summary = EvalSummary.from_metrics(eval_data)

    run_id = start_pipeline_run(config, pipeline_run_id)

    counts = {
        f"{split}_items": n
        for split in ("train", "eval", "rejected")
        if (n := _count_lines(dataset_dir / f"{split}.jsonl")) is not None
    }
    log_stage(
        config,
        run_id,
        "dataset",
        params={"lineage": dict(lineage)} if lineage else None,
        metrics=counts,
        artifacts=_existing([DatasetDir(dataset_dir).card_path, *sorted(dataset_dir.glob("*.json"))]),
    )

    train_path = ModelDir(train_dir).report_path
    train_data = read_json_object(train_path) if train_path.is_file() else {}
    if not train_data:
        log.warning("%s: no train metrics; the train stage is logged without them", train_path)
    log_stage(
        config,
        run_id,
        "train",
        params=manifest,
        metrics=train_metrics(train_data),
        artifacts=_existing(
            [
                train_path,
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
        metrics=eval_metrics(eval_data),
        artifacts=_existing(
            [
                eval_path,
                EvaluationDir(eval_dir).html_path,
                EvaluationDir(eval_dir).scores_path,
                EvaluationDir(eval_dir).pairwise_path,
                *sorted(eval_dir.glob("*.png")),
            ]
        ),
    )

    info = register_model(
        config,
        run_id,
        adapter_dir,
        eval_path,
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
