"""Serving fixtures: a version registered in a real ``mlflow server`` (S3 artifacts on moto) and a
real uvicorn server answering with it on 127.0.0.1.

The MLflow server and the tiny adapter (a random 1-layer Llama with a LoRA adapter) are the
registry tests' fixtures; they are imported here so both suites share one server per session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from mlflow import MlflowClient

from ragtune.core.config import RagtuneConfig, build_config
from ragtune.registry import ModelVersionInfo, register_model, start_pipeline_run
from ragtune.serve import build_server
from ragtune.serve.loader import ServedModel
from tests.conftest import free_port
from tests.registry.conftest import (  # noqa: F401  (fixtures)
    LINEAGE,
    MlflowServer,
    TinyModel,
    _mlflow_process,
    mlflow_server,
    tiny_adapter,
)

ALIAS = "challenger"
SERVER_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Registered:
    config: RagtuneConfig
    info: ModelVersionInfo
    server: MlflowServer


def serve_config(root: Path, tracking_uri: str, model_name: str, **serve: object) -> RagtuneConfig:
    return build_config(
        {
            "run": {"name": f"exp-{model_name}", "root": str(root)},
            "registry": {"tracking_uri": tracking_uri, "model_name": model_name},
            "serve": {"max_tokens": 8, "max_tokens_limit": 64, "batch_wait_ms": 20, "threads": 1, **serve},
        }
    )


@pytest.fixture(scope="session")
def registered(
    mlflow_server: MlflowServer,  # noqa: F811
    tiny_adapter: TinyModel,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Registered:
    """The tiny adapter registered as version 1 of ``model-serve``, holding alias ``challenger``."""
    config = serve_config(tmp_path_factory.mktemp("serve-runs"), mlflow_server.url, "model-serve")
    run_id = start_pipeline_run(config, "pipe-serve-1")
    info = register_model(config, run_id, tiny_adapter.adapter_dir, None, LINEAGE)
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    client.set_registered_model_alias(info.name, ALIAS, str(info.version))
    return Registered(config=config, info=info, server=mlflow_server)


@dataclass
class Running:
    url: str  # http://127.0.0.1:PORT/v1
    served: ServedModel
    server: uvicorn.Server


def start(server: uvicorn.Server) -> threading.Thread:
    """Run ``server`` on a thread until it has bound its port."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return thread


@pytest.fixture(scope="session")
def running(registered: Registered) -> Iterator[Running]:
    """``ragtune serve --alias challenger`` as the CLI builds it, on an ephemeral port."""
    port = free_port()
    server, served = build_server(registered.config, alias=ALIAS, host="127.0.0.1", port=port)
    thread = start(server)
    try:
        yield Running(url=f"http://127.0.0.1:{port}/v1", served=served, server=server)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
