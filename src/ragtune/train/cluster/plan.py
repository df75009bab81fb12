"""The one function that turns a config into the training job's body: the launcher creates exactly
what ``ragtune train-job --dry-run`` prints.

``train.cluster`` picks the API (``trainjob`` or ``pytorchjob``), the runtime, the size and the
scheduling (Kueue queue, priority, deadline); :class:`ClusterTraining` carries what comes from the
pipeline rather than the config (image, namespace, the GPU pool's selector and tolerations, the
Secrets' names). Outputs and checkpoints travel through ``<cache.uri>/<plural>/<job name>/``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from ragtune.core.config import RagtuneConfig, TrainConfig
from ragtune.core.endpoints import ENDPOINTS_ENV
from ragtune.core.errors import ConfigError
from ragtune.core.models import MODEL_DOWNLOADS_ENV
from ragtune.core.storage import is_s3_uri
from ragtune.train.cluster.apis import TRAINJOB, TrainingApi, training_api
from ragtune.train.cluster.job import (
    CONFIG_ENV,
    ENDPOINTS_CONFIG_MAP,
    MODEL_DOWNLOADS_DIR,
    NODE_WORKDIR_ENV,
    WORKDIR,
    build_pytorchjob,
    config_map_env,
    owner_reference,
    resources,
    secret_env,
    training_command,
    value_env,
)
from ragtune.train.cluster.trainjob import build_trainjob

# The launcher pod, from the downward API (POD_NAME/POD_UID), or the env KFP gives every task pod.
OWNER_ENV = (("POD_NAME", "POD_UID"), ("KFP_POD_NAME", "KFP_POD_UID"))


@dataclass(frozen=True)
class ClusterTraining:
    """What the job needs beyond the config: the pipeline's image, namespace, GPU pool and Secrets."""

    image: str
    namespace: str
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    service_account: str = "default"
    s3_secret: str = "ragtune-s3"  # Secret whose keys are named like the config's *_env variables
    hf_secret: str = ""  # Secret with the Hugging Face token (gated base models); "" for none
    shm_size: str = "16Gi"
    timeout_s: float = 24 * 3600.0
    poll_s: float = 15.0


def job_name(key: str) -> str:
    """A stable job name for ``key`` (the dataset's URI: unique per run and task), so a retried
    task finds the job it started instead of starting a second one."""
    return "ragtune-train-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]


def work_uri(config: RagtuneConfig, name: str, api: TrainingApi | None = None) -> str:
    """``<cache.uri>/<plural>/<name>``: outputs and checkpoints of the job, readable by every node."""
    cache = config.cache_uri()
    if not is_s3_uri(cache):
        raise ConfigError(
            f"cache.uri is {cache!r}: multi-node training needs an s3:// cache.uri that every training "
            "node can read (the adapter and the checkpoints travel through it)"
        )
    plural = (api or training_api(config.train.cluster.api)).plural
    return f"{cache.rstrip('/')}/{plural}/{name}"


def deepspeed_stage(train: TrainConfig, gpus_per_node: int) -> str:
    """The launcher's --stage on the cluster: auto is ZeRO-2 on GPUs (the pods have CUDA even if
    this CPU pod has not), off on CPU-only nodes."""
    if train.deepspeed == "auto":
        return "zero2" if gpus_per_node > 0 else "off"
    return train.deepspeed


def job_env(config: RagtuneConfig, options: ClusterTraining) -> list[dict[str, Any]]:
    """The pods' env: the resolved config (no secrets by construction) and secret references."""
    storage = config.storage
    env = [
        value_env(CONFIG_ENV, config.to_json()),
        value_env(NODE_WORKDIR_ENV, WORKDIR),
        secret_env(storage.access_key_env, options.s3_secret, storage.access_key_env),
        secret_env(storage.secret_key_env, options.s3_secret, storage.secret_key_env),
        secret_env(storage.session_token_env, options.s3_secret, storage.session_token_env, optional=True),
        value_env("NCCL_DEBUG", "WARN"),
        # Where the S3 credentials may go (ragtune.core.endpoints); from the cluster, not the run.
        config_map_env(ENDPOINTS_ENV, ENDPOINTS_CONFIG_MAP, ENDPOINTS_ENV),
        value_env(MODEL_DOWNLOADS_ENV, f"{MODEL_DOWNLOADS_DIR}/models"),
    ]
    if options.hf_secret:
        env.append(
            secret_env(config.train.hf_token_env, options.hf_secret, config.train.hf_token_env, optional=True)
        )
    if config.train.cluster.gpus_per_node == 0:
        env.append(value_env("DS_ACCELERATOR", "cpu"))
        if config.train.cpu_threads:  # else accelerate sets its own count in every process
            env.append(value_env("OMP_NUM_THREADS", str(config.train.cpu_threads)))
    return env


def label_value(text: str) -> str:
    """``text`` as a Kubernetes label value (63 characters of [A-Za-z0-9_.-], alphanumeric ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")


def launcher_owner(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """The owner reference to the pod this runs in (downward API env), none outside a pod."""
    for name_env, uid_env in OWNER_ENV:
        if environ.get(name_env) and environ.get(uid_env):
            return owner_reference(environ[name_env], environ[uid_env])
    return []


def plan_job(
    config: RagtuneConfig,
    name: str,
    dataset_uri: str,
    options: ClusterTraining,
    environ: Mapping[str, str] | None = None,
    work: str | None = None,
) -> dict[str, Any]:
    """The job body to create: a TrainJob or a PyTorchJob (``train.cluster.api``) named ``name`` that
    trains on ``dataset_uri``; ``work`` overrides the work URI (default :func:`work_uri`)."""
    cluster = config.train.cluster
    api = training_api(cluster.api)
    procs = cluster.procs_per_node or max(1, cluster.gpus_per_node)
    command = training_command(
        work or work_uri(config, name, api),
        cluster.nodes,
        procs,
        deepspeed_stage(config.train, cluster.gpus_per_node),
        dataset_uri=dataset_uri,
        rendezvous=api.rendezvous,
    )
    common: dict[str, Any] = {
        "name": name,
        "namespace": options.namespace,
        "image": options.image,
        "command": command,
        "env": job_env(config, options),
        "node_selector": options.node_selector,
        "tolerations": options.tolerations,
        "service_account": options.service_account,
        "shm_size": options.shm_size,
        "labels": {"ragtune.io/run": label_value(config.run.name) or "ragtune"},
        "queue": cluster.queue,
        "priority_class": cluster.priority_class,
        "active_deadline_s": cluster.deadline_s,
        "owner": launcher_owner(os.environ if environ is None else environ),
    }
    if api is TRAINJOB:
        return build_trainjob(
            num_nodes=cluster.nodes,
            procs_per_node=procs,
            resources=resources(cluster.gpus_per_node, cluster.gpu_resource, cluster.cpu, cluster.memory),
            runtime=cluster.runtime,
            **common,
        )
    return build_pytorchjob(
        num_nodes=cluster.nodes,
        gpus_per_node=cluster.gpus_per_node,
        gpu_resource=cluster.gpu_resource,
        procs_per_node=cluster.procs_per_node,
        cpu=cluster.cpu,
        memory=cluster.memory,
        ttl_seconds_after_finished=cluster.ttl_after_finished_s,
        **common,
    )


def job_yaml(job: Mapping[str, Any]) -> str:
    """The body as ``kubectl create --dry-run=client -o yaml`` would print it (keys in build order)."""
    return yaml.safe_dump(dict(job), sort_keys=False, default_flow_style=False, width=120)
