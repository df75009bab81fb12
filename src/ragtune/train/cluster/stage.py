"""The train stage on N GPU nodes: stage the dataset on S3, run a PyTorchJob, bring the adapter back.

The KFP component's artifacts stay KFP artifacts (``dataset`` in, ``adapter`` out); only the
PyTorchJob's pods, which KFP does not manage, exchange files through
``<cache.uri>/pytorchjobs/<job name>/`` (``dataset/`` up before the job, ``output/`` down after),
so ``cache.uri`` must be an ``s3://`` URI every node can read.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.core.artifacts import ModelDir
from ragtune.core.config import RagtuneConfig, TrainConfig, config_from_json
from ragtune.core.endpoints import ENDPOINTS_ENV
from ragtune.core.errors import ConfigError, InputError, RagtuneError
from ragtune.core.models import MODEL_DOWNLOADS_ENV
from ragtune.core.reports.train import TrainReport
from ragtune.core.storage import is_s3_uri, open_storage
from ragtune.train.cluster.job import (
    CONFIG_ENV,
    ENDPOINTS_CONFIG_MAP,
    MODEL_DOWNLOADS_DIR,
    build_pytorchjob,
    config_map_env,
    secret_env,
    training_command,
    value_env,
)
from ragtune.train.cluster.node import DATASET_PREFIX, ERROR_FILE, OUTPUT_PREFIX
from ragtune.train.cluster.runner import run_pytorchjob

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
JOBS_PREFIX = "pytorchjobs"
ADAPTER_DIR = ModelDir.ADAPTER_DIR


@dataclass(frozen=True)
class ClusterTraining:
    """Where and how big the PyTorchJob is (the KFP component's parameters)."""

    image: str
    namespace: str
    num_nodes: int = 2
    gpus_per_node: int = 1
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    service_account: str = "default"
    s3_secret: str = "ragtune-s3"  # Secret whose keys are named like the config's *_env variables
    hf_secret: str = ""  # Secret with the Hugging Face token (gated base models); "" for none
    shm_size: str = "16Gi"
    timeout_s: float = 24 * 3600.0
    poll_s: float = 15.0


def current_namespace(path: Path | None = None) -> str:
    """The namespace this pod runs in (where the PyTorchJob goes unless told otherwise)."""
    path = path or SERVICE_ACCOUNT_NAMESPACE
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        raise ConfigError(f"no namespace given and {path} is unreadable (not running in a pod?)") from None


def job_name(key: str) -> str:
    """A stable PyTorchJob name for ``key`` (the dataset artifact's URI: unique per run and task),
    so a retried KFP task finds the job it started instead of starting a second one."""
    return "ragtune-train-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]


def work_uri(config: RagtuneConfig, name: str) -> str:
    cache = config.cache_uri()
    if not is_s3_uri(cache):
        raise ConfigError(
            f"cache.uri is {cache!r}: multi-node training needs an s3:// cache.uri that every training "
            "node can read (the dataset and the adapter travel through it)"
        )
    return f"{cache.rstrip('/')}/{JOBS_PREFIX}/{name}"


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
    if options.gpus_per_node == 0:
        env.append(value_env("DS_ACCELERATOR", "cpu"))
    return env


def label_value(text: str) -> str:
    """``text`` as a Kubernetes label value (63 characters of [A-Za-z0-9_.-], alphanumeric ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")


def _rewrite_adapter_path(out_dir: Path) -> None:
    """The train report names the adapter folder of the training pod; point it at the artifact's.

    The report is read typed, so one the pod wrote wrongly fails here, naming the file and field.
    """
    model_dir = ModelDir(out_dir)
    if model_dir.report_path.is_file():
        report = model_dir.read_report(TrainReport)
        model_dir.write_report(report.model_copy(update={"adapter_dir": str(model_dir.adapter_dir)}))


def train_on_cluster(
    config: RagtuneConfig,
    dataset_dir: Path,
    out_dir: Path,
    options: ClusterTraining,
    name: str,
    api: Any = None,
    core: Any = None,
    log_line: Callable[[str], None] = print,
) -> str:
    """Train with a PyTorchJob named ``name``; ``out_dir`` gets ``adapter/`` and ``metrics.json``.

    Returns the job's final condition ("Succeeded"); raises :class:`RagtuneError` otherwise.
    """
    if not dataset_dir.is_dir() or not any(dataset_dir.iterdir()):
        raise InputError(f"{dataset_dir}: the dataset artifact is empty (the synth stage writes it)")
    uri = work_uri(config, name)
    storage = open_storage(uri, config.storage)
    keys = storage.upload_dir(dataset_dir, DATASET_PREFIX.rstrip("/"))
    log.info("staged %d dataset file(s) at %s", len(keys), storage.uri_for(DATASET_PREFIX))
    job = build_pytorchjob(
        name=name,
        namespace=options.namespace,
        image=options.image,
        command=training_command(
            uri,
            options.num_nodes,
            options.gpus_per_node,
            deepspeed_stage(config.train, options.gpus_per_node),
        ),
        num_nodes=options.num_nodes,
        gpus_per_node=options.gpus_per_node,
        gpu_resource=options.gpu_resource,
        node_selector=options.node_selector,
        tolerations=options.tolerations,
        env=job_env(config, options),
        service_account=options.service_account,
        shm_size=options.shm_size,
        labels={"ragtune.io/run": label_value(config.run.name) or "ragtune"},
    )
    condition = run_pytorchjob(job, options.poll_s, options.timeout_s, api, core, log_line)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [p for p in storage.download_dir(OUTPUT_PREFIX, out_dir) if p.name != ERROR_FILE]
    (out_dir / ERROR_FILE).unlink(missing_ok=True)  # left by an earlier, failed attempt
    if not (out_dir / ADAPTER_DIR).is_dir():
        raise RagtuneError(
            f"PyTorchJob {name} succeeded but {storage.uri_for(OUTPUT_PREFIX + ADAPTER_DIR)} holds no adapter"
        )
    _rewrite_adapter_path(out_dir)
    log.info("adapter and %d file(s) from %s", len(files), storage.uri_for(OUTPUT_PREFIX))
    return condition


def run_cluster_training(
    config_json: str,
    dataset_dir: str | Path,
    adapter_dir: str | Path,
    dataset_uri: str,
    **options: Any,
) -> str:
    """The KFP component's whole body: train in this pod's cluster (in-cluster credentials).

    ``options`` are :class:`ClusterTraining` fields; an empty ``namespace`` means this pod's. The
    job is named after ``dataset_uri`` (see :func:`job_name`).
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    if not options.get("namespace"):
        options["namespace"] = current_namespace()
    cluster = ClusterTraining(**options)
    kube_config.load_incluster_config()
    return train_on_cluster(
        config_from_json(config_json),
        Path(dataset_dir),
        Path(adapter_dir),
        cluster,
        job_name(dataset_uri),
        api=client.CustomObjectsApi(),
        core=client.CoreV1Api(),
    )
