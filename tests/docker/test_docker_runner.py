"""`--runner docker` plumbing that needs no Docker engine (the engine-backed run is test_images.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipelines import docker_runner
from pipelines.local_run import run_locally
from ragtune.core.config import build_config
from ragtune.core.errors import RagtuneError

REPO = Path(__file__).resolve().parents[2]


def test_kfp_docker_runner_accepts_the_pod_like_options() -> None:
    from kfp import local

    options = docker_runner.runner_options()
    runner = local.DockerRunner(**options)  # raises on an option kfp does not pass to containers.run
    assert runner.container_run_args["read_only"] is True
    assert set(options["tmpfs"]) == {"/tmp"}
    assert "user" not in options, "tasks run as the image's own non-root user"


def test_volumes_mount_host_folders_at_their_own_paths(tmp_path: Path) -> None:
    corpus, cache = tmp_path / "corpus", tmp_path / "cache"
    volumes = docker_runner.task_volumes([corpus], [cache])
    assert volumes == {
        docker_runner.MODEL_CACHE_VOLUME: {"bind": docker_runner.MODEL_CACHE_MOUNT, "mode": "rw"},
        str(corpus): {"bind": str(corpus), "mode": "ro"},
        str(cache): {"bind": str(cache), "mode": "rw"},
    }


def test_a_container_is_described_from_what_the_engine_reports() -> None:
    command = [
        "sh",
        "-c",
        "...",
        '{"outputs": {"outputFile": "/r/ragtune-1/train-adapter/executor_output.json"}}',
    ]
    container = SimpleNamespace(
        attrs={
            "Config": {"Image": "img:1", "User": "10001:10001", "Env": ["A=secret-value", "B=x"]},
            "Image": "sha256:abc",
            "HostConfig": {"ReadonlyRootfs": True, "Tmpfs": {"/tmp": "rw"}, "Memory": 4096, "NanoCpus": 0},
            "Mounts": [{"Destination": "/r", "Source": "/r", "RW": True, "Type": "bind"}],
        },
        diff=lambda: [{"Path": "/r", "Kind": 1}],
    )
    record = docker_runner.describe(container, 0, command)
    assert record == {
        "task": "train-adapter",
        "image": "img:1",
        "image_id": "sha256:abc",
        "exit_code": 0,
        "user": "10001:10001",
        "read_only_root": True,
        "tmpfs": ["/tmp"],
        "mounts": [{"destination": "/r", "source": "/r", "rw": True, "type": "bind"}],
        "rootfs_changes": ["/r"],
        "env_names": ["A", "B"],  # names only: no value is written down
        "memory_limit": 4096,
        "nano_cpus": None,
    }


def test_the_task_handler_is_swapped_only_while_the_run_lasts() -> None:
    from kfp.local import docker_task_handler

    original = docker_task_handler.DockerTaskHandler
    with docker_runner.tasks_in_image(docker_runner.TaskSetup("img:1", {}, {})) as records:
        swapped = docker_task_handler.DockerTaskHandler
        assert swapped is not original and issubclass(swapped, original)
        assert records == []
    assert docker_task_handler.DockerTaskHandler is original


def test_the_run_root_and_what_a_subprocess_run_left_there_become_group_writable(tmp_path: Path) -> None:
    """Both runners take turns on one run.root: the host's sqlite MLflow store stays writable for uid 10001."""
    root = tmp_path / "runs"
    (root / "mlflow").mkdir(parents=True)
    store = root / "mlflow" / "mlflow.db"
    store.write_text("")
    store.chmod(0o644)
    docker_runner.share_with_tasks(root)
    assert root.stat().st_mode & 0o2070 == 0o2070
    assert (root / "mlflow").stat().st_mode & 0o2070 == 0o2070
    assert store.stat().st_mode & 0o060 == 0o060


def test_a_run_root_it_cannot_share_is_one_line_saying_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    (root / "mlflow").mkdir(parents=True)
    (root / "mlflow" / "mlflow.db").write_text("")

    def refuse(self: Path, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted", str(self))

    monkeypatch.setattr(Path, "chmod", refuse)
    with pytest.raises(
        RagtuneError, match=r"cannot be made writable for the task containers .*chmod -R g\+rwX"
    ) as err:
        docker_runner.share_with_tasks(root)
    assert "\n" not in str(err.value)


def test_no_engine_is_a_clear_error_before_any_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    config = build_config({"run": {"root": str(tmp_path / "runs")}, "corpus": {"uri": str(tmp_path)}})
    with pytest.raises(
        RagtuneError, match=r"--runner docker: no Docker engine answers .*--runner subprocess"
    ):
        run_locally(config, runner="docker")
    assert not list((tmp_path / "runs").glob("ragtune-*")), "no task may have started"


def test_a_missing_image_is_named_with_how_to_build_it() -> None:
    class Images:
        def get(self, name: str) -> Any:
            raise docker_runner.docker_sdk().errors.ImageNotFound(name)

    with pytest.raises(
        RagtuneError, match=r"image ghcr.io/x/y:1 not found locally; build it with `make images`"
    ):
        docker_runner.require_image(SimpleNamespace(images=Images()), "ghcr.io/x/y:1")


def test_cli_offers_only_the_two_runners() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ragtune.cli", "run", "--runner", "kubernetes"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "300"},  # one line: rich would wrap the message in its box
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "'kubernetes' is not one of 'subprocess', 'docker'" in result.stdout + result.stderr


def test_a_task_gets_its_pods_secrets_and_configmap_keys_and_its_limits() -> None:
    """From the compiled spec: evaluate gets MLflow's credentials, parse does not; nothing else of the shell."""
    from pipelines.task_contract import compiled_contracts

    contracts = compiled_contracts()
    environ = {
        "AWS_ACCESS_KEY_ID": "ak",
        "AWS_SECRET_ACCESS_KEY": "sk",
        "MLFLOW_TRACKING_USERNAME": "u",
        "MLFLOW_TRACKING_PASSWORD": "p",
        "HOME": "/root",
        "RAGTUNE_CACHE__URI": "s3://c/",
    }
    evaluate = docker_runner.task_args(contracts["evaluate-adapter"], environ)
    assert "HOME" not in evaluate["environment"]
    assert set(evaluate["environment"]) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "RAGTUNE_CACHE__URI",
        "RAGTUNE_ENDPOINTS",
    }
    assert evaluate["mem_limit"] == contracts["evaluate-adapter"].memory_limit == 16 * 2**30
    parse = docker_runner.task_args(contracts["parse-documents"], environ)["environment"]
    assert "MLFLOW_TRACKING_PASSWORD" not in parse and parse["AWS_ACCESS_KEY_ID"] == "ak"
    assert (
        "RAGTUNE_ENDPOINTS" not in docker_runner.task_args(contracts["shard-indexes"], environ)["environment"]
    )


def test_a_credential_only_a_renamed_variable_holds_is_named_before_the_run() -> None:
    from pipelines.task_contract import compiled_contracts

    config = build_config({"llm": {"generator": {"api_key_env": "GEN_KEY"}}})
    environ = {"GEN_KEY": "sk-gen", "AWS_SECRET_ACCESS_KEY": "s3-secret", "OPENAI_API_KEY": ""}
    assert docker_runner.unmounted_credentials(config, compiled_contracts(), environ) == ["GEN_KEY"]


def test_container_logs_are_relayed_as_whole_lines(capsys: pytest.CaptureFixture[str]) -> None:
    # Progress refreshes (\r), lines split across chunks, a UTF-8 character split across chunks.
    docker_runner.relay_lines([b"10%\r20%\r", b"done\nnext ", b"caf\xc3", b"\xa9\n", b"no newline"])
    assert capsys.readouterr().out.splitlines() == ["10%", "20%", "done", "next caf\u00e9", "no newline"]
