"""The train stage: ``run_train(config, dataset_dir, out_dir) -> TrainReport``."""

from __future__ import annotations

import logging
from pathlib import Path

from ragtune.core.artifacts import ModelDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.reports.train import TrainReport
from ragtune.train.data import train_file
from ragtune.train.distributed import resolve_stage, run_under_deepspeed
from ragtune.train.lora import check_qlora, merge_adapter
from ragtune.train.runner import PROBE_FILE, run_training

log = logging.getLogger(__name__)


def run_train(
    config: RagtuneConfig, dataset_dir: Path, out_dir: Path, *, probe: str | None = None
) -> TrainReport:
    """LoRA-tune ``config.train.base_model`` on ``dataset_dir``'s train.jsonl (eval.jsonl for eval_loss).

    Writes ``adapter/`` (peft adapter, tokenizer, ``ragtune_adapter.json``), ``metrics.json`` (this
    report, loss curve included), ``checkpoints/`` (a rerun in the same out_dir resumes from the
    newest) and, with ``train.merge_adapter``, ``merged/``. DeepSpeed zero2/zero3 run under the
    DeepSpeed launcher in child processes; ``off`` (auto on CPU) trains in this process.

    ``probe``: a text whose logits the trained in-memory model writes to ``probe_logits.pt``, so a
    caller can check that the saved adapter reloads to the same model.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    check_qlora(config.train)
    stage = resolve_stage(config.train)
    train_file(dataset_dir)  # fail before anything is launched
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = ModelDir(out_dir)
    for stale in (model_dir.REPORT, PROBE_FILE):  # never read an earlier run's results as this one's
        (out_dir / stale).unlink(missing_ok=True)
    if stage == "off":
        report = run_training(config, dataset_dir, out_dir, stage, probe)
    else:
        run_under_deepspeed(config, dataset_dir, out_dir, stage, probe)
        report = model_dir.read_report(TrainReport)
    if config.train.merge_adapter:
        merged = merge_adapter(model_dir.adapter_dir, model_dir.merged_dir, config)
        report.merged_dir = str(merged)
        model_dir.write_report(report)
    log.info(
        "trained %d steps (%s): eval_loss %s -> %s, adapter in %s",
        report.global_step,
        report.deepspeed,
        report.eval_loss_before,
        report.eval_loss_after,
        report.adapter_dir,
    )
    return report
