"""Serving a registered version: an OpenAI-compatible server, and the KServe manifests that pin it.

>>> server, served = build_server(config, alias="champion")   # uvicorn, not started
>>> render_deploy(config, alias="champion", out_dir=Path("deploy/serving"))

This package sits above the registry: it resolves aliases and fetches adapters through
``ragtune.registry``, and generates with the local generator of ``ragtune.core.llm``.
"""

from __future__ import annotations

from ragtune.serve.deploy import DeployReport, render_deploy
from ragtune.serve.server import build_server, serve

__all__ = ["DeployReport", "build_server", "render_deploy", "serve"]
