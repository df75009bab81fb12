"""Registering an adapter as a new version of the configured registered model, with its lineage.

The adapter is logged as an MLflow 3 *logged model* (``mlflow.pyfunc``, see
:mod:`ragtune.registry.pyfunc_model`) produced by the pipeline's MLflow run, then registered as a
version of ``registry.model_name``. The version carries the lineage as tags: corpus and dataset
hashes, git commit, pipeline run id, base model, adapter hash, and the eval numbers promotion needs.

Registering again for the same MLflow run and the same adapter bytes (a retried pipeline step)
returns the version registered the first time instead of adding a duplicate.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import InputError
from ragtune.registry.evalsummary import EvalSummary
from ragtune.registry.pyfunc_model import save_pyfunc_model
from ragtune.registry.tracking import (
    MAX_TAG_VALUE,
    TAG_PIPELINE_RUN_ID,
    Redactor,
    client_for,
    flatten,
    mlflow_error,
    set_run_tags,
    tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

TAG_GIT_COMMIT = "ragtune.git_commit"
TAG_BASE_MODEL = "ragtune.base_model"
TAG_ADAPTER_SHA = "ragtune.adapter_sha256"
TAG_CORPUS_HASH = "ragtune.corpus_hash"
TAG_DATASET_HASH = "ragtune.dataset_hash"
TAG_MODEL_ID = "ragtune.model_id"
TAG_LINEAGE_WARNING = "ragtune.lineage_warning"
LINEAGE_PREFIX = "ragtune.lineage."
LOGGED_MODEL_NAME = "adapter"
GIT_REVISION_ENV = "RAGTUNE_GIT_REVISION"


class ModelVersionInfo(BaseModel):
    """A registered model version, as the rest of ragtune needs it."""

    name: str = Field(description="Registered model name.")
    version: int
    run_id: str | None = Field(description="MLflow run that produced the version.")
    model_id: str | None = Field(None, description="MLflow 3 logged model id (m-...).")
    source: str = Field(description="Where the version's files are (the logged model's artifact location).")
    model_uri: str = Field(description="models:/<name>/<version>, for mlflow.pyfunc.load_model.")
    tags: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_mlflow(cls, version: ModelVersion) -> ModelVersionInfo:
        return cls(
            name=version.name,
            version=int(version.version),
            run_id=version.run_id or None,
            # the REST API does not return model_id: the tag written at registration has it
            model_id=getattr(version, "model_id", None) or (version.tags or {}).get(TAG_MODEL_ID),
            source=str(version.source),
            model_uri=f"models:/{version.name}/{version.version}",
            tags=dict(version.tags or {}),
        )


def git_revision(cwd: Path | None = None) -> str:
    """``git rev-parse HEAD``, else ``$RAGTUNE_GIT_REVISION``, else ``"unknown"``."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get(GIT_REVISION_ENV) or "unknown"


def adapter_sha256(adapter_dir: Path) -> str:
    """The adapter's content hash, the same one the evaluate stage names the tuned model by."""
    from ragtune.core.modelload import adapter_fingerprint

    return adapter_fingerprint(adapter_dir)


def lineage_tags(
    lineage: Mapping[str, Any], trained_on: str, *, pipeline_run_id: str | None, base_model: str
) -> dict[str, str]:
    """Lineage as version tags: well-known keys under their own tag, the rest under ``ragtune.lineage.``.

    ``trained_on`` is the hash of the dataset the adapter was trained on (``dataset_sha256`` of its
    metadata, the same value as the train report's); when the lineage names another dataset, a
    ``ragtune.lineage_warning`` tag says so.
    """
    flat = flatten(dict(lineage)) if lineage else {}
    tags: dict[str, str] = {}
    known = {
        "corpus_hash": TAG_CORPUS_HASH,
        "dataset_hash": TAG_DATASET_HASH,
        "git_commit": TAG_GIT_COMMIT,
        "pipeline_run_id": TAG_PIPELINE_RUN_ID,
    }
    for key, value in flat.items():
        tags[known.get(key, LINEAGE_PREFIX + key)] = value
    claimed = tags.setdefault(TAG_DATASET_HASH, trained_on)
    if claimed != trained_on:  # the adapter was trained on another dataset than the lineage says
        tags[TAG_LINEAGE_WARNING] = f"adapter trained on dataset {trained_on}, lineage names {claimed}"
        log.warning("lineage: %s", tags[TAG_LINEAGE_WARNING])
    tags.setdefault(TAG_GIT_COMMIT, git_revision())
    if pipeline_run_id:
        tags.setdefault(TAG_PIPELINE_RUN_ID, pipeline_run_id)
    tags[TAG_BASE_MODEL] = base_model
    return tags


def _existing_version(client: MlflowClient, name: str, run_id: str, adapter_hash: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:
        return None
    for version in sorted(versions, key=lambda v: int(v.version)):
        if (version.tags or {}).get(TAG_ADAPTER_SHA) == adapter_hash:
            return version
    return None


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(
                name,
                tags={"ragtune.kind": "lora-adapter"},
                description="LoRA adapters tuned by ragtune on RAG-grounded instruction data (pyfunc: questions → answers).",
            )
        except MlflowException as again:
            if again.error_code != "RESOURCE_ALREADY_EXISTS":  # registered meanwhile
                raise


def _log_adapter_model(
    config: RagtuneConfig,
    client: MlflowClient,
    run_id: str,
    adapter_dir: Path,
    *,
    params: Mapping[str, str],
    tags: Mapping[str, str],
    system_prompt: str | None,
    max_new_tokens: int,
) -> str:
    """Log the pyfunc model as an MLflow 3 logged model, output of ``run_id``; returns its model id."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id,
        name=LOGGED_MODEL_NAME,
        source_run_id=run_id,
        tags=dict(tags),
        params=dict(params),
        model_type="ragtune-lora-adapter",
    )
    try:
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        mlflow_model = Model(
            artifact_path=logged.artifact_location,
            model_uuid=logged.model_id,
            run_id=run_id,
            model_id=logged.model_id,
        )
        with tempfile.TemporaryDirectory(prefix="ragtune-model-") as tmp:
            local = Path(tmp) / "model"
            save_pyfunc_model(
                local,
                adapter_dir,
                config,
                mlflow_model=mlflow_model,
                system_prompt=system_prompt,
                max_new_tokens=max_new_tokens,
                metadata_={"ragtune": dict(tags)},
            )
            client.log_model_artifacts(logged.model_id, str(local))
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return str(logged.model_id)


def register_model(
    config: RagtuneConfig,
    run_id: str,
    adapter_dir: Path,
    summary: EvalSummary | None,
    lineage: Mapping[str, Any],
    *,
    system_prompt: str | None = None,
    max_new_tokens: int | None = None,
) -> ModelVersionInfo:
    """Log ``adapter_dir`` as a pyfunc model of run ``run_id`` and register it as a new version.

    Tags on the version: the lineage (``corpus_hash``, ``dataset_hash``, ``git_commit``,
    ``pipeline_run_id`` under their own ``ragtune.*`` names, any other key as
    ``ragtune.lineage.<key>``), ``ragtune.base_model``, ``ragtune.adapter_sha256`` and the eval
    summary (``ragtune.eval.*``, from :meth:`EvalSummary.load` of the evaluation folder). ``system_prompt`` is the dataset's
    system message, used when the model answers.
    """
    from mlflow.exceptions import MlflowException

    from ragtune.core.modelload import read_adapter_meta

    adapter_dir = Path(adapter_dir).resolve()  # MLflow refuses artifacts reached through a symlink
    meta = read_adapter_meta(adapter_dir)
    manifest = meta.model_dump(mode="json")
    name = config.registry.model_name
    client = client_for(config)
    redact = Redactor(config)
    try:
        run = client.get_run(run_id)
        fingerprint = adapter_sha256(adapter_dir)
        existing = _existing_version(client, name, run_id, fingerprint)
        if existing is not None:
            log.info("adapter already registered as %s version %s by run %s", name, existing.version, run_id)
            return ModelVersionInfo.from_mlflow(existing)
        tags = lineage_tags(
            lineage,
            meta.dataset_sha256,
            pipeline_run_id=run.data.tags.get(TAG_PIPELINE_RUN_ID),
            base_model=meta.base_model,
        )
        tags[TAG_ADAPTER_SHA] = fingerprint
        if summary is not None:
            tags.update(summary.to_tags())
        tags = redact.mapping(tags, MAX_TAG_VALUE)
        model_params = redact.mapping(
            {k: v for k, v in flatten(manifest).items() if len(v) <= 500}, MAX_TAG_VALUE
        )
        model_id = _log_adapter_model(
            config,
            client,
            run_id,
            adapter_dir,
            params=model_params,
            tags=tags,
            system_prompt=system_prompt,
            max_new_tokens=max_new_tokens or config.evaluate.max_new_tokens,
        )
        _ensure_registered_model(client, name)
        tags[TAG_MODEL_ID] = model_id
        # source: the logged model's artifact location rather than models:/<id>, which MLflow's
        # sqlite registry resolves through the *global* tracking URI, not this client's
        version = client.create_model_version(
            name,
            source=client.get_logged_model(model_id).artifact_location,
            run_id=run_id,
            tags=tags,
            model_id=model_id,
            description=f"LoRA adapter on {meta.base_model}; pipeline run {tags.get(TAG_PIPELINE_RUN_ID, '?')}.",
        )
    except MlflowException as err:
        raise mlflow_error(config, f"registering {adapter_dir} as {name}", err) from None
    info = ModelVersionInfo.from_mlflow(version)
    set_run_tags(config, run_id, {**tags, "ragtune.model_version": f"{name}/{info.version}"})
    log.info("registered %s version %d (run %s, model %s)", name, info.version, run_id, model_id)
    return info


def get_version(config: RagtuneConfig, version: int) -> ModelVersionInfo:
    """Version ``version`` of the configured model; an :class:`InputError` if there is none."""
    from mlflow.exceptions import MlflowException

    name = config.registry.model_name
    try:
        found = client_for(config).get_model_version(name, str(version))
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise InputError(f"registered model {name!r} has no version {version}") from None
        raise mlflow_error(config, f"reading {name} version {version}", err) from None
    return ModelVersionInfo.from_mlflow(found)


def model_uri(config: RagtuneConfig, ref: int | str | None = None) -> str:
    """``models:/<name>/<version>`` for a version number, ``models:/<name>@<alias>`` for an alias.

    ``ref`` unset means the champion alias.
    """
    name = config.registry.model_name
    ref = config.registry.champion_alias if ref is None else ref
    if isinstance(ref, int) or str(ref).isdigit():
        return f"models:/{name}/{int(ref)}"
    return f"models:/{name}@{ref}"


def load_registered_model(
    config: RagtuneConfig, ref: int | str | None = None, dst_path: Path | None = None
) -> Any:
    """Download and load a registered version (default: the champion) as an ``mlflow.pyfunc`` model.

    Uses the configured tracking URI without touching MLflow's global state. Loading the model
    loads its base model and applies the adapter.
    """
    import mlflow.pyfunc
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    uri = model_uri(config, ref)
    store = tracking_uri(config)
    try:
        local = download_artifacts(
            artifact_uri=uri,
            dst_path=str(dst_path) if dst_path is not None else None,
            tracking_uri=store,
            registry_uri=store,
        )
    except MlflowException as err:
        if err.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            raise InputError(f"{uri}: no such registered model version or alias") from None
        raise mlflow_error(config, f"downloading {uri}", err) from None
    return mlflow.pyfunc.load_model(local)
