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
from pathlib import Path
from typing import Any

import pytest

from pipelines.docker_runner import CONTAINER_RECORDS
from tests.auth_servers import AuthMlflow

pytestmark = pytest.mark.docker


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


def test_a_local_mlflow_store_the_host_wrote_stays_writable_for_the_task_containers(
    image: str, tmp_path: Path
) -> None:
    """`make demo`, then `--runner docker` on the same run.root: the container (uid 10001) writes the
    sqlite store the host user created, as the register task does."""
    import subprocess

    import mlflow

    from pipelines.docker_runner import share_with_tasks

    root = tmp_path / "runs"
    (root / "mlflow").mkdir(parents=True)
    root.chmod(0o755)
    (root / "mlflow").chmod(0o755)
    store = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    mlflow.MlflowClient(store).create_experiment("made-by-the-host")  # as a subprocess run does
    (root / "mlflow" / "mlflow.db").chmod(0o644)
    script = f"import mlflow; mlflow.MlflowClient({store!r}).create_experiment('made-in-a-container')"

    def in_container() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--group-add", str(os.getgid()),
             "-v", f"{root}:{root}", image, "python", "-c", script],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    assert "readonly database" in in_container().stderr  # the failure the issue reported
    share_with_tasks(root)  # what `ragtune run --runner docker` does before the first task
    done = in_container()
    assert done.returncode == 0, done.stderr[-2000:]
    names = {e.name for e in mlflow.MlflowClient(store).search_experiments()}
    assert {"made-by-the-host", "made-in-a-container"} <= names
