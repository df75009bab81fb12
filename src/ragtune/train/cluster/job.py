"""Build the Kubeflow Training Operator ``PyTorchJob`` (``kubeflow.org/v1``) that trains on N GPU nodes.

Pure functions over plain dicts: nothing here talks to a cluster. One Master replica (node rank 0)
and ``num_nodes - 1`` Worker replicas run the same container, named ``pytorch`` (the operator finds
its port and sets its env by that name). The operator puts ``MASTER_ADDR``, ``MASTER_PORT``,
``WORLD_SIZE`` and ``RANK`` (the pod's node rank) into that container's env; Kubernetes expands
``$(VAR)`` in the command from it, so every pod runs

    torchrun --nnodes=N --nproc_per_node=G --node_rank=$(RANK) --master_addr=$(MASTER_ADDR)
             --master_port=$(MASTER_PORT) -m ragtune.train.launch ...

``--nnodes``/``--nproc_per_node`` are written as numbers, not taken from the operator's env:
``WORLD_SIZE`` means "replicas" on operators before v1.7 but "replicas x nprocPerNode" after, and
an explicit flag beats the ``PET_*`` variables newer operators also set.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ragtune.core.errors import ConfigError

GROUP = "kubeflow.org"
VERSION = "v1"
PLURAL = "pytorchjobs"
KIND = "PyTorchJob"
API_VERSION = f"{GROUP}/{VERSION}"
CONTAINER_NAME = "pytorch"  # the operator requires this name
PORT_NAME = "pytorchjob-port"  # ... and this port name for MASTER_PORT
DEFAULT_PORT = 23456
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
WORKDIR = "/workspace"
LAUNCH_MODULE = "ragtune.train.launch"
NODE_MODULE = "ragtune.train.cluster.node"
CONFIG_ENV = "RAGTUNE_JOB_CONFIG_JSON"  # the resolved config (no secrets) for node.py
RUN_AS_USER = 10001  # the ragtune images' user
MODEL_DOWNLOADS_DIR = "/var/cache/ragtune"  # writable; $RAGTUNE_MODEL_DOWNLOADS points here
ENDPOINTS_CONFIG_MAP = "ragtune-endpoints"  # holds RAGTUNE_ENDPOINTS, the credential grants

# Pod names are <job>-worker-<index>: keep them a DNS-1035 label (63 characters).
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_RESTART_POLICIES = {"OnFailure", "Never", "Always", "ExitCode"}


def value_env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def config_map_env(name: str, config_map: str, key: str) -> dict[str, Any]:
    """An env entry read from a ConfigMap key (required: the pod does not start without it)."""
    return {"name": name, "valueFrom": {"configMapKeyRef": {"name": config_map, "key": key}}}


def secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    """An env entry read from a Kubernetes Secret (the value never appears in the job)."""
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def torchrun_command(
    num_nodes: int, nproc_per_node: int, module: str, module_args: Sequence[str]
) -> list[str]:
    """``torchrun`` for one node of the job; ``$(VAR)`` is expanded by Kubernetes from the operator's env."""
    return [
        "torchrun",
        f"--nnodes={num_nodes}",
        f"--nproc_per_node={nproc_per_node}",
        "--node_rank=$(RANK)",
        "--master_addr=$(MASTER_ADDR)",
        "--master_port=$(MASTER_PORT)",
        "-m",
        module,
        *module_args,
    ]


def training_command(
    work_uri: str, num_nodes: int, gpus_per_node: int, stage: str, workdir: str = WORKDIR
) -> list[str]:
    """The container command: ``node.py`` stages data from ``work_uri``, then runs torchrun on
    ``ragtune.train.launch`` (one process per GPU; one on CPU) with the files it staged."""
    launch_args = [
        "--config-json",
        f"{workdir}/config.json",
        "--dataset",
        f"{workdir}/dataset",
        "--out",
        f"{workdir}/out",
        "--stage",
        stage,
    ]
    return [
        "python",
        "-m",
        NODE_MODULE,
        "--work-uri",
        work_uri,
        "--workdir",
        workdir,
        "--num-nodes",
        str(num_nodes),
        "--",
        *torchrun_command(num_nodes, max(1, gpus_per_node), LAUNCH_MODULE, launch_args),
    ]


def _check_env(env: Sequence[Mapping[str, Any]]) -> None:
    for entry in env:
        if not entry.get("name") or ("value" in entry) == ("valueFrom" in entry):
            raise ConfigError(
                f"env entry {entry.get('name')!r} needs a name and exactly one of value/valueFrom"
            )


def _pod_template(
    *,
    image: str,
    command: list[str],
    gpus_per_node: int,
    gpu_resource: str,
    node_selector: Mapping[str, str],
    tolerations: Sequence[Mapping[str, Any]],
    env: Sequence[Mapping[str, Any]],
    service_account: str,
    shm_size: str,
    labels: Mapping[str, str],
    cpu: str | None,
    memory: str | None,
    port: int,
    workdir: str,
) -> dict[str, Any]:
    limits: dict[str, str] = {gpu_resource: str(gpus_per_node)} if gpus_per_node > 0 else {}
    requests: dict[str, str] = {}
    if cpu:
        requests["cpu"] = cpu
    if memory:
        requests["memory"] = limits["memory"] = memory
    resources: dict[str, Any] = {"limits": limits}
    if requests:
        resources["requests"] = requests
    container = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(command),
        "workingDir": workdir,
        "env": [dict(entry) for entry in env],
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "resources": resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "workspace", "mountPath": workdir},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "model-downloads", "mountPath": MODEL_DOWNLOADS_DIR},
        ],
    }
    return {
        "metadata": {
            "labels": dict(labels),
            # An Istio sidecar would keep finished pods Running and sit between NCCL peers.
            "annotations": {"sidecar.istio.io/inject": "false"},
        },
        "spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,  # training never calls the Kubernetes API
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "fsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "nodeSelector": dict(node_selector),
            "tolerations": [dict(t) for t in tolerations],
            "containers": [container],
            "volumes": [
                # NCCL and the DataLoader workers share memory through /dev/shm (64Mi by default).
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}},
                # Dataset, config, checkpoints and outputs: survives container restarts in the pod.
                {"name": "workspace", "emptyDir": {}},
                {"name": "tmp", "emptyDir": {}},
                # An s3:// base model, downloaded once per pod (ranks wait for the first one).
                {"name": "model-downloads", "emptyDir": {}},
            ],
        },
    }


def build_pytorchjob(
    name: str,
    namespace: str,
    image: str,
    command: list[str],
    num_nodes: int,
    gpus_per_node: int,
    gpu_resource: str = "nvidia.com/gpu",
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
    env: Sequence[Mapping[str, Any]] | None = None,
    service_account: str = "default",
    shm_size: str = "16Gi",
    labels: Mapping[str, str] | None = None,
    *,
    cpu: str | None = None,
    memory: str | None = None,
    backoff_limit: int = 3,
    restart_policy: str = "ExitCode",
    active_deadline_s: int | None = None,
    ttl_seconds_after_finished: int | None = None,
    port: int = DEFAULT_PORT,
    workdir: str = WORKDIR,
) -> dict[str, Any]:
    """A ``kubeflow.org/v1`` PyTorchJob: 1 Master + ``num_nodes - 1`` Workers, ``gpus_per_node`` each.

    ``gpus_per_node=0`` requests no GPU (DeepSpeed's CPU accelerator; for a CPU-only test
    cluster). ``restart_policy="ExitCode"`` restarts a container that died of a signal (exit
    code above 128: OOM kill, preemption) up to ``backoff_limit`` times and fails the job at once
    on a training error (exit codes 1-127). ``cleanPodPolicy: None`` keeps finished pods so their
    logs stay readable; ``ttl_seconds_after_finished`` removes the job (and pods) later.
    """
    if not _NAME.match(name):
        raise ConfigError(
            f"PyTorchJob name {name!r}: lowercase letters, digits and '-', at most 40 characters"
        )
    if num_nodes < 1:
        raise ConfigError(f"num_nodes must be at least 1 (got {num_nodes})")
    if gpus_per_node < 0:
        raise ConfigError(f"gpus_per_node must be 0 or more (got {gpus_per_node})")
    if restart_policy not in _RESTART_POLICIES:
        raise ConfigError(
            f"restart_policy must be one of {sorted(_RESTART_POLICIES)} (got {restart_policy!r})"
        )
    if not command:
        raise ConfigError("the PyTorchJob needs a command")
    _check_env(env or [])
    job_labels = {
        "app.kubernetes.io/part-of": "ragtune",
        "app.kubernetes.io/component": "train",
        **(labels or {}),
    }
    template = _pod_template(
        image=image,
        command=command,
        gpus_per_node=gpus_per_node,
        gpu_resource=gpu_resource,
        node_selector=node_selector or {},
        tolerations=tolerations or [],
        env=env or [],
        service_account=service_account,
        shm_size=shm_size,
        labels=job_labels,
        cpu=cpu,
        memory=memory,
        port=port,
        workdir=workdir,
    )
    replicas: dict[str, Any] = {
        "Master": {"replicas": 1, "restartPolicy": restart_policy, "template": copy.deepcopy(template)}
    }
    if num_nodes > 1:
        replicas["Worker"] = {
            "replicas": num_nodes - 1,
            "restartPolicy": restart_policy,
            "template": copy.deepcopy(template),
        }
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": backoff_limit}
    if active_deadline_s is not None:
        run_policy["activeDeadlineSeconds"] = active_deadline_s
    if ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": job_labels},
        "spec": {
            "runPolicy": run_policy,
            # Operators >= v1.7 read it (WORLD_SIZE = nodes x nproc, PET_NPROC_PER_NODE); older ones
            # drop it. The torchrun flags above are explicit either way.
            "nprocPerNode": str(max(1, gpus_per_node)),
            "pytorchReplicaSpecs": replicas,
        },
    }


def master_selector(job_name: str) -> str:
    """Label selector of the Master pod, whose logs hold global rank 0's output."""
    return f"{JOB_NAME_LABEL}={job_name},{REPLICA_TYPE_LABEL}=master"
