"""Data staging around the PyTorchJob: node.py in each pod, and the component-side ``train_on_cluster``.

The S3 side is real protocol (moto's server from tests/conftest.py, through ragtune's minio-based
storage). The cluster is not: the FAKE CustomObjectsApi "runs" the job by calling ``node.main``
in this process with the job's own arguments, with a small Python stand-in for torchrun +
``ragtune.train.launch`` (training itself is tested in tests/train).
"""

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.errors import ConfigError, InputError
from ragtune.core.reports.train import LossPoint
from ragtune.core.storage import S3Storage, open_storage
from ragtune.train.cluster import node
from ragtune.train.cluster.job import CONFIG_ENV
from ragtune.train.cluster.stage import (
    ClusterTraining,
    check_dataset,
    current_namespace,
    deepspeed_stage,
    job_env,
    job_name,
    label_value,
    train_on_cluster,
    work_uri,
)
from tests.conftest import S3Server
from tests.registry.conftest import train_report
from tests.train.cluster.fakes import FakeCore, FakeCustomObjects, condition, pod, status

# Stands in for `torchrun ... -m ragtune.train.launch --config-json C --dataset D --out O --stage S`:
# checks what node.py staged, then writes what rank 0 of the real launcher writes.
FAKE_TRAINING = """
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
assert json.loads((work / "config.json").read_text())["run"]["name"]
assert (work / "dataset" / "train.jsonl").read_text().startswith('{"instruction"')
out = work / "out"
(out / "adapter").mkdir(parents=True, exist_ok=True)
(out / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
report = json.loads(REPORT_JSON)  # a valid TrainReport: the stage reads it typed
report["adapter_dir"] = str(out / "adapter")
(out / "metrics.json").write_text(json.dumps(report))
(out / "checkpoints" / "checkpoint-3").mkdir(parents=True)
(out / "checkpoints" / "checkpoint-3" / "optimizer.pt").write_bytes(b"big")
if len(sys.argv) > 2:
    (out / "train_error.txt").write_text(sys.argv[2])
    sys.exit(2)
""".replace("REPORT_JSON", repr(train_report([LossPoint(step=3, loss=1.0)]).model_dump_json()))


def _dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text('{"instruction": "q", "output": "a"}\n')
    (folder / "eval.jsonl").write_text('{"instruction": "q2", "output": "a2"}\n')
    return folder


def _node(work: str, workdir: Path, *launcher_args: str) -> int:
    return node.main(
        [
            "--work-uri",
            work,
            "--workdir",
            str(workdir),
            "--",
            sys.executable,
            "-c",
            FAKE_TRAINING,
            str(workdir),
            *launcher_args,
        ]
    )


@pytest.fixture
def node_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, RagtuneConfig().to_json())


def test_node_0_stages_the_dataset_and_pushes_outputs_without_checkpoints(
    tmp_path: Path, node_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    _dataset(work / "dataset")
    monkeypatch.setenv("RANK", "0")

    assert _node(str(work), tmp_path / "node0") == 0

    outputs = sorted(
        p.relative_to(work / "output").as_posix() for p in (work / "output").rglob("*") if p.is_file()
    )
    assert outputs == ["adapter/adapter_model.safetensors", "metrics.json"]
    assert (tmp_path / "node0" / "dataset" / "eval.jsonl").is_file()


def test_other_nodes_train_but_push_nothing(
    tmp_path: Path, node_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    _dataset(work / "dataset")
    monkeypatch.setenv("RANK", "1")

    assert _node(str(work), tmp_path / "node1") == 0

    assert (tmp_path / "node1" / "out" / "adapter").is_dir()
    assert not (work / "output").exists()


def test_node_returns_the_launcher_failure_and_uploads_its_error(
    tmp_path: Path, node_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    _dataset(work / "dataset")
    monkeypatch.setenv("RANK", "0")

    assert _node(str(work), tmp_path / "node0", "base model not found") == 2

    assert (work / "output" / "train_error.txt").read_text() == "base model not found"
    assert not (work / "output" / "adapter").exists()


def test_node_without_a_staged_dataset_fails_before_training(
    tmp_path: Path, node_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _node(str(tmp_path / "empty"), tmp_path / "node0") == 2
    assert "no dataset files" in capsys.readouterr().err
    assert not (tmp_path / "node0" / "out").exists()


@pytest.fixture
def s3_config(s3_env: S3Server) -> RagtuneConfig:
    config = build_config(
        {
            "run": {"name": "psychiatry demo"},
            "storage": {"endpoint": s3_env.endpoint, "secure": False},
            "cache": {"uri": "s3://ragtune-cache/"},
        }
    )
    storage = open_storage("s3://ragtune-cache/", config.storage)
    assert isinstance(storage, S3Storage)
    storage.ensure_bucket()
    return config


def _node_container(job: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(command, env) of node rank 0, whichever kind the job is."""
    if job["kind"] == "TrainJob":
        return list(job["spec"]["trainer"]["command"]), job["spec"]["trainer"]["env"]
    (container,) = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    return list(container["command"]), container["env"]


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' ``$(VAR)`` expansion of a container command."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg) for arg in args]


@pytest.mark.parametrize("api", ["trainjob", "pytorchjob"])
def test_train_on_cluster_stages_the_dataset_runs_the_job_and_fetches_the_adapter(
    api: str, s3_config: RagtuneConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = s3_config.model_copy(deep=True)
    config.train.cluster.api = api  # type: ignore[assignment]
    config.train.cluster.gpus_per_node = 8
    name = job_name("minio://mlpipeline/v2/artifacts/ragtune/run-1/synth/dataset")
    pods: dict[str, Any] = {}

    def run_node_0(job: dict[str, Any]) -> None:
        """The fake controller: run node 0's own command (env, $(VAR)s) with a stand-in launcher."""
        command, env = _node_container(job)
        pods["job"] = job
        for entry in env:
            if "value" in entry:
                monkeypatch.setenv(entry["name"], entry["value"])
        injected = {"RAGTUNE_NODE_WORKDIR": str(tmp_path / "node0"), "RANK": "0", "PET_NODE_RANK": "0"}
        args = _expand(command[3:], injected)
        args = [*args[: args.index("--") + 1], sys.executable, "-c", FAKE_TRAINING, str(tmp_path / "node0")]
        assert node.main(args) == 0

    fake = FakeCustomObjects(
        [status(condition("Running")), status(condition("Succeeded"))], on_create=run_node_0
    )
    core = FakeCore([([pod(f"{name}-node-0-0")], "training\n")])
    options = ClusterTraining(image="ragtune-train:test", namespace="ragtune", poll_s=0)
    out = tmp_path / "adapter-artifact"

    result = train_on_cluster(
        config,
        _dataset(tmp_path / "dataset"),
        out,
        options,
        name,
        api=fake,
        core=core,
        log_line=lambda _: None,
    )

    assert result == "Succeeded"
    assert (out / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert json.loads((out / "metrics.json").read_text())["adapter_dir"] == str(out / "adapter")
    assert not (out / "checkpoints").exists()
    staged = open_storage(work_uri(config, name), config.storage)
    assert staged.list("dataset/") == ["dataset/eval.jsonl", "dataset/train.jsonl"]
    job = pods["job"]
    command, _ = _node_container(job)
    assert command[command.index("--work-uri") + 1] == f"s3://ragtune-cache/{api}s/{name}"
    assert command[command.index("--dataset-uri") + 1] == f"s3://ragtune-cache/{api}s/{name}/dataset/"
    assert "--nnodes=2" in command and "--nproc_per_node=8" in command
    assert command[command.index("--stage") + 1] == "zero2"  # auto on GPU nodes
    assert job["metadata"]["labels"]["ragtune.io/run"] == "psychiatry-demo"
    assert fake.deleted == [name]  # train.cluster.cleanup: delete, after the outputs were fetched


def test_a_cluster_without_the_api_fails_in_one_line_before_anything_is_created(
    s3_config: RagtuneConfig, tmp_path: Path
) -> None:
    options = ClusterTraining(image="i", namespace="ragtune", poll_s=0)

    def launch(api: FakeCustomObjects) -> None:
        train_on_cluster(
            s3_config,
            _dataset(tmp_path / "d"),
            tmp_path / "o",
            options,
            "ragtune-train-x",
            api=api,
            core=FakeCore([]),
        )

    only_v1 = FakeCustomObjects([status()], served=frozenset({("kubeflow.org", "v1", "pytorchjobs")}))
    with pytest.raises(
        ConfigError,
        match=r"serves kubeflow.org/v1 pytorchjobs, not trainer.kubeflow.org/v1alpha1 trainjobs: set train.cluster.api: pytorchjob",
    ):
        launch(only_v1)
    neither = FakeCustomObjects([status()], served=frozenset())
    with pytest.raises(ConfigError, match=r"serves neither .* install Kubeflow Trainer v2") as raised:
        launch(neither)
    assert "\n" not in str(raised.value)
    no_runtime = FakeCustomObjects([status()], runtimes=frozenset({"deepspeed-distributed"}))
    with pytest.raises(ConfigError, match="no ClusterTrainingRuntime 'torch-distributed'"):
        launch(no_runtime)
    assert not (only_v1.created or neither.created or no_runtime.created)


def test_a_dataset_the_nodes_cannot_read_is_one_line_naming_it(s3_config: RagtuneConfig) -> None:
    with pytest.raises(
        InputError, match=r"^dataset /data/run-1: the training nodes cannot read a local path"
    ):
        check_dataset(s3_config, "/data/run-1")
    with pytest.raises(InputError, match=r"^dataset s3://ragtune-cache/nothing/: no files there"):
        check_dataset(s3_config, "s3://ragtune-cache/nothing/")
    with pytest.raises(InputError, match=r"^dataset s3://no-such-bucket/d/: "):
        check_dataset(s3_config, "s3://no-such-bucket/d/")
    check_dataset(s3_config, "/data/run-1".replace("/data", "s3://x"), read=False)  # only its form


def test_train_on_cluster_needs_an_s3_cache(tmp_path: Path) -> None:
    config = build_config({"cache": {"uri": str(tmp_path / "cache")}})
    options = ClusterTraining(image="i", namespace="ragtune")
    with pytest.raises(ConfigError, match=r"needs an s3:// cache\.uri"):
        train_on_cluster(config, _dataset(tmp_path / "d"), tmp_path / "o", options, "ragtune-train-x")
    with pytest.raises(InputError, match="dataset artifact is empty"):
        (tmp_path / "empty").mkdir()
        train_on_cluster(config, tmp_path / "empty", tmp_path / "o", options, "ragtune-train-x")


def test_the_pods_get_config_and_credentials_by_secret_reference() -> None:
    config = build_config(
        {
            "storage": {"access_key_env": "MINIO_KEY"},
            "train": {"hf_token_env": "HF_TOKEN", "cluster": {"gpus_per_node": 0}},
        }
    )
    options = ClusterTraining(image="i", namespace="n", s3_secret="s3", hf_secret="hf")

    env = {e["name"]: e for e in job_env(config, options)}

    assert json.loads(env[CONFIG_ENV]["value"]) == json.loads(config.to_json())
    assert env["MINIO_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "s3", "key": "MINIO_KEY"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["DS_ACCELERATOR"]["value"] == "cpu"
    literal = (CONFIG_ENV, "NCCL_DEBUG", "DS_ACCELERATOR", "RAGTUNE_MODEL_DOWNLOADS", "RAGTUNE_NODE_WORKDIR")
    assert all("value" not in e for n, e in env.items() if n not in literal)
    # the credential grants come from the cluster's ConfigMap, never from the run's config
    assert env["RAGTUNE_ENDPOINTS"]["valueFrom"]["configMapKeyRef"] == {
        "name": "ragtune-endpoints",
        "key": "RAGTUNE_ENDPOINTS",
    }
    assert env["RAGTUNE_MODEL_DOWNLOADS"]["value"].startswith("/var/cache/ragtune")


def test_small_helpers(tmp_path: Path) -> None:
    train = build_config({"train": {"deepspeed": "auto"}}).train
    assert (deepspeed_stage(train, 4), deepspeed_stage(train, 0)) == ("zero2", "off")
    assert deepspeed_stage(build_config({"train": {"deepspeed": "zero3"}}).train, 4) == "zero3"
    assert job_name("a") == job_name("a") != job_name("b")
    assert len(job_name("a")) <= 40 and job_name("a").startswith("ragtune-train-")
    assert label_value("Psychiatry demo (v2)!") == "Psychiatry-demo-v2"
    (tmp_path / "ns").write_text("ragtune\n")
    assert current_namespace(tmp_path / "ns") == "ragtune"
    with pytest.raises(ConfigError, match="no namespace given"):
        current_namespace(tmp_path / "missing")


def test_run_cluster_training_is_the_component_body(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The component's one call: in-cluster credentials, this pod's namespace, the job named after the dataset."""
    import kubernetes

    from ragtune.train.cluster import stage

    calls: dict[str, Any] = {}
    monkeypatch.setattr(
        kubernetes.config, "load_incluster_config", lambda: calls.setdefault("incluster", True)
    )
    monkeypatch.setattr(stage, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "ns")
    (tmp_path / "ns").write_text("team-a\n")

    def fake_train(
        config: RagtuneConfig, dataset: Path, out: Path, options: ClusterTraining, name: str, **kw: Any
    ) -> str:
        calls.update(config=config, dataset=dataset, out=out, options=options, name=name, **kw)
        return "Succeeded"

    monkeypatch.setattr(stage, "train_on_cluster", fake_train)
    config = build_config({"run": {"name": "x"}})

    result = stage.run_cluster_training(
        config.to_json(),
        str(tmp_path / "d"),
        str(tmp_path / "o"),
        "minio://b/run/dataset",
        image="img",
        namespace="",
        num_nodes=3,
    )

    assert result == "Succeeded" and calls["incluster"] is True
    assert calls["options"].namespace == "team-a" and calls["config"].train.cluster.nodes == 3
    assert calls["name"] == job_name("minio://b/run/dataset")
    assert calls["dataset"] == tmp_path / "d" and calls["config"].run.name == "x"
