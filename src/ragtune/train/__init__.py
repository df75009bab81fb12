"""LoRA fine-tuning of the base model on the synthesized instruction dataset.

``run_train(config, dataset_dir, out_dir) -> TrainReport`` is the stage; loading a tuned adapter back is
:func:`ragtune.core.modelload.load_tuned_model`. Heavy libraries load only when these are called.
"""

from ragtune.core.reports.train import TrainReport
from ragtune.train.stage import run_train

__all__ = ["TrainReport", "run_train"]
