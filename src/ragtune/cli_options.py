"""The options several ``ragtune`` commands share, in one place so a command module can declare them too.

:mod:`ragtune.cli` registers command bodies that live in their own modules (``cli_<command>.py``);
nothing may import the CLI itself, so the shared option types live here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (see examples/psychiatry/ragtune.yaml).", show_default=False
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a config key: --set index.chunk_tokens=128 (repeatable).", show_default=False
    ),
]
