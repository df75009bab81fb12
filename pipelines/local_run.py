"""Execute the ragtune graph on this machine with KFP's own local runner.

The graph is the same one a cluster runs; only the runner differs (``kfp.local.SubprocessRunner``
with the current interpreter, so every task sees the installed ``ragtune``). The pipeline root is
``run.root`` (default ``runs/``), so one folder holds every artifact, cache and the local MLflow
store of a run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.ragtune_pipeline import PIPELINE_NAME, ragtune_pipeline
from ragtune.core.config import RagtuneConfig, with_absolute_paths
from ragtune.core.errors import RagtuneError

log = logging.getLogger(__name__)


@dataclass
class LocalRun:
    run_dir: Path
    outputs: dict[str, Path] = field(default_factory=dict)  # "<task>/<output>" -> folder or file
    seconds: float = 0.0


def _collect_outputs(run_dir: Path) -> dict[str, Path]:
    outputs: dict[str, Path] = {}
    for task_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        for output in sorted(task_dir.iterdir()):
            if output.name != "executor_output.json":
                outputs[f"{task_dir.name}/{output.name}"] = output
    return outputs


def run_locally(config: RagtuneConfig) -> LocalRun:
    """Run the whole pipeline locally and return where its outputs are.

    The config travels whole as ``config_json`` (the UI's override fields stay empty), with one
    synthesis task and in-process training.
    """
    from kfp import local

    config = with_absolute_paths(config)
    root = Path(config.run.root)
    root.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in root.glob(f"{PIPELINE_NAME}-*")}
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    started = time.monotonic()
    try:
        ragtune_pipeline(config_json=config.to_json(), synth_shards=1, distributed_nodes=1)
    except RuntimeError as err:  # the local runner reports a failed task this way; its log is above
        raise RagtuneError(
            f"pipeline failed: {err} (the task's log is printed above; outputs under {root})"
        ) from None
    new_runs = sorted(
        (p for p in root.glob(f"{PIPELINE_NAME}-*") if p.name not in before), key=lambda p: p.stat().st_mtime
    )
    if not new_runs:
        raise RagtuneError(f"the local runner wrote no run folder under {root}")
    run_dir = new_runs[-1]
    return LocalRun(run_dir=run_dir, outputs=_collect_outputs(run_dir), seconds=time.monotonic() - started)
