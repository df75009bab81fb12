"""``ragtune serve`` and ``ragtune deploy``: the registered version behind an endpoint, or pinned in manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ragtune.commands import load_cli_config

console = Console(stderr=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config.", show_default=False)]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key (repeatable).", show_default=False)
]
AliasOption = Annotated[
    str | None,
    typer.Option(
        "--alias", help="Registry alias to serve (default: serve.alias, else champion).", show_default=False
    ),
]
VersionOption = Annotated[
    int | None,
    typer.Option("--version", help="Model version number (instead of an alias).", show_default=False),
]


def _check_ref(alias: str | None, version: int | None) -> None:
    if alias and version is not None:
        raise typer.BadParameter("give --alias or --version, not both")


def serve(
    config: ConfigOption = None,
    set_: SetOption = None,
    alias: AliasOption = None,
    version: VersionOption = None,
    host: Annotated[str | None, typer.Option("--host", help="Listen address (default: serve.host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default: serve.port).")] = None,
) -> None:
    """Serve a registered version (base + adapter) at an OpenAI-compatible /v1 endpoint."""
    from ragtune.serve import serve as run_server

    _check_ref(alias, version)
    run_server(load_cli_config(config, set_), alias=alias, version=version, host=host, port=port)


def deploy(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for serving.yaml and kustomization.yaml.")],
    config: ConfigOption = None,
    set_: SetOption = None,
    alias: AliasOption = None,
    version: VersionOption = None,
) -> None:
    """Resolve the alias to its version's adapter URI and render the KServe serving object into --out."""
    from ragtune.serve import render_deploy

    _check_ref(alias, version)
    report = render_deploy(load_cli_config(config, set_), out, alias=alias, version=version)
    console.print(
        f"{report.model_name} version {report.version} -> {report.kind} {report.namespace}/{report.name}"
        f" pinning {report.adapter_uri}: {report.manifest}",
        highlight=False,
        soft_wrap=True,
    )
