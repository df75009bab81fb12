"""``ragtune train-job --dry-run``: the YAML is exactly what the launcher would create, with no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ragtune.core.config import load_config
from ragtune.train.cluster.plan import ClusterTraining, job_name, plan_job
from ragtune.train_job_command import DEFAULT_TRAIN_IMAGE
from tests.cli.test_cli import invoke, one_error_line
from tests.train.cluster.schemas import validate_job

DATASET = "s3://ragtune-data/runs/1/dataset/"


@pytest.fixture
def cluster_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("POD_NAME", "POD_UID", "KFP_POD_NAME", "KFP_POD_UID", "RAGTUNE_TRAIN_IMAGE"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "ragtune.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "run": {"name": "psychiatry"},
                "cache": {"uri": "s3://ragtune-cache/"},
                "train": {"cluster": {"nodes": 3, "gpus_per_node": 2, "queue": "gpus", "deadline_s": 3600}},
            }
        )
    )
    return path


@pytest.mark.parametrize("api", ["trainjob", "pytorchjob"])
def test_the_dry_run_prints_what_the_launcher_would_create(cluster_config: Path, api: str) -> None:
    code, output = invoke(
        "train-job", "--dry-run", "--config", str(cluster_config), "--dataset", DATASET, "--api", api
    )

    assert code == 0, output
    printed = yaml.safe_load(output)
    config = load_config(cluster_config, overrides={"train.cluster.api": api})
    expected = plan_job(
        config,
        job_name(DATASET),
        DATASET,
        ClusterTraining(image=DEFAULT_TRAIN_IMAGE, namespace="ragtune"),
        {},
    )
    assert printed == expected
    validate_job(printed)
    assert printed["kind"] == {"trainjob": "TrainJob", "pytorchjob": "PyTorchJob"}[api]
    assert printed["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpus"


def test_the_dry_run_names_the_launcher_pod_as_owner_when_it_runs_in_one(
    cluster_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAME", "launcher-0")
    monkeypatch.setenv("POD_UID", "uid-1")
    code, output = invoke("train-job", "--dry-run", "-c", str(cluster_config), "--dataset", DATASET)
    assert code == 0, output
    assert yaml.safe_load(output)["metadata"]["ownerReferences"][0]["name"] == "launcher-0"


def test_the_default_image_is_the_pipelines_training_image(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import components.images

    monkeypatch.delenv("RAGTUNE_TRAIN_IMAGE", raising=False)
    assert importlib.reload(components.images).TRAIN_IMAGE == DEFAULT_TRAIN_IMAGE
    monkeypatch.undo()
    importlib.reload(components.images)


def test_a_local_dataset_path_is_one_line_naming_it(cluster_config: Path) -> None:
    code, output = invoke("train-job", "--dry-run", "-c", str(cluster_config), "--dataset", "/data/ds")
    assert code == 1
    assert one_error_line(output) == (
        "error: dataset /data/ds: the training nodes cannot read a local path; give an s3:// URI"
    )


def test_a_local_cache_is_one_line(tmp_path: Path) -> None:
    code, output = invoke("train-job", "--dry-run", "--dataset", DATASET, "--set", f"run.root={tmp_path}")
    assert code == 1
    assert "needs an s3:// cache.uri" in one_error_line(output)


def test_without_dry_run_and_without_a_kubeconfig_is_one_line(
    cluster_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    code, output = invoke("train-job", "-c", str(cluster_config), "--dataset", DATASET)
    assert code == 1
    assert one_error_line(output).startswith("error: no kubeconfig to reach a cluster (")
