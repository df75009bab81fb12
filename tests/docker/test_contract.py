"""The cluster contract, run for real: every task in its container with exactly what its pod gets.

`ragtune run --runner docker` gives each task the env of its executor in the compiled pipeline
(the Secrets and ConfigMap keys its pod mounts, nothing else) and its memory/CPU limits. Here the
services check credentials, as in a cluster: moto S3 with IAM auth (the cache lives there), MLflow
with basic auth (the registry, and evaluate's champion), and the LLM server wants its API key. A
task that opens a service its spec mounts no credential for fails the run (AccessDenied / 401).
Weaviate cannot run here: the run uses FAISS, and the Weaviate Secret is checked by
tests/pipelines/test_stage_clients.py only.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.docker_runner import CONTAINER_RECORDS
from tests.auth_servers import AuthMlflow, AuthS3, auth_mlflow, auth_s3
from tests.docker.conftest import run_in_containers
from tests.llm.fake_openai import FakeOpenAI
from tests.pipelines.test_local_run import quick_demo_config, responder

pytestmark = pytest.mark.docker

LLM_KEY = "sk-ragtune-contract-test"
CACHE_BUCKET = "ragtune-cache"


def _contract_config(tmp: Path, s3: AuthS3, mlflow: AuthMlflow, llm_url: str) -> Path:
    path = quick_demo_config(tmp, llm_url)
    config = yaml.safe_load(path.read_text())
    config["storage"] = {"endpoint": s3.endpoint, "secure": False}
    config["cache"] = {"uri": f"s3://{CACHE_BUCKET}/cache"}
    config["registry"]["tracking_uri"] = mlflow.url
    config["security"] = {
        "endpoints": [
            {"name": "s3", "url": s3.url, "secrets": sorted(s3.env())},
            {"name": "mlflow", "url": mlflow.url, "secrets": sorted(mlflow.env())},
            {"name": "llm", "url": llm_url, "secrets": ["OPENAI_API_KEY"]},
        ]
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _refused_without_credentials(s3: AuthS3, mlflow: AuthMlflow) -> None:
    """The servers really check: otherwise a missing credential would go unnoticed."""
    from minio import Minio
    from minio.error import S3Error

    with pytest.raises(S3Error):
        Minio(s3.endpoint, access_key="wrong", secret_key="wrong", secure=False).list_buckets()
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(f"{mlflow.url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)


@pytest.fixture(scope="module")
def contract_run(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, AuthMlflow]]:
    tmp = tmp_path_factory.mktemp("contract")
    servers = tmp / "servers"
    servers.mkdir()
    with (
        auth_s3(servers) as s3,
        auth_mlflow(servers, s3) as mlflow,
        FakeOpenAI(responder=responder, api_key=LLM_KEY) as llm,
    ):
        _refused_without_credentials(s3, mlflow)
        s3.make_bucket(CACHE_BUCKET)
        config = _contract_config(tmp, s3, mlflow, llm.url)
        env = {**s3.env(), **mlflow.env(), "OPENAI_API_KEY": LLM_KEY}
        # Nothing of these may reach a task except through its spec's Secrets.
        env |= {"WEAVIATE_API_KEY": "unused-weaviate-key", "HF_TOKEN": "unused-hf-token"}
        yield run_in_containers(tmp, config, image, env), mlflow


def _records(run: Path) -> list[dict[str, Any]]:
    return json.loads((run / CONTAINER_RECORDS).read_text(encoding="utf-8"))


def test_the_graph_registers_its_model_with_each_task_holding_only_its_pods_credentials(
    contract_run: tuple[Path, AuthMlflow],
) -> None:
    from mlflow import MlflowClient

    run, mlflow = contract_run
    decision = json.loads((run / "register-model" / "decision" / "decision.json").read_text())
    os.environ.update(mlflow.env())  # this test process is the client here
    version = MlflowClient(mlflow.url).get_model_version(decision["model_name"], str(decision["version"]))
    assert version.status == "READY"
    executed = {r["task"] for r in _records(run)}
    assert {"evaluate-adapter", "register-model", "train-adapter", "index-documents"} <= executed


def test_every_container_got_its_specs_env_and_limits_and_nothing_more(
    contract_run: tuple[Path, AuthMlflow],
) -> None:
    from pipelines.task_contract import compiled_contracts

    run, _ = contract_run
    contracts = compiled_contracts()
    secret_vars = {v for c in contracts.values() for v, s in c.env.items() if s.kind == "secret"}
    for record in _records(run):
        contract = contracts[record["task"]]
        assert record["executor"] == contract.executor
        given = set(record["env_names"]) & secret_vars
        mounted = {v for v, s in contract.env.items() if s.kind == "secret"}
        assert given <= mounted, f"{record['task']} got Secrets its pod would not: {sorted(given - mounted)}"
        assert "RAGTUNE_ENDPOINTS" in record["env_names"] or not contract.env, record["task"]
        assert record["memory_limit"] == contract.memory_limit, record["task"]
    evaluate = next(r for r in _records(run) if r["task"] == "evaluate-adapter")
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID"} <= set(
        evaluate["env_names"]
    )
