"""A registered version's adapter: resolved by alias or number, fetched for evaluation and serving.

The current champion's adapter is fetched so the evaluate step can judge it on the new eval items.

The gate compares a new version with the champion on the *same* items with the *same* judge (a
paired interval), never with a mean recorded on another eval set. So the evaluate component calls
:func:`fetch_champion` and passes the folder to ``evaluate(extra_adapters={"champion": path})``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ragtune.core.artifacts import ModelDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import InputError
from ragtune.registry.promote import version_by_alias
from ragtune.registry.pyfunc_model import ADAPTER_ARTIFACT
from ragtune.registry.register import ModelVersionInfo, get_version
from ragtune.registry.tracking import client_for, mlflow_error, tracking_uri

log = logging.getLogger(__name__)

ADAPTER_META = ModelDir.ADAPTER_META


def adapter_uri(source: str) -> str:
    """The adapter folder inside a version's model (``source`` is its logged model's artifact location).

    This URI names the immutable files of one version, never an alias: what serving manifests pin.
    """
    return f"{source.rstrip('/')}/artifacts/{ADAPTER_ARTIFACT}"


def resolve_version(
    config: RagtuneConfig, alias: str | None = None, version: int | None = None
) -> ModelVersionInfo:
    """The version of ``registry.model_name`` that ``version`` or ``alias`` names (default: the champion alias).

    An :class:`InputError` names the model and the alias or version when there is none.
    """
    from mlflow.exceptions import MlflowException

    if version is not None:
        return get_version(config, version)
    name, alias = config.registry.model_name, alias or config.registry.champion_alias
    try:
        found = version_by_alias(client_for(config), name, alias)
    except MlflowException as err:
        raise mlflow_error(config, f"resolving {name}@{alias}", err) from None
    if found is None:
        raise InputError(f"registered model {name!r} has no version with alias {alias!r}")
    return ModelVersionInfo.from_mlflow(found)


def fetch_adapter(config: RagtuneConfig, info: ModelVersionInfo, out_dir: Path, path: str = "") -> Path:
    """Download a version's adapter folder (or one ``path`` inside it) under ``out_dir``.

    From the version's source (its logged model's artifact location), not ``models:/…``, which a
    sqlite registry would resolve through MLflow's global tracking URI. A download that lacks the
    adapter is an :class:`InputError`.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    uri = adapter_uri(info.source) + (f"/{path}" if path else "")
    try:
        local = Path(
            download_artifacts(artifact_uri=uri, dst_path=str(out_dir), tracking_uri=tracking_uri(config))
        )
    except MlflowException as err:
        raise mlflow_error(config, f"downloading {info.name} version {info.version}", err) from None
    expected = local if path else local / ADAPTER_META
    if not expected.is_file():
        raise InputError(
            f"{info.name} version {info.version}: its model holds no {ADAPTER_ARTIFACT}/{path or ADAPTER_META}"
        )
    return local


def fetch_champion(config: RagtuneConfig, out_dir: Path) -> Path | None:
    """Download the champion version's adapter folder under ``out_dir``; ``None`` when there is none.

    There is none when the registered model does not exist yet or no version holds
    ``registry.champion_alias``. A download that lacks the adapter is an :class:`InputError`.
    """
    from mlflow.exceptions import MlflowException

    name, alias = config.registry.model_name, config.registry.champion_alias
    try:
        champion = version_by_alias(client_for(config), name, alias)
    except MlflowException as err:
        raise mlflow_error(config, f"fetching the {alias} of {name}", err) from None
    if champion is None:
        log.info("%s has no %s yet: no champion to evaluate", name, alias)
        return None
    adapter = fetch_adapter(config, ModelVersionInfo.from_mlflow(champion), out_dir)
    log.info("fetched %s version %s (%s) to %s", name, champion.version, alias, adapter)
    return adapter
