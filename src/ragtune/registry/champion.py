"""The current champion's adapter, fetched so the evaluate step can judge it on the new eval items.

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
from ragtune.registry.tracking import client_for, mlflow_error, tracking_uri

log = logging.getLogger(__name__)

ADAPTER_META = ModelDir.ADAPTER_META


def fetch_champion(config: RagtuneConfig, out_dir: Path) -> Path | None:
    """Download the champion version's adapter folder under ``out_dir``; ``None`` when there is none.

    There is none when the registered model does not exist yet or no version holds
    ``registry.champion_alias``. A download that lacks the adapter is an :class:`InputError`.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    name, alias = config.registry.model_name, config.registry.champion_alias
    try:
        champion = version_by_alias(client_for(config), name, alias)
        if champion is None:
            log.info("%s has no %s yet: no champion to evaluate", name, alias)
            return None
        store = tracking_uri(config)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        # the version's source (its logged model's artifact location), not models:/…, which a
        # sqlite registry would resolve through MLflow's global tracking URI
        local = download_artifacts(
            artifact_uri=f"{champion.source.rstrip('/')}/artifacts/{ADAPTER_ARTIFACT}",
            dst_path=str(out_dir),
            tracking_uri=store,
        )
    except MlflowException as err:
        raise mlflow_error(config, f"fetching the {alias} of {name}", err) from None
    adapter = Path(local)
    if not (adapter / ADAPTER_META).is_file():
        raise InputError(
            f"{name} version {champion.version}: its model holds no {ADAPTER_ARTIFACT}/{ADAPTER_META}"
        )
    log.info("fetched %s version %s (%s) to %s", name, champion.version, alias, adapter)
    return adapter
