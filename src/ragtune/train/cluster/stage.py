"""The train stage on N nodes: stage the dataset on S3, run a TrainJob or PyTorchJob, bring the adapter back.

The KFP component's artifacts stay KFP artifacts (``dataset`` in, ``adapter`` out); only the
job's pods, which KFP does not manage, exchange files through ``<cache.uri>/<plural>/<job name>/``
(``dataset/`` up before the job, ``output/`` down after), so ``cache.uri`` must be an ``s3://`` URI
every node can read. Before anything is created the launcher checks that the cluster serves the
configured API (and, for a TrainJob, its runtime) and that the dataset URI is readable, so a
misconfigured cluster fails in one line instead of after GPUs were requested.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ragtune.core.artifacts import ModelDir
from ragtune.core.config import RagtuneConfig, config_from_json
from ragtune.core.errors import ConfigError, InputError, RagtuneError
from ragtune.core.reports.train import TrainReport
from ragtune.core.storage import is_s3_uri, open_storage
from ragtune.train.cluster.apis import TRAINJOB, check_runtime, check_served, training_api
from ragtune.train.cluster.node import DATASET_PREFIX, ERROR_FILE, OUTPUT_PREFIX
from ragtune.train.cluster.plan import (
    ClusterTraining,
    deepspeed_stage,
    job_env,
    job_name,
    label_value,
    plan_job,
    work_uri,
)
from ragtune.train.cluster.runner import delete_job, run_job

__all__ = [
    "ClusterTraining",
    "check_cluster",
    "check_dataset",
    "current_namespace",
    "deepspeed_stage",
    "job_env",
    "job_name",
    "label_value",
    "launch",
    "run_cluster_training",
    "train_on_cluster",
    "work_uri",
]

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
ADAPTER_DIR = ModelDir.ADAPTER_DIR


def current_namespace(path: Path | None = None) -> str:
    """The namespace this pod runs in (where the job goes unless told otherwise)."""
    path = path or SERVICE_ACCOUNT_NAMESPACE
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        raise ConfigError(f"no namespace given and {path} is unreadable (not running in a pod?)") from None


def check_dataset(config: RagtuneConfig, uri: str, *, read: bool = True) -> None:
    """One line naming ``uri`` when the training nodes could not read a dataset there (``read=False``:
    only its form, without reaching the store)."""
    if not is_s3_uri(uri):
        raise InputError(f"dataset {uri}: the training nodes cannot read a local path; give an s3:// URI")
    if not read:
        return
    try:
        files = open_storage(uri, config.storage).list("")
    except RagtuneError as err:
        raise InputError(f"dataset {uri}: cannot read it ({err})") from None
    if not files:
        raise InputError(f"dataset {uri}: no files there (train.jsonl and eval.jsonl expected)")


def _rewrite_adapter_path(out_dir: Path) -> None:
    """The train report names the adapter folder of the training pod; point it at the artifact's.

    The report is read typed, so one the pod wrote wrongly fails here, naming the file and field.
    """
    model_dir = ModelDir(out_dir)
    if model_dir.report_path.is_file():
        report = model_dir.read_report(TrainReport)
        model_dir.write_report(report.model_copy(update={"adapter_dir": str(model_dir.adapter_dir)}))


def check_cluster(config: RagtuneConfig, api: Any) -> None:
    """Before any GPU is requested: the cluster serves the configured API (and the TrainJob's runtime)."""
    kind = training_api(config.train.cluster.api)
    check_served(api, kind)
    if kind is TRAINJOB:
        check_runtime(api, config.train.cluster.runtime)


def launch(
    config: RagtuneConfig,
    name: str,
    dataset_uri: str,
    options: ClusterTraining,
    api: Any,
    core: Any,
    log_line: Callable[[str], None] = print,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Check the cluster and the dataset, create the job :func:`plan_job` describes, follow it to the
    end; its outputs are then in ``<work uri>/output/``. With ``train.cluster.cleanup: delete`` a
    job that succeeded is deleted (a failed one stays for its logs). Returns "Succeeded"."""
    kind = training_api(config.train.cluster.api)
    check_cluster(config, api)
    check_dataset(config, dataset_uri)
    job = plan_job(config, name, dataset_uri, options, environ)
    condition = run_job(job, kind, options.poll_s, options.timeout_s, api, core, log_line)
    if config.train.cluster.cleanup == "delete":
        delete_job(api, kind, job)
        log_line(f"deleted {kind.kind} {options.namespace}/{name} (train.cluster.cleanup: delete)")
    return condition


def train_on_cluster(
    config: RagtuneConfig,
    dataset_dir: Path,
    out_dir: Path,
    options: ClusterTraining,
    name: str,
    api: Any = None,
    core: Any = None,
    log_line: Callable[[str], None] = print,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Train with a job named ``name``; ``out_dir`` gets ``adapter/`` and ``metrics.json``.

    Returns "Succeeded"; raises :class:`RagtuneError` otherwise.
    """
    if not dataset_dir.is_dir() or not any(dataset_dir.iterdir()):
        raise InputError(f"{dataset_dir}: the dataset artifact is empty (the synth stage writes it)")
    kind = training_api(config.train.cluster.api)
    storage = open_storage(work_uri(config, name, kind), config.storage)
    keys = storage.upload_dir(dataset_dir, DATASET_PREFIX.rstrip("/"))
    dataset_uri = storage.uri_for(DATASET_PREFIX)
    log.info("staged %d dataset file(s) at %s", len(keys), dataset_uri)
    if api is None or core is None:
        from kubernetes import client

        api = api or client.CustomObjectsApi()
        core = core or client.CoreV1Api()
    condition = launch(config, name, dataset_uri, options, api, core, log_line, environ)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [p for p in storage.download_dir(OUTPUT_PREFIX, out_dir) if p.name != ERROR_FILE]
    (out_dir / ERROR_FILE).unlink(missing_ok=True)  # left by an earlier, failed attempt
    if not (out_dir / ADAPTER_DIR).is_dir():
        raise RagtuneError(
            f"{kind.kind} {name} succeeded but {storage.uri_for(OUTPUT_PREFIX + ADAPTER_DIR)} holds no adapter"
        )
    _rewrite_adapter_path(out_dir)
    log.info("adapter and %d file(s) from %s", len(files), storage.uri_for(OUTPUT_PREFIX))
    return condition


def run_cluster_training(
    config_json: str,
    dataset_dir: str | Path,
    adapter_dir: str | Path,
    dataset_uri: str,
    *,
    num_nodes: int | None = None,
    gpus_per_node: int | None = None,
    **options: Any,
) -> str:
    """The KFP component's whole body: train in this pod's cluster (in-cluster credentials).

    ``num_nodes``/``gpus_per_node`` (the pipeline's parameters) override ``train.cluster.nodes`` and
    ``gpus_per_node``; ``options`` are :class:`ClusterTraining` fields, an empty ``namespace`` means
    this pod's. The job is named after ``dataset_uri`` (see :func:`job_name`).
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    overrides = {
        key: value
        for key, value in (("train.cluster.nodes", num_nodes), ("train.cluster.gpus_per_node", gpus_per_node))
        if value is not None
    }
    if not options.get("namespace"):
        options["namespace"] = current_namespace()
    cluster = ClusterTraining(**options)
    kube_config.load_incluster_config()
    return train_on_cluster(
        config_from_json(config_json, overrides),
        Path(dataset_dir),
        Path(adapter_dir),
        cluster,
        job_name(dataset_uri),
        api=client.CustomObjectsApi(),
        core=client.CoreV1Api(),
    )
