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
    cpu_request: str = "",
    memory_request: str = "",
) -> None:
    """Train the LoRA adapter on the dataset's train split, scoring eval loss on its eval split.

    Args:
        config_json: The resolved ragtune config as JSON (``train.*`` holds base model and LoRA settings).
        dataset: Output of the synthesis component.
        num_gpus: GPUs this pod was given (DeepSpeed launches one process per GPU); 0 = all visible.
        accelerator_type: The accelerator resource requested, recorded on the model artifact.
        model: adapter/ (peft adapter, tokenizer, ragtune_adapter.json), metrics.json, checkpoints.
        metrics: Losses and throughput for the Kubeflow UI.
        cpu_request: This pod's CPU request, recorded on the model artifact. Passing the run parameter
            here is also what carries it into the condition around this task: kfp 2.17 declares a
            condition's inputs only from its tasks' inputs, not from their resource settings.
        memory_request: This pod's memory request and limit, recorded likewise.
    """
    from pathlib import Path

    from ragtune.core.config import config_from_json
    from ragtune.train import run_train

    overrides = {"train.num_gpus": num_gpus} if num_gpus > 0 else {}
    report = run_train(config_from_json(config_json, overrides), Path(dataset.path), Path(model.path))
    model.metadata.update(
        {
            "accelerator_type": accelerator_type,
            "cpu_request": cpu_request,
            "memory_request": memory_request,
            "device": report.device,
            "base_model": report.base_model,
        }
    )
    for name in ("train_loss", "eval_loss_before", "eval_loss_after", "tokens_per_second"):
        value = getattr(report, name, None)
        if isinstance(value, int | float):
            metrics.log_metric(name, float(value))
