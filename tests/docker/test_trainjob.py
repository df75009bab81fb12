"""The TrainJob the launcher would create runs here: 2 nodes x 1 process on CPU (gloo) in the CPU image.

The job body comes from ``plan_job`` (what ``ragtune train-job --dry-run`` prints); the ``kubeflow``
SDK's container backend starts one container per node and each runs the job's own
``spec.trainer.command`` (``ragtune.train.cluster.local``). What differs from a cluster: the work
and dataset URIs are folders of the SDK's shared ``/workspace`` mount instead of S3, and the node
folder is under /tmp. Training is real (SmolLM2, LoRA, two steps across two torchrun nodes); the
outputs are read as the evaluate and registry stages read them.

Run with `pytest -m docker tests/docker/test_trainjob.py` (the session's image fixture in tests/docker/conftest.py
builds the CPU image, tag RAGTUNE_TEST_IMAGE).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragtune.core.artifacts import ModelDir
from ragtune.core.config import build_config
from ragtune.core.reports.train import TrainReport
from ragtune.train.cluster.local import job_workspace, run_trainjob_locally, write_runtime
from ragtune.train.cluster.plan import ClusterTraining, job_name, plan_job
from tests.train.helpers import write_dataset

pytestmark = pytest.mark.docker


def test_a_two_node_trainjob_trains_in_containers_and_its_report_is_read_typed(
    image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the SDK keeps its job folders under ~/.kubeflow
    config = build_config(
        {
            "run": {"name": "trainjob in docker"},
            "train": {
                "max_steps": 2,
                "per_device_batch_size": 2,
                "max_seq_len": 96,
                "logging_steps": 1,
                "eval_steps": 100,
                "save_steps": 100,
                "cpu_threads": 1,
                "cluster": {"api": "trainjob", "nodes": 2, "gpus_per_node": 0},
            },
        }
    )
    name = job_name("docker-trainjob-test")
    job = plan_job(
        config,
        name,
        "/workspace/dataset",
        ClusterTraining(image=image, namespace="ragtune"),
        environ={},
        work="/workspace/work",
    )
    shared = job_workspace(name)
    assert shared.is_relative_to(tmp_path)
    write_dataset(shared / "dataset", n_train=4, n_eval=2)
    (shared / "work").mkdir()
    for path in [shared, *shared.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o644)  # the containers run as uid 10001
    runtimes = tmp_path / "runtimes"
    write_runtime(runtimes, job["spec"]["runtimeRef"]["name"], image)

    run = run_trainjob_locally(job, runtimes, env_values={"RAGTUNE_NODE_WORKDIR": "/tmp/node"})

    assert run.status == "Complete", run.log[-4000:]
    output = ModelDir(shared / "work" / "output")
    report = output.read_report(TrainReport)  # what the evaluate and registry stages read
    assert report.world_size == 2 and report.global_step == 2
    assert report.train_examples == 4 and report.eval_examples == 2
    assert (output.adapter_dir / "adapter_config.json").is_file()
    assert "node 0: 2 dataset file(s) from /workspace/dataset" in run.log
    assert not (shared / "work" / "output" / "checkpoints").exists()
    shutil.rmtree(shared, ignore_errors=True)
