"""The docker tests build images and run the graph in containers (minutes): only on request.

`pytest -m docker` selects them (`.ci/run` does, after `make test`); a plain run skips them with
that reason. Where no Docker engine answers they fail in CI (CI=true) and skip elsewhere.

The fixtures every module here shares: `engine`, and `image` (alias `cpu_image`), the CPU image
built once per session through the scripts `make image-cpu` runs. Its tag is `$RAGTUNE_TEST_IMAGE`
(default `make image-cpu`'s), so a developer can build and test a tag of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.auth_servers import AuthMlflow, AuthS3, auth_mlflow, auth_s3
from tests.conftest import unavailable
from tests.llm.fake_openai import FakeOpenAI
from tests.pipelines.test_local_run import quick_demo_config, responder

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("RAGTUNE_TEST_IMAGE") or "ghcr.io/ragtune/ragtune:0.1.0"  # make image-cpu's tag
LOCAL_BASE = "ragtune-base:bookworm"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "docker" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="builds images and runs the graph in containers: run `pytest -m docker`")
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(skip)


def _engine_or_reason() -> str | None:
    """None when a Docker engine answers, else why not."""
    from pipelines.docker_runner import docker_client
    from ragtune.core.errors import RagtuneError

    try:
        docker_client().close()
    except RagtuneError as err:
        return str(err)
    return None


def _sh(args: list[str], log: Path, timeout: int, env: dict[str, str] | None = None) -> None:
    """Run a build step from the repo root; its output goes to ``log``, its tail into the failure."""
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.run(
            args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=env, check=False
        )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({proc.returncode}):\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def engine() -> None:
    reason = _engine_or_reason()
    if reason is not None:
        unavailable(f"the container tests need a Docker engine: {reason}")


@pytest.fixture(scope="session")
def image(engine: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Base (debootstrap), wheelhouse and CPU image, through the same scripts `make` runs."""
    logs = tmp_path_factory.mktemp("build")
    env = {**os.environ, "PYTHON": sys.executable}
    _sh(["docker/base-image.sh", LOCAL_BASE], logs / "base.log", 900)
    _sh(["docker/wheelhouse.sh", "dist/wheelhouse"], logs / "wheelhouse.log", 1800, env)
    _sh(
        ["docker/build-image.sh", "docker/Dockerfile", IMAGE, "dist/wheelhouse"],
        logs / "image.log",
        2400,
        {**env, "BASE_IMAGE": LOCAL_BASE},
    )
    return IMAGE


@pytest.fixture(scope="session")
def cpu_image(image: str) -> str:
    """The same image under the name other modules use."""
    return image


def run_in_containers(cwd: Path, config: Path, image: str, env: dict[str, str] | None = None) -> Path:
    """`ragtune run --runner docker --config CONFIG` from ``cwd`` (fails with the log's tail);
    returns the one run folder it made under ``cwd/runs``."""
    log = cwd / "run.log"
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "ragtune.cli", "run", "--runner", "docker", "--config", str(config)],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}", "RAGTUNE_IMAGE": image, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=2400,
            check=False,
        )
    assert proc.returncode == 0, log.read_text()[-6000:]
    runs = sorted((cwd / "runs").glob("ragtune-*"))
    assert len(runs) == 1, runs
    return runs[0]


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


@pytest.fixture(scope="session")
def contract_run(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, AuthMlflow]]:
    """The one graph run of the container tests: `ragtune run --runner docker` on the sample corpus
    (generator and judge the suite's fake server, so the run is quick and its outcome known;
    parsing, MiniLM + FAISS, LoRA training of SmolLM2, evaluation and the registry are real),
    against services that check credentials. Yields the run folder and the MLflow server."""
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
