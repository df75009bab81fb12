"""LoRA fine-tuning of the base model on the synthesized instruction dataset.

``train(config, dataset_dir, out_dir) -> TrainReport`` is the stage; ``load_tuned_model(adapter_dir)``
loads base plus adapter for the evaluation stage. Heavy libraries load only when these are called.
"""

from ragtune.train.model import load_tuned_model
from ragtune.train.report import TrainReport
from ragtune.train.stage import train

__all__ = ["TrainReport", "load_tuned_model", "train"]
