"""Run a TrainJob's nodes as containers on this machine, with the ``kubeflow`` SDK's container backend.

The SDK's Docker backend starts ``numNodes`` containers of the job's image on a network of their
own and runs a Python function in each under ``torchrun`` (``bash -lc``: the image must have
``python``/``torchrun`` on the login PATH). The function here, :func:`node_entry`, does what the
kubelet and the Trainer's torch plugin do for a TrainJob pod: it sets ``PET_NODE_RANK``,
``PET_NNODES``, ``PET_MASTER_ADDR``/``PET_MASTER_PORT`` (node 0's container), expands ``$(VAR)``
in the TrainJob's own ``spec.trainer.command`` from the container env, and runs that command. So
the containers run exactly the entrypoint a TrainJob node runs on a cluster; only ``env_values``
(a local storage folder instead of S3, a node folder under /tmp) differ.

The SDK reads runtimes from YAML files (its default source is GitHub, unreachable offline):
:func:`write_runtime` writes the ``ClusterTrainingRuntime`` the job references, built from the
``kubeflow-trainer-api`` model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ragtune.core.errors import RagtuneError
from ragtune.core.fsutil import atomic_write_text

INNER_PORT = "29400"  # the Trainer's own PET_MASTER_PORT; the SDK's torchrun holds 29500


def node_entry(command: list[str], master: str, port: str) -> None:
    """One TrainJob node, inside the SDK's torchrun (one process per container).

    Self-contained: the SDK ships this function's source into the container.
    """
    import os
    import re
    import subprocess
    import sys

    elastic = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE"}
    elastic |= {"ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in elastic and not k.startswith("TORCHELASTIC_")}
    env.update(
        PET_NNODES=os.environ["GROUP_WORLD_SIZE"],
        PET_NODE_RANK=os.environ["GROUP_RANK"],
        PET_MASTER_ADDR=master,
        PET_MASTER_PORT=port,
    )
    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg) for arg in command]
    print(f"trainjob node {env['PET_NODE_RANK']}: {' '.join(args[:4])} ...", flush=True)
    sys.exit(subprocess.call(args, env=env))


def runtime_body(name: str, image: str) -> dict[str, Any]:
    """A ``torch-distributed``-shaped ClusterTrainingRuntime: one ``node`` replicated job of ``image``."""
    from kubeflow.trainer.constants import constants
    from kubeflow_trainer_api import models

    body = {
        "apiVersion": constants.API_VERSION,
        "kind": "ClusterTrainingRuntime",
        "metadata": {"name": name, "labels": {constants.RUNTIME_FRAMEWORK_LABEL: "torch"}},
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {"numProcPerNode": "auto"}},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": constants.NODE,
                            "template": {
                                "metadata": {"labels": {constants.TRAINJOB_ANCESTOR_LABEL: "trainer"}},
                                "spec": {
                                    "template": {
                                        "spec": {"containers": [{"name": constants.NODE, "image": image}]}
                                    }
                                },
                            },
                        }
                    ]
                }
            },
        },
    }
    runtime = models.TrainerV1alpha1ClusterTrainingRuntime.from_dict(body)
    assert runtime is not None
    return runtime.to_dict()


def job_workspace(name: str) -> Path:
    """The host folder the SDK mounts at ``/workspace`` in every node of job ``name`` (created now,
    so the caller can put the dataset there; it stays after the job: ``auto_remove`` is off)."""
    from kubeflow.trainer.backends.container.utils import create_workdir

    return Path(create_workdir(name))


def write_runtime(folder: Path, name: str, image: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    atomic_write_text(path, yaml.safe_dump(runtime_body(name, image), sort_keys=False))
    return path


@dataclass(frozen=True)
class LocalRun:
    """How the containers ended: the SDK's job status and node 0's log."""

    name: str
    status: str
    log: str


def run_trainjob_locally(
    job: Mapping[str, Any],
    runtime_dir: Path,
    env_values: Mapping[str, str] | None = None,
    timeout_s: int = 1800,
) -> LocalRun:
    """Run ``job`` (a TrainJob body) on Docker; ``env_values`` replace env values of its trainer.

    Only the job's literal env values reach the containers (a ``valueFrom`` needs a cluster): give
    what the containers need instead in ``env_values``. Needs the runtime of ``spec.runtimeRef`` as
    YAML in ``runtime_dir`` (:func:`write_runtime`).
    """
    from kubeflow.trainer import ContainerBackendConfig, CustomTrainer, TrainerClient, TrainingRuntimeSource
    from kubeflow.trainer.options import Name

    trainer = job["spec"]["trainer"]
    name = job["metadata"]["name"]
    env = {e["name"]: e["value"] for e in trainer.get("env", []) if "value" in e} | dict(env_values or {})
    client = TrainerClient(
        backend_config=ContainerBackendConfig(
            container_runtime="docker",
            pull_policy="Never",
            auto_remove=False,  # keep the job's /workspace folder: the outputs are there
            runtime_source=TrainingRuntimeSource(sources=[f"file://{runtime_dir}"]),
        )
    )
    client.train(
        runtime=job["spec"]["runtimeRef"]["name"],
        trainer=CustomTrainer(
            func=node_entry,
            func_args={"command": list(trainer["command"]), "master": f"{name}-node-0", "port": INNER_PORT},
            image=trainer["image"],
            num_nodes=int(trainer["numNodes"]),
            env=env,
        ),
        options=[Name(name)],
    )
    try:
        ended = client.wait_for_job_status(name, status={"Complete", "Failed"}, timeout=timeout_s)
        log = "\n".join(client.get_job_logs(name))
    except (RuntimeError, TimeoutError) as err:
        raise RagtuneError(f"TrainJob {name} in containers: {err}") from None
    finally:
        client.delete_job(name)
    return LocalRun(name, str(ended.status), log)
