"""What the train stage reports: the report file of a :class:`~ragtune.core.artifacts.ModelDir` is a
:class:`TrainReport`.

It lives in core because the registry reads it too (``ModelDir(path).read_report(TrainReport)``):
the stage that writes it and the stage that logs it share one typed contract, not key spellings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DeepSpeedStage = Literal["off", "zero2", "zero3"]


class LossPoint(BaseModel):
    """One step of the loss curve; either loss may be missing at a step."""

    model_config = ConfigDict(extra="forbid")

    step: int
    loss: float | None = None
    eval_loss: float | None = None


class SkippedItem(BaseModel):
    """An instruction item that could not be turned into a training example, and why."""

    model_config = ConfigDict(extra="forbid")

    split: str
    item_id: str
    reason: str


class TrainReport(BaseModel):
    """Everything in the train stage's ``metrics.json``."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(description="base_model as configured.")
    adapter_dir: str
    merged_dir: str | None = None
    dataset_sha256: str = Field(description="SHA-256 over train.jsonl then eval.jsonl bytes.")
    train_examples: int
    eval_examples: int
    skipped: list[SkippedItem] = Field(default_factory=list)
    global_step: int = Field(description="Optimizer steps in total, resumed ones included.")
    resumed_from_step: int | None = Field(None, description="Checkpoint step this run resumed from.")
    steps_this_run: int
    train_loss: float | None = Field(None, description="Mean training loss over this run's steps.")
    eval_loss_before: float | None = Field(None, description="eval_loss of the untrained adapter (step 0).")
    eval_loss_after: float | None = None
    loss_curve: list[LossPoint] = Field(default_factory=list)
    tokens_seen: int = Field(description="Non-padding input tokens trained on, resumed runs included.")
    tokens_per_second: float | None = Field(
        None, description="Non-padding tokens per second of optimizer-step time (first step excluded)."
    )
    seconds_per_step: float | None = Field(
        None, description="Mean optimizer-step time (first step excluded)."
    )
    train_runtime_s: float = Field(description="Trainer.train wall time (evaluation and saving included).")
    runtime_s: float = Field(description="Whole stage wall time in the training process, loading included.")
    peak_rss_mb: float = Field(description="Peak resident memory of the (rank-0) training process.")
    peak_gpu_mb: float | None = None
    device: str
    world_size: int
    dtype: str
    deepspeed: DeepSpeedStage = Field(description="DeepSpeed ZeRO stage used, or off.")
