"""Choosing the DeepSpeed stage and running training under the DeepSpeed launcher.

With ``train.deepspeed`` set to zero2/zero3 (or auto on a CUDA machine), the train stage runs
``python -m deepspeed.launcher.runner --num_gpus N --module ragtune.train.launch ...``: the launcher
starts one process per GPU, each runs :func:`ragtune.train.runner.run_training` with the Trainer's
DeepSpeed integration, and rank 0 writes the outputs. Without CUDA the launcher runs on DeepSpeed's
CPU accelerator (``DS_ACCELERATOR=cpu``, gloo), so the same path is exercised on a laptop.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

from ragtune.core.config import RagtuneConfig, TrainConfig
from ragtune.core.errors import ConfigError, RagtuneError
from ragtune.core.reports.train import DeepSpeedStage

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("deepspeed_configs")
CONFIG_FILE = "train_config.json"
ERROR_FILE = "train_error.txt"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_stage(train: TrainConfig) -> DeepSpeedStage:
    """auto: ZeRO-2 where CUDA is present, off on CPU; explicit stages need deepspeed installed."""
    if train.deepspeed == "off" or (train.deepspeed == "auto" and not cuda_available()):
        return "off"
    stage: DeepSpeedStage = "zero2" if train.deepspeed == "auto" else train.deepspeed
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            f"train.deepspeed={train.deepspeed} needs the deepspeed package (pip install 'ragtune[deepspeed]'),"
            " or set train.deepspeed=off"
        )
    return stage


def deepspeed_config_path(stage: DeepSpeedStage) -> Path:
    """The packaged DeepSpeed JSON for ``stage`` (values the Trainer knows are "auto")."""
    return CONFIG_DIR / f"{stage}.json"


def launcher_processes(train: TrainConfig) -> int:
    """num_gpus as configured, else every visible GPU (one process on CPU)."""
    if train.num_gpus is not None:
        return train.num_gpus
    if cuda_available():
        import torch

        return max(1, torch.cuda.device_count())
    return 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _devices(processes: int, visible: str | None) -> list[str]:
    """Which devices the launcher uses: the first ``processes`` of CUDA_VISIBLE_DEVICES when set
    (the launcher ignores that variable once --num_gpus is given), else --num_gpus."""
    if visible:
        return ["--include", "localhost:" + ",".join(visible.split(",")[:processes])]
    return ["--num_gpus", str(processes)]


def launch_command(
    config_json: Path,
    dataset_dir: Path,
    out_dir: Path,
    stage: DeepSpeedStage,
    processes: int,
    probe: str | None,
    visible_devices: str | None = None,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "deepspeed.launcher.runner",
        *_devices(processes, visible_devices),
        "--master_port",
        str(_free_port()),
        "--module",
        "ragtune.train.launch",
        "--config-json",
        str(config_json),
        "--dataset",
        str(dataset_dir),
        "--out",
        str(out_dir),
        "--stage",
        stage,
    ]
    return [*command, "--probe", probe] if probe is not None else command


def run_under_deepspeed(
    config: RagtuneConfig, dataset_dir: Path, out_dir: Path, stage: DeepSpeedStage, probe: str | None
) -> None:
    """Train in DeepSpeed launcher processes; rank 0 writes the outputs into ``out_dir``."""
    config_json = out_dir / CONFIG_FILE
    config_json.write_text(config.to_json(), encoding="utf-8")  # no secrets by construction
    error_file = out_dir / ERROR_FILE
    error_file.unlink(missing_ok=True)
    env = dict(os.environ)
    visible = None
    if cuda_available():
        visible = env.get("CUDA_VISIBLE_DEVICES") or None
    else:
        env["DS_ACCELERATOR"] = "cpu"
    processes = launcher_processes(config.train)
    command = launch_command(
        config_json, dataset_dir.resolve(), out_dir.resolve(), stage, processes, probe, visible
    )
    log.info("training under DeepSpeed %s with %d process(es): %s", stage, processes, " ".join(command))
    code = subprocess.call(command, env=env)
    if code != 0:
        if error_file.is_file():
            raise RagtuneError(error_file.read_text(encoding="utf-8").strip())
        raise RagtuneError(f"DeepSpeed training ({stage}) exited with code {code}; its log is above")
