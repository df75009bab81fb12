"""MLflow tracking: one MLflow run per pipeline run, one nested run per stage.

The parent run is found again by its ``ragtune.pipeline_run_id`` tag, so a retried or resumed
pipeline keeps logging into the run it started. Each stage logs into a nested run (tagged
``mlflow.parentRunId`` and ``ragtune.stage``), found again the same way. Everything goes through an
explicit :class:`~mlflow.MlflowClient` for the configured URI: no global MLflow state is touched, so
two configs in one process never mix (one environment default aside: downloads from a server stream
through it, see :data:`PROXIED_DOWNLOADS`).

Secrets: the config only names environment variables, and params come from it; still, any key that
looks like a secret (``*_key``, ``*token``, ``*password``, ``*secret``) is dropped, and every logged
param and tag is scrubbed of the values of the environment variables the config names (``*_env``)
and of MLflow's and the cloud SDKs' own credential variables.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ragtune.core.config import RagtuneConfig
from ragtune.core.endpoints import MLFLOW_CREDENTIAL_ENVS, check_credentials
from ragtune.core.errors import ConfigError, InputError, RagtuneError

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

TAG_PIPELINE_RUN_ID = "ragtune.pipeline_run_id"
TAG_ROLE = "ragtune.role"
TAG_STAGE = "ragtune.stage"
TAG_PARENT = "mlflow.parentRunId"
ROLE_PIPELINE = "pipeline"
ROLE_STAGE = "stage"

#: MLflow's limits (server side): values beyond them are refused, so they are cut here.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 5000
_BATCH = 100  # params/metrics per log_batch request

_SECRET_KEY = re.compile(r"(_key|token|password|passwd|secret)$", re.IGNORECASE)
#: Credential variables read by MLflow, boto3 and the minio client themselves.
_KNOWN_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "OPENAI_API_KEY",
)
REDACTED = "[redacted]"


# -- URIs, clients, experiments ----------------------------------------------------------------


def mlflow_root(config: RagtuneConfig) -> Path:
    """``<run.root>/mlflow``: the local store's folder (absolute)."""
    return (Path(config.run.root).expanduser() / "mlflow").resolve()


#: MLflow >= 3.17 clients download proxied artifacts from a presigned object-store URL whenever the
#: server's artifact store can sign one. A task whose pod may reach only MLflow (register, render-serving,
#: a serving pod: no object-store egress or credentials) cannot follow it, and an S3 that checks
#: credentials may refuse it (moto's IAM mode does); streaming through the server works for all.
PROXIED_DOWNLOADS = ("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")


def tracking_uri(config: RagtuneConfig) -> str:
    """The configured URI, or the local sqlite store under ``<run.root>/mlflow`` (created here).

    For a server, artifact downloads stream through it unless the environment chose otherwise
    (:data:`PROXIED_DOWNLOADS`).
    """
    if config.registry.tracking_uri:
        if config.registry.tracking_uri.startswith(("http://", "https://")):  # MLflow sends its env creds
            check_credentials(config.registry.tracking_uri, MLFLOW_CREDENTIAL_ENVS)
            os.environ.setdefault(*PROXIED_DOWNLOADS)
        return config.registry.tracking_uri
    root = mlflow_root(config)
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def local_artifact_root(config: RagtuneConfig) -> str | None:
    """Artifact root for experiments we create in the local store; ``None`` lets a server decide."""
    if config.registry.tracking_uri:
        return None
    return (mlflow_root(config) / "artifacts").as_uri()


def display_uri(uri: str) -> str:
    """``uri`` without user info or query, fit for logs and params."""
    parts = urlsplit(uri)
    if parts.scheme in {"http", "https"} and parts.hostname:
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return uri


def client_for(config: RagtuneConfig) -> MlflowClient:
    """An :class:`MlflowClient` on the configured tracking and registry URI."""
    from mlflow import MlflowClient

    uri = tracking_uri(config)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_name(config: RagtuneConfig) -> str:
    return config.registry.experiment or config.run.name


def ensure_experiment(config: RagtuneConfig, client: MlflowClient | None = None) -> str:
    """The id of the configured experiment, created if missing."""
    from mlflow.exceptions import MlflowException

    client = client or client_for(config)
    name = experiment_name(config)
    try:
        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                return str(client.create_experiment(name, artifact_location=local_artifact_root(config)))
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":  # created meanwhile by a parallel step
                    raise
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
    except MlflowException as err:
        raise mlflow_error(config, f"experiment {name!r}", err) from None
    if found.lifecycle_stage == "deleted":
        raise ConfigError(
            f"registry.experiment: MLflow experiment {name!r} is deleted; restore it or choose another name"
        )
    return str(found.experiment_id)


def mlflow_error(config: RagtuneConfig, what: str, err: Exception) -> RagtuneError:
    message = str(getattr(err, "message", None) or err).strip().splitlines()
    first = message[0][:300] if message else type(err).__name__
    return RagtuneError(f"MLflow at {display_uri(tracking_uri(config))}: {what}: {first}")


# -- secrets -------------------------------------------------------------------------------------


_UNSAFE_KEY_CHARS = re.compile(r"[^\w/.\- :]")


def safe_key(key: str) -> str:
    """``key`` with characters MLflow refuses in param, metric and tag names replaced by ``_``."""
    return _UNSAFE_KEY_CHARS.sub("_", key)[:250]


def is_secret_key(key: str) -> bool:
    """A key that may hold a secret itself (not an ``*_env`` variable *name*)."""
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1]))


def _env_names(node: Any) -> Iterable[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str) and key.endswith("_env") and isinstance(value, str):
                yield value
            else:
                yield from _env_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _env_names(value)


class Redactor:
    """Scrubs secret values (those of the env vars the config names, and well-known ones) from text."""

    def __init__(self, config: RagtuneConfig, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        names = {*_env_names(config.model_dump(mode="json")), *_KNOWN_SECRET_ENV}
        values = {environ.get(name, "") for name in names}
        # very short values would redact ordinary words; nobody's secret is 5 characters long
        self.secrets = sorted((v for v in values if len(v) >= 6), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def mapping(self, values: Mapping[str, str], limit: int) -> dict[str, str]:
        """Secret-looking keys dropped, secret values redacted, values cut to ``limit``."""
        return {safe_key(key): self(value)[:limit] for key, value in values.items() if not is_secret_key(key)}


# -- params --------------------------------------------------------------------------------------


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts (and lists of dicts) to dotted keys with string values; secret-looking keys dropped."""
    flat: dict[str, str] = {}
    if isinstance(value, Mapping):
        for key, inner in value.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if is_secret_key(str(key)):
                continue
            flat.update(flatten(inner, dotted))
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for index, inner in enumerate(value):
            flat.update(flatten(inner, f"{prefix}.{index}"))
    else:
        flat[prefix or "value"] = _as_text(value)
    return flat


def config_params(config: RagtuneConfig) -> dict[str, str]:
    """The whole config as flat MLflow params, without secrets; the tracking URI without user info."""
    params = flatten(config.model_dump(mode="json"))
    if config.registry.tracking_uri:
        params["registry.tracking_uri"] = display_uri(config.registry.tracking_uri)
    return Redactor(config).mapping(params, MAX_PARAM_VALUE)


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, str], *, run_label: str) -> None:
    """Log params not logged yet; a differing value for a logged key is kept and warned about."""
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    new = []
    for key, value in params.items():
        if key not in existing:
            new.append(Param(key, value))
        elif existing[key] != value:
            log.warning(
                "%s: param %s already logged as %r; not changed to %r", run_label, key, existing[key], value
            )
    for start in range(0, len(new), _BATCH):
        client.log_batch(run_id, params=new[start : start + _BATCH])


# -- metrics -------------------------------------------------------------------------------------

MetricValue = float | int | Sequence[tuple[int, float]]
"""A scalar, or a series of ``(step, value)`` points (e.g. a loss curve)."""


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def numeric_leaves(data: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number in nested dicts, by slash-joined key (lists are skipped)."""
    found: dict[str, float] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{prefix}/{key}" if prefix else str(key)
            found.update(numeric_leaves(value, name))
    else:
        number = _finite(data)
        if number is not None and prefix:
            found[prefix] = number
    return found


def _metric_entities(metrics: Mapping[str, MetricValue], run_label: str) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    entities = []
    for name, value in metrics.items():
        key = safe_key(name)
        if isinstance(value, Sequence) and not isinstance(value, str):
            for point in value:
                step, number = int(point[0]), _finite(point[1])
                if number is not None:
                    entities.append(Metric(key, number, now, step))
            continue
        number = _finite(value)
        if number is None:
            log.warning("%s: metric %s=%r is not a finite number; not logged", run_label, key, value)
            continue
        entities.append(Metric(key, number, now, 0))
    return entities


def _log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, MetricValue], run_label: str
) -> None:
    entities = _metric_entities(metrics, run_label)
    for start in range(0, len(entities), _BATCH * 10):  # the server takes up to 1000 metrics a batch
        client.log_batch(run_id, metrics=entities[start : start + _BATCH * 10])


# -- runs ----------------------------------------------------------------------------------------


def _quoted(value: str, what: str) -> str:
    if "'" in value or "\\" in value:
        raise InputError(f"{what} {value!r} must not contain quotes or backslashes")
    return f"'{value}'"


def _find_run(client: MlflowClient, experiment_id: str, filters: Sequence[str], what: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=" and ".join(filters),
        order_by=["attributes.start_time ASC"],
        max_results=10,
    )
    if not runs:
        return None
    if len(runs) > 1:
        log.warning("%d MLflow runs match %s; using the oldest, %s", len(runs), what, runs[0].info.run_id)
    return str(runs[0].info.run_id)


def start_pipeline_run(config: RagtuneConfig, pipeline_run_id: str) -> str:
    """The MLflow run of pipeline run ``pipeline_run_id``: the existing one, else a new one.

    A new run gets the whole config (without secrets) as params. Returns the MLflow run id.
    """
    from mlflow.exceptions import MlflowException

    if not pipeline_run_id:
        raise InputError("pipeline_run_id must not be empty")
    client = client_for(config)
    experiment_id = ensure_experiment(config, client)
    filters = [
        f"tags.`{TAG_PIPELINE_RUN_ID}` = {_quoted(pipeline_run_id, 'pipeline run id')}",
        f"tags.`{TAG_ROLE}` = '{ROLE_PIPELINE}'",
    ]
    try:
        found = _find_run(client, experiment_id, filters, f"pipeline run {pipeline_run_id}")
        if found is not None:
            log.info("reusing MLflow run %s of pipeline run %s", found, pipeline_run_id)
            return found
        run = client.create_run(
            experiment_id,
            run_name=pipeline_run_id,
            tags={TAG_PIPELINE_RUN_ID: pipeline_run_id, TAG_ROLE: ROLE_PIPELINE},
        )
        run_id = str(run.info.run_id)
        _log_params(client, run_id, config_params(config), run_label=f"run {run_id}")
    except MlflowException as err:
        raise mlflow_error(config, f"pipeline run {pipeline_run_id}", err) from None
    log.info("MLflow run %s started for pipeline run %s", run_id, pipeline_run_id)
    return run_id


def stage_run(config: RagtuneConfig, run_id: str, stage: str, client: MlflowClient | None = None) -> str:
    """The nested run of ``stage`` under pipeline run ``run_id`` (created on first use)."""
    client = client or client_for(config)
    parent = client.get_run(run_id)
    filters = [
        f"tags.`{TAG_PARENT}` = {_quoted(run_id, 'run id')}",
        f"tags.`{TAG_STAGE}` = {_quoted(stage, 'stage')}",
    ]
    found = _find_run(client, parent.info.experiment_id, filters, f"stage {stage} of run {run_id}")
    if found is not None:
        return found
    tags = {TAG_PARENT: run_id, TAG_STAGE: stage, TAG_ROLE: ROLE_STAGE}
    pipeline_run_id = parent.data.tags.get(TAG_PIPELINE_RUN_ID)
    if pipeline_run_id:
        tags[TAG_PIPELINE_RUN_ID] = pipeline_run_id
    return str(client.create_run(parent.info.experiment_id, run_name=stage, tags=tags).info.run_id)


def _log_artifacts(
    client: MlflowClient, run_id: str, artifacts: Path | Sequence[Path], run_label: str
) -> list[str]:
    """Upload files (to the run's root) and folders (under their own name); return what is missing."""
    paths = [artifacts] if isinstance(artifacts, Path) else [Path(p) for p in artifacts]
    missing = []
    for path in paths:
        if path.is_file():
            client.log_artifact(run_id, str(path))
        elif path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        else:
            log.warning("%s: artifact %s does not exist; not logged", run_label, path)
            missing.append(str(path))
    return missing


def log_stage(
    config: RagtuneConfig,
    run_id: str,
    stage: str,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, MetricValue] | None = None,
    artifacts: Path | Sequence[Path] | None = None,
) -> str:
    """Log one stage into its nested run under ``run_id``; returns the nested run's id.

    ``params`` may be nested (flattened to dotted keys, secrets dropped). ``metrics`` maps names to
    numbers or to ``(step, value)`` series such as a loss curve; scalar metrics are also logged on
    the parent run as ``<stage>/<name>`` so pipeline runs compare side by side. ``artifacts`` are
    files (logged at the nested run's root) and folders (logged under their own name). A missing
    artifact is warned about and recorded in the ``ragtune.missing_artifacts`` tag.
    """
    from mlflow.exceptions import MlflowException

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", stage):
        raise InputError(f"stage name {stage!r}: use letters, digits, '_', '.' or '-'")
    client = client_for(config)
    label = f"stage {stage}"
    try:
        child = stage_run(config, run_id, stage, client)
        if params:
            clean = Redactor(config).mapping(flatten(dict(params)), MAX_PARAM_VALUE)
            _log_params(client, child, clean, run_label=label)
        if metrics:
            _log_metrics(client, child, metrics, label)
            scalars = {
                f"{stage}/{key}": value
                for key, value in metrics.items()
                if isinstance(value, int | float) and not isinstance(value, bool)
            }
            if scalars:
                _log_metrics(client, run_id, scalars, label)
        if artifacts is not None:
            missing = _log_artifacts(client, child, artifacts, label)
            if missing:
                client.set_tag(child, "ragtune.missing_artifacts", json.dumps(missing)[:MAX_TAG_VALUE])
        client.set_terminated(child)
    except MlflowException as err:
        raise mlflow_error(config, f"logging stage {stage} of run {run_id}", err) from None
    return child


def set_run_tags(config: RagtuneConfig, run_id: str, tags: Mapping[str, str]) -> None:
    """Set tags on a run (secret-looking keys dropped, secret values redacted)."""
    from mlflow.entities import RunTag

    clean = Redactor(config).mapping(tags, MAX_TAG_VALUE)
    client_for(config).log_batch(run_id, tags=[RunTag(k, v) for k, v in clean.items()])
