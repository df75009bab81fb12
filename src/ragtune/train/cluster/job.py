"""Build the Kubeflow Training Operator ``PyTorchJob`` (``kubeflow.org/v1``), and the pieces both job kinds share.

Pure functions over plain dicts: nothing here talks to a cluster. The PyTorchJob is kept as a dict
(the v1 operator's SDK, ``kubeflow-training``, is not installed beside the Trainer v2 SDK); the
tests check its shape against the PyTorchJob schema. The ``TrainJob`` (Trainer v2) is built from
the ``kubeflow-trainer-api`` models in ``trainjob.py``; both run the same container command:

    python -m ragtune.train.cluster.node --work-uri URI --dataset-uri URI --node-rank=$(RANK_ENV) -- \
        torchrun --nnodes=N --nproc_per_node=P --node_rank=$(RANK_ENV) --master_addr=$(ADDR_ENV)
                 --master_port=$(PORT_ENV) -m ragtune.train.launch ...

where the three variables are the ones the controller injects (PyTorchJob: ``RANK``, ``MASTER_ADDR``,
``MASTER_PORT``; TrainJob: ``PET_NODE_RANK``, ``PET_MASTER_ADDR``, ``PET_MASTER_PORT``) and
Kubernetes expands ``$(VAR)`` from the container's env. ``--nnodes``/``--nproc_per_node`` are
numbers, not taken from the env: ``WORLD_SIZE`` means "replicas" on operators before v1.7 but
"replicas x nprocPerNode" after, and an explicit flag beats the ``PET_*`` defaults.
The node's local folder is ``$(RAGTUNE_NODE_WORKDIR)`` (set in the job's env), so a runner that
starts the same command elsewhere (``local.py``: the SDK's container backend) can move it.
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
NODE_WORKDIR_ENV = "RAGTUNE_NODE_WORKDIR"  # the node's local folder ($(VAR) in the command)
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
    num_nodes: int,
    nproc_per_node: int,
    module: str,
    module_args: Sequence[str],
    rendezvous: tuple[str, str, str] = ("RANK", "MASTER_ADDR", "MASTER_PORT"),
) -> list[str]:
    """``torchrun`` for one node; ``rendezvous`` names the env vars holding node rank, master address
    and port, which Kubernetes expands in ``$(VAR)``."""
    rank, addr, port = rendezvous
    return [
        "torchrun",
        f"--nnodes={num_nodes}",
        f"--nproc_per_node={nproc_per_node}",
        f"--node_rank=$({rank})",
        f"--master_addr=$({addr})",
        f"--master_port=$({port})",
        "-m",
        module,
        *module_args,
    ]


def training_command(
    work_uri: str,
    num_nodes: int,
    procs_per_node: int,
    stage: str,
    *,
    dataset_uri: str = "",
    rendezvous: tuple[str, str, str] = ("RANK", "MASTER_ADDR", "MASTER_PORT"),
) -> list[str]:
    """The container command: ``node.py`` stages the dataset (``dataset_uri``, default
    ``<work_uri>/dataset/``) and checkpoints, then runs torchrun on ``ragtune.train.launch``
    (``procs_per_node`` processes) with the files it staged."""
    workdir = f"$({NODE_WORKDIR_ENV})"
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
        *(["--dataset-uri", dataset_uri] if dataset_uri else []),
        "--workdir",
        workdir,
        "--num-nodes",
        str(num_nodes),
        f"--node-rank=$({rendezvous[0]})",
        "--",
        *torchrun_command(num_nodes, max(1, procs_per_node), LAUNCH_MODULE, launch_args, rendezvous),
    ]


def _check_env(env: Sequence[Mapping[str, Any]]) -> None:
    for entry in env:
        if not entry.get("name") or ("value" in entry) == ("valueFrom" in entry):
            raise ConfigError(
                f"env entry {entry.get('name')!r} needs a name and exactly one of value/valueFrom"
            )


def resources(gpus_per_node: int, gpu_resource: str, cpu: str | None, memory: str | None) -> dict[str, Any]:
    """A node's requests/limits: GPUs as limits, CPU as a request, memory as request and limit."""
    limits: dict[str, str] = {gpu_resource: str(gpus_per_node)} if gpus_per_node > 0 else {}
    requests: dict[str, str] = {}
    if cpu:
        requests["cpu"] = cpu
    if memory:
        requests["memory"] = limits["memory"] = memory
    out: dict[str, Any] = {"limits": limits}
    if requests:
        out["requests"] = requests
    return out


def volume_mounts(workdir: str = WORKDIR) -> list[dict[str, Any]]:
    return [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "workspace", "mountPath": workdir},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "model-downloads", "mountPath": MODEL_DOWNLOADS_DIR},
    ]


def volumes(shm_size: str) -> list[dict[str, Any]]:
    return [
        # NCCL and the DataLoader workers share memory through /dev/shm (64Mi by default).
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}},
        # Dataset, config, checkpoints and outputs: survives container restarts in the pod.
        {"name": "workspace", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        # An s3:// base model, downloaded once per pod (ranks wait for the first one).
        {"name": "model-downloads", "emptyDir": {}},
    ]


CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "fsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# An Istio sidecar would keep finished pods Running and sit between NCCL peers.
POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"


def owner_reference(pod_name: str | None, pod_uid: str | None) -> list[dict[str, Any]]:
    """The launcher pod as the job's owner, so deleting the pipeline run's pod deletes the job; none
    outside a pod. Not a controller reference and blocking no deletion: the job only follows it."""
    if not pod_name or not pod_uid:
        return []
    return [
        {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid, "blockOwnerDeletion": False}
    ]


def check_name(name: str, kind: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(f"{kind} name {name!r}: lowercase letters, digits and '-', at most 40 characters")


def check_command(command: Sequence[str], env: Sequence[Mapping[str, Any]]) -> None:
    if not command:
        raise ConfigError("the training job needs a command")
    _check_env(env)


def _pod_template(
    *,
    image: str,
    command: list[str],
    resources: Mapping[str, Any],
    node_selector: Mapping[str, str],
    tolerations: Sequence[Mapping[str, Any]],
    env: Sequence[Mapping[str, Any]],
    service_account: str,
    shm_size: str,
    labels: Mapping[str, str],
    priority_class: str | None,
    port: int,
    workdir: str,
) -> dict[str, Any]:
    container = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(command),
        "workingDir": workdir,
        "env": [dict(entry) for entry in env],
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "resources": copy.deepcopy(dict(resources)),
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        "volumeMounts": volume_mounts(workdir),
    }
    spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,  # training never calls the Kubernetes API
        "securityContext": copy.deepcopy(POD_SECURITY),
        "nodeSelector": dict(node_selector),
        "tolerations": [dict(t) for t in tolerations],
        "containers": [container],
        "volumes": volumes(shm_size),
    }
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {"metadata": {"labels": dict(labels), "annotations": dict(POD_ANNOTATIONS)}, "spec": spec}


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
    procs_per_node: int | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    backoff_limit: int = 3,
    restart_policy: str = "ExitCode",
    active_deadline_s: int | None = None,
    ttl_seconds_after_finished: int | None = None,
    queue: str | None = None,
    priority_class: str | None = None,
    owner: Sequence[Mapping[str, Any]] = (),
    port: int = DEFAULT_PORT,
    workdir: str = WORKDIR,
) -> dict[str, Any]:
    """A ``kubeflow.org/v1`` PyTorchJob: 1 Master + ``num_nodes - 1`` Workers, ``gpus_per_node`` each.

    ``gpus_per_node=0`` requests no GPU (DeepSpeed's CPU accelerator; for a CPU-only test
    cluster). ``restart_policy="ExitCode"`` restarts a container that died of a signal (exit
    code above 128: OOM kill, preemption) up to ``backoff_limit`` times and fails the job at once
    on a training error (exit codes 1-127). ``cleanPodPolicy: None`` keeps finished pods so their
    logs stay readable; ``ttl_seconds_after_finished`` removes the job (and pods) later. With a
    Kueue ``queue`` the job is created suspended (``runPolicy.suspend``) for Kueue to admit.
    """
    check_name(name, KIND)
    if num_nodes < 1:
        raise ConfigError(f"num_nodes must be at least 1 (got {num_nodes})")
    if gpus_per_node < 0:
        raise ConfigError(f"gpus_per_node must be 0 or more (got {gpus_per_node})")
    if restart_policy not in _RESTART_POLICIES:
        raise ConfigError(
            f"restart_policy must be one of {sorted(_RESTART_POLICIES)} (got {restart_policy!r})"
        )
    check_command(command, env or [])
    job_labels = job_labels_for(labels, queue)
    template = _pod_template(
        image=image,
        command=command,
        resources=resources(gpus_per_node, gpu_resource, cpu, memory),
        node_selector=node_selector or {},
        tolerations=tolerations or [],
        env=env or [],
        service_account=service_account,
        shm_size=shm_size,
        labels=job_labels,
        priority_class=priority_class,
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
    if queue:
        run_policy["suspend"] = True
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": job_labels}
    if owner:
        metadata["ownerReferences"] = [dict(o) for o in owner]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "runPolicy": run_policy,
            # Operators >= v1.7 read it (WORLD_SIZE = nodes x nproc, PET_NPROC_PER_NODE); older ones
            # drop it. The torchrun flags above are explicit either way.
            "nprocPerNode": str(procs_per_node or max(1, gpus_per_node)),
            "pytorchReplicaSpecs": replicas,
        },
    }


def job_labels_for(labels: Mapping[str, str] | None, queue: str | None) -> dict[str, str]:
    """The job's labels: ragtune's, the caller's, and Kueue's queue label when a queue is set."""
    out = {"app.kubernetes.io/part-of": "ragtune", "app.kubernetes.io/component": "train", **(labels or {})}
    if queue:
        out[QUEUE_LABEL] = queue
    return out


def master_selector(job_name: str) -> str:
    """Label selector of the Master pod, whose logs hold global rank 0's output."""
    return f"{JOB_NAME_LABEL}={job_name},{REPLICA_TYPE_LABEL}=master"
