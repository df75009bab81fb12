"""Fill the pipeline's UI parameters from a loaded config (for ``ragtune run`` and ``submit``)."""

from __future__ import annotations

from typing import Any

from components.config.fields import CONFIG_PARAMETERS
from ragtune.core.config import RagtuneConfig


def _get(config: RagtuneConfig, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def parameters_from_config(config: RagtuneConfig) -> dict[str, Any]:
    """``config_json`` plus every UI parameter's value as the config has it (None becomes "")."""
    params: dict[str, Any] = {"config_json": config.to_json()}
    for name, dotted in CONFIG_PARAMETERS.items():
        value = _get(config, dotted)
        params[name] = "" if value is None else value
    return params
