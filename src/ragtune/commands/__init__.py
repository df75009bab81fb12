"""Bodies of ``ragtune`` commands that live outside ``cli.py``; ``cli.py`` registers them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.core.config import RagtuneConfig, load_config, parse_set_flags
from ragtune.core.endpoints import export_grants


def load_cli_config(
    path: Path | None, flags: list[str] | None, extra: dict[str, Any] | None = None
) -> RagtuneConfig:
    """The config of ``--config`` and ``--set`` (then ``extra``); this process and its tasks see the
    user's endpoint grants."""
    config = load_config(path, overrides=parse_set_flags(flags or []) | (extra or {}))
    export_grants(config.security)
    return config
