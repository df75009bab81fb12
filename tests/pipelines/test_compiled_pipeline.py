"""The compiled pipeline in git matches the code, and carries the cluster settings it promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.compiler import COMPILED_PATH, compile_pipeline, stable_header


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline(tmp_path_factory.mktemp("compiled") / "ragtune_pipeline.yaml")


@pytest.fixture(scope="module")
def spec(compiled: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    pipeline, platform = yaml.safe_load_all(compiled.read_text())
    return pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_committed_yaml_is_current(compiled: Path) -> None:
    """Byte for byte, header comment included: a recompile of unchanged code leaves git clean."""
    assert COMPILED_PATH.is_file(), "run `make compile` and commit pipelines/compiled/"
    assert compiled.read_text() == COMPILED_PATH.read_text(), (
        "pipelines/compiled/ragtune_pipeline.yaml is stale: run `make compile` and commit it"
    )


def test_header_defaults_print_in_one_order() -> None:
    """kfp prints a dict default in protobuf map order, which changes between processes."""
    orders = [
        "#    t: list [Default: [{'effect': 'NoSchedule', 'key': 'k', 'operator': 'Exists'}]]",
        "#    t: list [Default: [{'operator': 'Exists', 'key': 'k', 'effect': 'NoSchedule'}]]",
    ]
    stable = {stable_header(f"# Inputs:\n{line}\nsome: yaml") for line in orders}
    assert stable == {
        "# Inputs:\n#    t: list [Default: [{'effect': 'NoSchedule', 'key': 'k', 'operator': 'Exists'}]]\nsome: yaml"
    }
    body = "# c\nkey: '[Default: {''b'': 1, ''a'': 2}]'"  # outside the header: never touched
    assert stable_header(body) == body


def test_ui_parameters_have_defaults_and_descriptions(spec: tuple[dict[str, Any], dict[str, Any]]) -> None:
    pipeline, _ = spec
    inputs = pipeline["root"]["inputDefinitions"]["parameters"]
    for name in [
        "corpus_uri",
        "base_model",
        "questions_per_category",
        "lora_r",
        "judge_base_url",
        "promotion_margin",
        "gpu_type",
        "git_revision",
    ]:
        assert name in inputs, name
        assert inputs[name].get("description"), f"{name} has no description for the UI"
    # config fields are overrides: empty by default, so an untouched UI field keeps config_json's value
    for name in ["corpus_uri", "lora_r", "questions_per_category", "promotion_margin"]:
        assert inputs[name]["parameterType"] == "STRING" and inputs[name].get("defaultValue", "") == ""
    assert json.loads(inputs["config_json"]["defaultValue"])["train"]["lora_r"] == 8


def test_train_task_asks_for_gpus_on_the_gpu_pool(spec: tuple[dict[str, Any], dict[str, Any]]) -> None:
    pipeline, platform = spec
    train = pipeline["deploymentSpec"]["executors"]["exec-train-adapter"]["container"]
    accelerator = train["resources"]["accelerator"]
    assert "gpu_type" in accelerator["resourceType"] and "gpu_count" in accelerator["resourceCount"]
    assert train["image"].endswith("ragtune-train:0.1.0")
    train_platform = platform["exec-train-adapter"]
    assert train_platform["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith(
        "gpu_node_selector"
    )
    assert train_platform["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith(
        "gpu_tolerations"
    )
    (shm,) = [m for m in train_platform["emptyDirMounts"] if m["mountPath"] == "/dev/shm"]
    assert (shm["mountPath"], shm["medium"]) == ("/dev/shm", "Memory")
    hf = {entry["secretName"] for entry in train_platform["secretAsEnv"]}
    assert hf == {"ragtune-hf", "ragtune-s3"}


def test_each_task_gets_only_the_secrets_its_stage_uses(spec: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Issue 10: not every Secret in every pod. GROBID needs none; the config task reads nothing."""
    _, platform = spec
    wanted = {
        "exec-resolve-config": set(),
        "exec-parse-documents": {"ragtune-s3"},
        "exec-index-documents": {"ragtune-s3", "ragtune-llm", "ragtune-weaviate"},
        "exec-synthesize-shard": {"ragtune-s3", "ragtune-llm", "ragtune-weaviate"},
        "exec-synthesize-dataset": {"ragtune-s3", "ragtune-llm", "ragtune-weaviate"},
        "exec-train-adapter": {"ragtune-s3", "ragtune-hf"},
        "exec-train-pytorchjob": {"ragtune-s3"},
        "exec-evaluate-adapter": {
            "ragtune-s3",
            "ragtune-llm",
            "ragtune-weaviate",
            "ragtune-mlflow",
            "ragtune-hf",
        },
        "exec-register-model": {"ragtune-mlflow"},
    }
    # the PyTorchJob branch's own evaluate and register executors get the same
    wanted["exec-evaluate-adapter-2"] = wanted["exec-evaluate-adapter"]
    wanted["exec-register-model-2"] = wanted["exec-register-model"]
    # the deploy step resolves the version's adapter URI through the MLflow server
    wanted["exec-render-serving"] = wanted["exec-render-serving-2"] = {"ragtune-mlflow"}
    assert {e for e, s in platform.items() if "secretAsEnv" in s} <= set(wanted)
    for executor, secrets in wanted.items():
        given = {entry["secretName"]: entry for entry in platform[executor].get("secretAsEnv", [])}
        assert set(given) == secrets, executor
        assert all(entry["optional"] is True for entry in given.values())
        if "ragtune-s3" in given:
            keys = {k["envVar"] for k in given["ragtune-s3"]["keyToEnv"]}
            assert keys == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_every_task_needs_the_endpoint_grants_and_carries_the_pipeline_label(
    spec: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """RAGTUNE_ENDPOINTS comes from the ConfigMap, not optional: no pod runs with grants from its config."""
    _, platform = spec
    for executor, settings in platform.items():
        if "secretAsEnv" not in settings and executor != "exec-resolve-config":
            continue
        required = [c for c in settings["configMapAsEnv"] if not c.get("optional")]
        assert [(c["configMapName"], [k["envVar"] for k in c["keyToEnv"]]) for c in required] == [
            ("ragtune-endpoints", ["RAGTUNE_ENDPOINTS"])
        ], executor
        assert settings["podMetadata"]["labels"]["ragtune.io/pipeline"] == "ragtune", executor
        mounts = {m["mountPath"]: m for m in settings["emptyDirMounts"]}
        assert "/var/cache/ragtune" in mounts, executor  # writable model downloads


def test_caching_and_retries(spec: tuple[dict[str, Any], dict[str, Any]]) -> None:
    pipeline, _ = spec
    tasks = pipeline["root"]["dag"]["tasks"]
    assert tasks["parse-documents"]["cachingOptions"].get("enableCache", False) is False
    assert tasks["parse-documents"]["retryPolicy"]["maxRetryCount"] == 2
    assert tasks["index-documents"]["cachingOptions"]["enableCache"] is True
    branch = pipeline["components"]["comp-condition-2"]["dag"]["tasks"]
    assert branch["register-model"]["cachingOptions"].get("enableCache", False) is False
    assert branch["train-adapter"]["retryPolicy"]["maxRetryCount"] == 1


def test_synthesis_fans_out_with_bounded_parallelism(spec: tuple[dict[str, Any], dict[str, Any]]) -> None:
    pipeline, _ = spec
    loop = pipeline["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--shard-indexes-Output"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 8
    assert "for-loop-1" in pipeline["root"]["dag"]["tasks"]["synthesize-dataset"]["dependentTasks"]


def test_multi_node_branch_trains_through_a_pytorchjob(spec: tuple[dict[str, Any], dict[str, Any]]) -> None:
    pipeline, _ = spec
    branch = pipeline["components"]["comp-condition-5"]["dag"]["tasks"]
    assert {"train-pytorchjob", "evaluate-adapter-2", "register-model-2"} <= set(branch)
    condition = pipeline["root"]["dag"]["tasks"]["condition-5"]["triggerPolicy"]["condition"]
    assert "distributed_nodes" in condition and "> 1" in condition


def test_every_task_has_requests_a_deadline_and_a_non_root_identity(
    spec: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Issue 17: a profile ResourceQuota admits every pod, none runs forever, none runs as root."""
    pipeline, platform = spec
    executors = pipeline["deploymentSpec"]["executors"]
    assert set(platform) == set(executors)  # every task has a platform config (shard-indexes too)
    for name, executor in executors.items():
        resources = executor["container"].get("resources", {})
        for key in ("resourceCpuRequest", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert resources.get(key), f"{name} has no {key}"
        settings = platform[name]
        assert 0 < int(settings["activeDeadlineSeconds"]) <= 48 * 3600, name
        context = settings["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert int(context["runAsUser"]) == int(context["runAsGroup"]) == 10001, name


def test_train_requests_are_run_parameters_that_fit_a_64_gib_node(
    spec: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """The single-pod train task used to ask 8 CPU / 64 Gi: more than such a node can allocate."""
    pipeline, _ = spec
    resources = pipeline["deploymentSpec"]["executors"]["exec-train-adapter"]["container"]["resources"]
    assert "train_cpu" in resources["resourceCpuRequest"]
    assert "train_memory" in resources["resourceMemoryRequest"]
    assert "train_memory" in resources["resourceMemoryLimit"]
    inputs = pipeline["root"]["inputDefinitions"]["parameters"]
    assert float(inputs["train_cpu"]["defaultValue"]) <= 7  # an 8-vCPU node keeps room for daemons
    memory = inputs["train_memory"]["defaultValue"]
    assert memory.endswith("Gi") and int(memory[:-2]) <= 56  # 64 GiB minus kubelet/system reserve


def test_serving_manifests_render_only_when_asked_and_promoted(
    spec: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    pipeline, _ = spec
    components = pipeline["components"]
    assert pipeline["root"]["inputDefinitions"]["parameters"]["deploy_manifests"]["defaultValue"] is False
    for branch, register in (
        ("comp-condition-2", "register-model"),
        ("comp-condition-5", "register-model-2"),
    ):
        (asked,) = [t for t in components[branch]["dag"]["tasks"] if t.startswith("condition-")]
        assert "deploy_manifests" in components[branch]["dag"]["tasks"][asked]["triggerPolicy"]["condition"]
        (promoted,) = components[f"comp-{asked}"]["dag"]["tasks"].values()
        assert "== 'champion'" in promoted["triggerPolicy"]["condition"]
        (render,) = components[promoted["componentRef"]["name"]]["dag"]["tasks"].values()
        decision = render["inputs"]["artifacts"]["decision"]["componentInputArtifact"]
        assert decision.endswith(f"{register}-decision")


def test_every_run_parameter_a_task_reads_reaches_the_dag_it_runs_in(
    spec: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """A task inside a condition or loop may read a run parameter (an input, or a resource such as
    the train task's CPU request) only if that DAG declares it: kfp passes nothing else down, and the
    task fails at run time with "Parent pipeline input argument ... not found"."""
    pipeline, _ = spec
    dags = {name: c for name, c in pipeline["components"].items() if "dag" in c}
    missing = [
        f"{dag_name}/{task_name}: {source['componentInputParameter']}"
        for dag_name, dag in dags.items()
        for task_name, task in dag["dag"]["tasks"].items()
        for source in task.get("inputs", {}).get("parameters", {}).values()
        if source.get("componentInputParameter")
        not in (None, *dag.get("inputDefinitions", {}).get("parameters", {}))
    ]
    assert dags and not missing, missing
