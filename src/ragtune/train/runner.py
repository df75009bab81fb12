"""One training run with the transformers Trainer: in-process, or in each DeepSpeed launcher rank.

Checkpoints go to ``out_dir/checkpoints``; when a complete one is there (and was made from the same
dataset, base model and LoRA settings) training resumes from it. Rank 0 writes ``adapter/`` (peft
adapter, tokenizer and ``ragtune_adapter.json``) and ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.core.artifacts import ModelDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import ConfigError
from ragtune.core.fsutil import atomic_write_text
from ragtune.core.modelload import AdapterMeta, compute_dtype, resolve_base_model, write_adapter_meta
from ragtune.core.reports.train import DeepSpeedStage, LossPoint, TrainReport
from ragtune.train.data import Splits, encode_items, make_collator, read_splits
from ragtune.train.distributed import deepspeed_config_path
from ragtune.train.lora import add_lora, load_base_model, probe_logits

if TYPE_CHECKING:
    from transformers import TrainerCallback, TrainingArguments

log = logging.getLogger(__name__)

RUN_FILE = "ragtune_run.json"  # in checkpoints/: what the checkpoints were trained from
PROBE_FILE = "probe_logits.pt"
TRAINER_STATE = "trainer_state.json"


def _run_identity(config: RagtuneConfig, splits: Splits, stage: DeepSpeedStage) -> dict[str, Any]:
    """What a checkpoint must share with this run for resuming it to make sense."""
    train = config.train
    return {
        "dataset_sha256": splits.sha256,
        "base_model": train.base_model,
        "lora": [train.lora_r, train.lora_alpha, sorted(train.target_modules)],
        "qlora": train.qlora,
        "max_seq_len": train.max_seq_len,
        "deepspeed": stage,
    }


def resumable_checkpoint(checkpoints: Path, identity: dict[str, Any]) -> Path | None:
    """The newest complete checkpoint (its trainer state written last), if it belongs to this run."""
    complete = [
        path
        for path in checkpoints.glob("checkpoint-*")
        if path.name.split("-")[-1].isdigit() and (path / TRAINER_STATE).is_file()
    ]
    if not complete:
        return None
    newest = max(complete, key=lambda path: int(path.name.split("-")[-1]))
    recorded_file = checkpoints / RUN_FILE
    if recorded_file.is_file():
        recorded = json.loads(recorded_file.read_text(encoding="utf-8"))
        changed = sorted(key for key in identity if recorded.get(key) != identity[key])
        if changed:
            raise ConfigError(
                f"{checkpoints} holds checkpoints of a different run ({', '.join(changed)} changed); "
                "use another out_dir or delete that folder to start over"
            )
    return newest


@dataclass
class StepTimes:
    """Seconds and non-padding tokens of each optimizer step, and the step a run started from."""

    start_step: int = 0
    steps: list[tuple[float, int]] = field(default_factory=list)

    def throughput(self) -> tuple[float | None, float | None]:
        """(seconds per step, tokens per second), leaving out the first step (lazy initialisation)."""
        timed = self.steps[1:] if len(self.steps) > 1 else self.steps
        seconds = sum(s for s, _ in timed)
        if not timed or seconds <= 0:
            return None, None
        return seconds / len(timed), sum(t for _, t in timed) / seconds


def step_clock(times: StepTimes) -> TrainerCallback:
    """A Trainer callback that fills ``times`` (needs ``include_num_input_tokens_seen``)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self._began = 0.0
            self._tokens = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            times.start_step = state.global_step  # after a resume: the checkpoint's step

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._began, self._tokens = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            elapsed = time.perf_counter() - self._began
            times.steps.append((elapsed, state.num_input_tokens_seen - self._tokens))

    return StepClock()


def loss_curve(log_history: list[dict[str, Any]]) -> list[LossPoint]:
    """Training and eval losses by step from the Trainer's log history."""
    points: dict[int, LossPoint] = {}
    for entry in log_history:
        step = int(entry.get("step", 0))
        for key in ("loss", "eval_loss"):
            if key in entry:
                point = points.setdefault(step, LossPoint(step=step))
                setattr(point, key, float(entry[key]))
    return [points[step] for step in sorted(points)]


def training_arguments(
    config: RagtuneConfig, checkpoints: Path, stage: DeepSpeedStage, has_eval: bool, fresh: bool
) -> TrainingArguments:
    import torch
    from transformers import TrainingArguments

    train = config.train
    dtype = compute_dtype()
    return TrainingArguments(
        output_dir=str(checkpoints),
        seed=config.run.seed,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        learning_rate=train.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=train.warmup_steps,
        optim="adamw_torch",
        per_device_train_batch_size=train.per_device_batch_size,
        per_device_eval_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        bf16=dtype == torch.bfloat16,
        activation_checkpointing=train.gradient_checkpointing and not train.qlora,  # QLoRA enables its own
        activation_checkpointing_kwargs={"use_reentrant": False} if train.gradient_checkpointing else None,
        logging_strategy="steps",
        logging_steps=train.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=train.eval_steps,
        eval_on_start=has_eval and fresh,  # eval_loss of the untrained adapter, once per run
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        # Every node writes whole checkpoints to its own disk (a PyTorchJob pod's emptyDir, copied to
        # shared storage by ragtune.train.cluster.checkpoints); on one node this changes nothing.
        save_on_each_node=True,
        # packed batches hold no padding (and no attention_mask for the Trainer to count by)
        include_num_input_tokens_seen="all" if train.packing else "non_padding",
        report_to="none",
        deepspeed=str(deepspeed_config_path(stage)) if stage != "off" else None,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Several processes without CUDA or DeepSpeed (torchrun across CPU-only TrainJob nodes):
        # accelerate makes them one DDP group over gloo only when told to use the CPU, else each
        # trains on its own. (DeepSpeed's CPU accelerator starts its own group: never with use_cpu.)
        use_cpu=stage == "off"
        and not torch.cuda.is_available()
        and int(os.environ.get("WORLD_SIZE", "1")) > 1,
    )


def _device(world_size: int) -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}) x{world_size}"
    return f"cpu x{world_size}"


def run_training(
    config: RagtuneConfig,
    dataset_dir: Path,
    out_dir: Path,
    stage: DeepSpeedStage,
    probe: str | None = None,
) -> TrainReport:
    """Train the LoRA adapter; on rank 0 write adapter/ and metrics.json. Every rank returns the report."""
    import torch
    from transformers import IntervalStrategy, Trainer, set_seed

    started = time.perf_counter()
    train = config.train
    if train.cpu_threads is not None and not torch.cuda.is_available():
        torch.set_num_threads(train.cpu_threads)
    splits = read_splits(dataset_dir)
    checkpoints = ModelDir(out_dir).checkpoints_dir
    identity = _run_identity(config, splits, stage)
    resume = resumable_checkpoint(checkpoints, identity) if checkpoints.is_dir() else None
    # TrainingArguments first: under ZeRO-3 the model must be built knowing it will be sharded.
    args = training_arguments(config, checkpoints, stage, bool(splits.eval), resume is None)
    set_seed(config.run.seed)
    base_path = resolve_base_model(train.base_model, config)
    model, tokenizer = load_base_model(base_path, train)
    tokenizer.padding_side = "right"
    train_set = encode_items(tokenizer, splits.train, train.max_seq_len, "train")
    eval_set = encode_items(tokenizer, splits.eval, train.max_seq_len, "eval")
    skipped = train_set.skipped + eval_set.skipped
    for item in skipped:
        log.warning("skipping %s item %s: %s", item.split, item.item_id, item.reason)
    if not train_set.examples:
        raise ConfigError(f"no usable training examples in {dataset_dir} (all {len(skipped)} skipped)")
    if not eval_set.examples:  # every eval item was skipped: nothing to evaluate on
        args.eval_strategy, args.eval_on_start = IntervalStrategy.NO, False
    model = add_lora(model, train)
    clock = StepTimes()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set.examples,
        eval_dataset=eval_set.examples or None,
        data_collator=make_collator(tokenizer, train.packing),
        processing_class=tokenizer,
        callbacks=[step_clock(clock)],
    )
    if args.process_index == 0:
        checkpoints.mkdir(parents=True, exist_ok=True)
        if resume is None:
            atomic_write_text(checkpoints / RUN_FILE, json.dumps(identity, indent=2))
        else:
            log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if eval_set.examples:
        history, step = trainer.state.log_history, trainer.state.global_step
        if not any("eval_loss" in entry and entry.get("step") == step for entry in history):
            trainer.evaluate()  # the final eval_loss, unless the last step logged one
    adapter_dir = ModelDir(out_dir).adapter_dir
    trainer.save_model(str(adapter_dir))  # every rank: ZeRO-3 gathers the adapter weights for rank 0

    curve = loss_curve(trainer.state.log_history)
    evals = [point.eval_loss for point in curve if point.eval_loss is not None]
    before = next((p.eval_loss for p in curve if p.step == 0 and p.eval_loss is not None), None)
    seconds_per_step, tokens_per_second = clock.throughput()
    report = TrainReport(
        base_model=train.base_model,
        adapter_dir=str(adapter_dir),
        dataset_sha256=splits.sha256,
        train_examples=len(train_set.examples),
        eval_examples=len(eval_set.examples),
        skipped=skipped,
        global_step=trainer.state.global_step,
        resumed_from_step=clock.start_step if resume is not None else None,
        steps_this_run=trainer.state.global_step - clock.start_step,
        train_loss=result.training_loss if trainer.state.global_step > clock.start_step else None,
        eval_loss_before=before,
        eval_loss_after=evals[-1] if evals else None,
        loss_curve=curve,
        tokens_seen=int(trainer.state.num_input_tokens_seen),
        tokens_per_second=tokens_per_second,
        seconds_per_step=seconds_per_step,
        train_runtime_s=float(result.metrics.get("train_runtime", 0.0)),
        runtime_s=time.perf_counter() - started,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_gpu_mb=torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        device=_device(args.world_size),
        world_size=args.world_size,
        dtype=str(compute_dtype()).removeprefix("torch."),
        deepspeed=stage,
    )
    if trainer.is_world_process_zero():
        write_adapter_meta(
            adapter_dir,
            AdapterMeta(
                base_model=train.base_model,
                base_model_path=base_path,
                lora_r=train.lora_r,
                lora_alpha=train.lora_alpha,
                lora_dropout=train.lora_dropout,
                target_modules=list(train.target_modules),
                qlora=train.qlora,
                max_seq_len=train.max_seq_len,
                dataset_sha256=splits.sha256,
                global_step=trainer.state.global_step,
                dtype=report.dtype,
                deepspeed=stage,
            ),
        )
        if probe is not None:
            if stage == "zero3":  # parameters are sharded across ranks: no whole model here
                log.warning("probe logits are not written under ZeRO-3")
            else:
                torch.save(probe_logits(trainer.model, tokenizer, probe), out_dir / PROBE_FILE)
        ModelDir(out_dir).write_report(report)
    return report
