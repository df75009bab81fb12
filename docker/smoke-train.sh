#!/usr/bin/env bash
# Smoke test of the training image where there is no GPU (`make smoke-train`): the GPU stack
# imports (torch, deepspeed, peft, bitsandbytes) and ragtune trains two LoRA steps of the packaged
# SmolLM2 through DeepSpeed ZeRO-2 on CPU (DS_ACCELERATOR=cpu, gloo), run as the image's user on a
# read-only root with no network. The tiny dataset and settings are the test suite's
# (tests/train/helpers.py, mounted read-only).
#
#   docker/smoke-train.sh [IMAGE]        (default ghcr.io/ragtune/ragtune-train:0.1.0)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${1:-ghcr.io/ragtune/ragtune-train:0.1.0}"

docker run --rm --network none --read-only --tmpfs /tmp:rw,size=4g,mode=1777 --shm-size 1g \
    -e DS_ACCELERATOR=cpu -e HF_HUB_OFFLINE=1 -e PYTHONPATH=/repo \
    -v "$PWD/tests:/repo/tests:ro" "$IMAGE" python -c '
import os
from pathlib import Path

import bitsandbytes, deepspeed, peft, torch

from ragtune.train import run_train
from tests.train.helpers import small_config, write_dataset

print("uid", os.getuid(), "torch", torch.__version__, "cuda", torch.version.cuda, "deepspeed", deepspeed.__version__,
      "peft", peft.__version__, "bitsandbytes", bitsandbytes.__version__)
data = write_dataset(Path("/tmp/data"))
report = run_train(small_config(deepspeed="zero2", max_steps=2, cpu_threads=1), data, Path("/tmp/out"))
assert report.deepspeed == "zero2" and report.global_step == 2, report
assert (Path("/tmp/out") / "adapter" / "adapter_model.safetensors").is_file()
print("smoke ok: two LoRA steps through DeepSpeed", report.deepspeed, "on", report.device,
      "losses", [p.loss for p in report.loss_curve if p.loss is not None])
'
