"""The PyTorchJob builder field by field and the runner against FAKE Kubernetes APIs.

No cluster and no Training Operator: the runner tests replay scripted job conditions and logs
through ``fakes.py``; what they prove is the runner's logic over those, not the operator's.
"""

import inspect
from typing import Any

import pytest
from kubernetes.client import CoreV1Api, CustomObjectsApi

from ragtune.core.errors import ConfigError
from ragtune.train.cluster.apis import PYTORCHJOB
from ragtune.train.cluster.job import (
    build_pytorchjob,
    master_selector,
    secret_env,
    training_command,
    value_env,
)
from ragtune.train.cluster.runner import TrainingJobError, job_condition, run_job
from tests.train.cluster.fakes import FakeCore, FakeCustomObjects, condition, pod, status

WORK_URI = "s3://ragtune-cache/pytorchjobs/ragtune-train-abc"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
ENV = [
    value_env("RAGTUNE_JOB_CONFIG_JSON", "{}"),
    secret_env("AWS_ACCESS_KEY_ID", "ragtune-s3", "AWS_ACCESS_KEY_ID"),
    secret_env("AWS_SESSION_TOKEN", "ragtune-s3", "AWS_SESSION_TOKEN", optional=True),
]


def _job(num_nodes: int = 3, gpus: int = 4, **kwargs: Any) -> dict[str, Any]:
    return build_pytorchjob(
        name="ragtune-train-abc",
        namespace="ragtune",
        image="ghcr.io/ragtune/ragtune-train:0.1.0",
        command=training_command(WORK_URI, num_nodes, gpus, "zero3"),
        num_nodes=num_nodes,
        gpus_per_node=gpus,
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        tolerations=[GPU_TAINT],
        env=ENV,
        service_account="ragtune-train",
        shm_size="32Gi",
        labels={"ragtune.io/run": "psychiatry"},
        **kwargs,
    )


def _pod_spec(job: dict[str, Any], replica: str) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]
    return spec


def test_pytorchjob_has_one_master_and_n_minus_one_workers() -> None:
    job = _job()

    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert job["metadata"]["name"] == "ragtune-train-abc" and job["metadata"]["namespace"] == "ragtune"
    assert job["metadata"]["labels"]["ragtune.io/run"] == "psychiatry"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"}
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    assert replicas["Master"]["restartPolicy"] == replicas["Worker"]["restartPolicy"] == "ExitCode"
    assert job["spec"]["runPolicy"] == {"cleanPodPolicy": "None", "backoffLimit": 3}
    assert job["spec"]["nprocPerNode"] == "4"
    assert replicas["Master"]["template"] == replicas["Worker"]["template"]
    assert replicas["Master"]["template"] is not replicas["Worker"]["template"]  # independent copies
    assert replicas["Master"]["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}


def test_the_container_runs_torchrun_on_the_launcher_with_gpus_and_shm() -> None:
    spec = _pod_spec(_job(), "Worker")
    (container,) = spec["containers"]

    assert container["name"] == "pytorch"
    assert container["image"] == "ghcr.io/ragtune/ragtune-train:0.1.0"
    command = container["command"]
    assert command[:3] == ["python", "-m", "ragtune.train.cluster.node"]
    assert command[command.index("--work-uri") + 1] == WORK_URI
    launcher = command[command.index("--") + 1 :]
    assert launcher[:6] == [
        "torchrun",
        "--nnodes=3",
        "--nproc_per_node=4",
        "--node_rank=$(RANK)",
        "--master_addr=$(MASTER_ADDR)",
        "--master_port=$(MASTER_PORT)",
    ]
    assert launcher[6:8] == ["-m", "ragtune.train.launch"]
    module_args = launcher[8:]
    assert dict(zip(module_args[::2], module_args[1::2], strict=True)) == {
        "--config-json": "$(RAGTUNE_NODE_WORKDIR)/config.json",
        "--dataset": "$(RAGTUNE_NODE_WORKDIR)/dataset",
        "--out": "$(RAGTUNE_NODE_WORKDIR)/out",
        "--stage": "zero3",
    }
    assert command[command.index("--workdir") + 1] == "$(RAGTUNE_NODE_WORKDIR)"
    assert "--node-rank=$(RANK)" in command[: command.index("--")]
    assert container["ports"] == [{"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"}]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "4"}}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {
        "dshm": "/dev/shm",
        "workspace": "/workspace",
        "tmp": "/tmp",
        "model-downloads": "/var/cache/ragtune",
    }
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    assert volumes["workspace"]["emptyDir"] == {} and volumes["tmp"]["emptyDir"] == {}


def test_the_pod_is_scheduled_on_gpu_nodes_as_a_non_root_user_with_secret_env() -> None:
    spec = _pod_spec(_job(), "Master")
    (container,) = spec["containers"]

    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert spec["tolerations"] == [GPU_TAINT]
    assert spec["serviceAccountName"] == "ragtune-train"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["RAGTUNE_JOB_CONFIG_JSON"] == {"name": "RAGTUNE_JOB_CONFIG_JSON", "value": "{}"}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {
        "secretKeyRef": {"name": "ragtune-s3", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert "value" not in env["AWS_ACCESS_KEY_ID"]
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_a_single_node_job_has_only_a_master() -> None:
    job = _job(num_nodes=1, gpus=8)

    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    assert job["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
    command = _pod_spec(job, "Master")["containers"][0]["command"]
    assert "--nnodes=1" in command and "--nproc_per_node=8" in command


def test_cpu_only_nodes_request_no_gpu_and_run_one_process() -> None:
    job = _job(num_nodes=2, gpus=0, cpu="4", memory="16Gi", ttl_seconds_after_finished=3600)
    (container,) = _pod_spec(job, "Worker")["containers"]

    assert container["resources"] == {
        "limits": {"memory": "16Gi"},
        "requests": {"cpu": "4", "memory": "16Gi"},
    }
    assert "--nproc_per_node=1" in container["command"]
    assert job["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 3600


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Ragtune_Train"}, "PyTorchJob name"),
        ({"name": "r" * 41}, "PyTorchJob name"),
        ({"num_nodes": 0}, "num_nodes"),
        ({"gpus_per_node": -1}, "gpus_per_node"),
        ({"restart_policy": "Sometimes"}, "restart_policy"),
        ({"env": [{"name": "X"}]}, "env entry 'X'"),
        ({"command": []}, "needs a command"),
    ],
)
def test_bad_job_settings_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "name": "ragtune-train-abc",
        "namespace": "ragtune",
        "image": "img",
        "command": ["true"],
        "num_nodes": 2,
        "gpus_per_node": 1,
        **kwargs,
    }
    with pytest.raises(ConfigError, match=message):
        build_pytorchjob(**args)


# --- the runner -------------------------------------------------------------------------------

RUNNING_LOG = "node 0: 2 dataset file(s)\nstep 10 loss 2.1\n"
DONE_LOG = RUNNING_LOG + "step 20 loss 1.7\nnode 0: 5 output file(s)\n"


def _run(api: FakeCustomObjects, core: FakeCore, **kwargs: Any) -> tuple[str, list[str]]:
    lines: list[str] = []
    result = run_job(
        _job(),
        PYTORCHJOB,
        poll_s=0,
        timeout_s=kwargs.pop("timeout_s", 60),
        api=api,
        core=core,
        log=lines.append,
        **kwargs,
    )
    return result, lines


def test_runner_creates_the_job_streams_the_master_log_and_returns_succeeded() -> None:
    api = FakeCustomObjects(
        [
            status(),
            status(condition("Created")),
            status(condition("Created"), condition("Running")),
            status(condition("Created"), condition("Running")),
            status(
                condition("Created"), condition("Running", status="False"), condition("Succeeded", "done")
            ),
        ]
    )
    master = [pod("ragtune-train-abc-master-0")]
    core = FakeCore(
        [([], None), (master, None), (master, RUNNING_LOG), (master, RUNNING_LOG), (master, DONE_LOG)]
    )

    result, lines = _run(api, core)

    assert result == "Succeeded"
    (created,) = api.created
    assert created["kind"] == "PyTorchJob" and created["metadata"]["name"] == "ragtune-train-abc"
    assert api.calls[0] == (
        "create",
        {"group": "kubeflow.org", "version": "v1", "namespace": "ragtune", "plural": "pytorchjobs"},
    )
    # every Master log line exactly once, in order, between the condition changes
    log_lines = [line for line in lines if not line.startswith(("PyTorchJob", "created"))]
    assert log_lines == DONE_LOG.splitlines()
    assert [line for line in lines if line.startswith("PyTorchJob ragtune/")] == [
        "PyTorchJob ragtune/ragtune-train-abc: Pending",
        "PyTorchJob ragtune/ragtune-train-abc: Created (PyTorchJobCreated)",
        "PyTorchJob ragtune/ragtune-train-abc: Running (PyTorchJobRunning)",
        "PyTorchJob ragtune/ragtune-train-abc: Succeeded (done)",
    ]
    assert (
        set(core.selectors)
        == {"training.kubeflow.org/job-name=ragtune-train-abc,training.kubeflow.org/replica-type=master"}
        == {master_selector("ragtune-train-abc")}
    )
    assert {r["container"] for r in core.log_requests} == {"pytorch"}
    assert not api.deleted


def test_runner_starts_the_log_over_when_the_master_container_restarts() -> None:
    api = FakeCustomObjects([status(condition("Running"))] * 2 + [status(condition("Succeeded"))])
    core = FakeCore(
        [
            ([pod("m-0")], "a\nb\n"),
            ([pod("m-0", restarts=1)], "c\n"),
            ([pod("m-0", restarts=1)], "c\nd\n"),
        ]
    )

    _, lines = _run(api, core)

    assert [line for line in lines if len(line) == 1] == ["a", "b", "c", "d"]
    assert any("container restarted (restart 1)" in line for line in lines)


def test_runner_raises_with_the_failure_message_exit_code_and_training_error() -> None:
    failed = status(
        condition("Created"),
        condition("Running", status="False"),
        condition("Failed", "PyTorchJob ragtune-train-abc is failed because 1 Master replica(s) failed."),
    )
    api = FakeCustomObjects([status(condition("Running")), failed])
    log = "node 0: 2 dataset file(s)\nerror: /workspace/dataset/train.jsonl: no usable example\n"
    core = FakeCore(
        [([pod("m-0")], "node 0: 2 dataset file(s)\n"), ([pod("m-0", exit_code=2, reason="Error")], log)]
    )

    with pytest.raises(TrainingJobError) as raised:
        _run(api, core)

    message = str(raised.value)
    assert message.startswith("PyTorchJob ragtune/ragtune-train-abc failed: ")
    assert "because 1 Master replica(s) failed" in message
    assert "node 0 container exit code 2 (Error)" in message
    assert "training said: error: /workspace/dataset/train.jsonl: no usable example" in message
    assert not api.deleted  # a failed job stays for `kubectl describe`; cleanPodPolicy None keeps its pods


def test_runner_times_out_and_deletes_the_job() -> None:
    api = FakeCustomObjects([status(condition("Running"))])
    core = FakeCore([([pod("m-0")], "step 1\n")])

    with pytest.raises(
        TrainingJobError, match=r"did not finish within 0s \(last condition Running\); deleted it"
    ):
        _run(api, core, timeout_s=0)
    assert api.deleted == ["ragtune-train-abc"]


def test_runner_follows_a_job_that_exists_already() -> None:
    api = FakeCustomObjects([status(condition("Running")), status(condition("Succeeded"))], create_error=409)
    core = FakeCore([([pod("m-0")], "resumed\n")])

    result, lines = _run(api, core)

    assert result == "Succeeded" and not api.created and not api.deleted
    assert "PyTorchJob ragtune/ragtune-train-abc exists already (Running); following it" in lines


def test_runner_replaces_a_job_of_the_same_name_that_failed() -> None:
    old = {"status": status(condition("Failed", "old failure"))}
    api = FakeCustomObjects([status(condition("Succeeded"))], create_error=409, existing=old)
    core = FakeCore([([pod("m-0")], "fresh\n")])

    result, _ = _run(api, core)

    assert result == "Succeeded"
    assert api.deleted == ["ragtune-train-abc"] and len(api.created) == 1


def test_runner_reports_a_job_deleted_while_it_ran() -> None:
    class Vanishing(FakeCustomObjects):
        def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            from kubernetes.client.exceptions import ApiException

            raise ApiException(status=404, reason="Not Found")

    with pytest.raises(TrainingJobError, match="was deleted while it ran"):
        _run(Vanishing([status()]), FakeCore([([], None)]))


def test_runner_rides_out_transient_api_errors_but_not_forbidden_ones() -> None:
    from kubernetes.client.exceptions import ApiException

    class Flaky(FakeCustomObjects):
        def __init__(self, error: int) -> None:
            super().__init__([status(condition("Succeeded"))])
            self.error: int | None = error

        def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            if self.error is not None:
                error, self.error = self.error, None
                raise ApiException(status=error, reason="Busy")
            return super().get_namespaced_custom_object(*args, **kwargs)

    class NoLogs(FakeCore):
        def list_namespaced_pod(self, namespace: str, **kwargs: Any) -> Any:
            raise ApiException(status=403, reason="Forbidden")

    result, lines = _run(Flaky(503), NoLogs([]))
    assert result == "Succeeded"
    assert any("reading its status failed (HTTP 503 Busy); trying again" in line for line in lines)
    assert any("cannot read node 0's log (HTTP 403 Forbidden)" in line for line in lines)

    with pytest.raises(TrainingJobError, match="cannot read PyTorchJob ragtune/ragtune-train-abc: HTTP 403"):
        _run(Flaky(403), FakeCore([([], None)]))


def test_job_condition_prefers_final_states() -> None:
    assert job_condition({}) == ("Pending", "")
    assert job_condition({"status": status(condition("Created"), condition("Running"))})[0] == "Running"
    assert job_condition({"status": status(condition("Failed", "x"), condition("Running"))}) == (
        "Failed",
        "x",
    )
    assert job_condition({"status": status(condition("Running", status="False"))}) == ("Pending", "")


def test_the_fakes_use_methods_the_real_kubernetes_client_has() -> None:
    """The fakes mirror real method names and positional parameters, so the runner's calls fit both."""
    for real, fake, method in [
        (CustomObjectsApi, FakeCustomObjects, "create_namespaced_custom_object"),
        (CustomObjectsApi, FakeCustomObjects, "get_namespaced_custom_object"),
        (CustomObjectsApi, FakeCustomObjects, "delete_namespaced_custom_object"),
        (CustomObjectsApi, FakeCustomObjects, "get_api_resources"),
        (CustomObjectsApi, FakeCustomObjects, "get_cluster_custom_object"),
        (CoreV1Api, FakeCore, "list_namespaced_pod"),
        (CoreV1Api, FakeCore, "read_namespaced_pod_log"),
    ]:
        real_params = [
            p for p in inspect.signature(getattr(real, method)).parameters if p not in ("self", "kwargs")
        ]
        fake_params = [
            p for p in inspect.signature(getattr(fake, method)).parameters if p not in ("self", "kwargs")
        ]
        assert real_params == fake_params, method
