"""KFP component: LoRA fine-tuning in this pod (DeepSpeed across its GPUs when it has them)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train_adapter(
    config_json: str,
    dataset: Input[Dataset],
    num_gpus: int,
    accelerator_type: str,
    model: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Train the LoRA adapter on the dataset's train split, scoring eval loss on its eval split.

    Args:
        config_json: The resolved ragtune config as JSON (``train.*`` holds base model and LoRA settings).
        dataset: Output of the synthesis component.
        num_gpus: GPUs this pod was given (DeepSpeed launches one process per GPU); 0 = all visible.
        accelerator_type: The accelerator resource requested, recorded on the model artifact.
        model: adapter/ (peft adapter, tokenizer, ragtune_adapter.json), metrics.json, checkpoints.
        metrics: Losses and throughput for the Kubeflow UI.
    """
    from pathlib import Path

    from ragtune.core.config import config_from_json
    from ragtune.train import run_train

    overrides = {"train.num_gpus": num_gpus} if num_gpus > 0 else {}
    report = run_train(config_from_json(config_json, overrides), Path(dataset.path), Path(model.path))
    model.metadata.update(
        {"accelerator_type": accelerator_type, "device": report.device, "base_model": report.base_model}
    )
    for name in ("train_loss", "eval_loss_before", "eval_loss_after", "tokens_per_second"):
        value = getattr(report, name, None)
        if isinstance(value, int | float):
            metrics.log_metric(name, float(value))
