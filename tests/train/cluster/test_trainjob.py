"""The TrainJob (Trainer v2) body, the config that shapes both job kinds, and the runner on a TrainJob.

Bodies are checked against kubeflow-trainer-api's models (``schemas.py``); the runner runs against
the FAKE API server of ``fakes.py`` (no Trainer controller runs here).
"""

from typing import Any

import pytest
import yaml

from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.errors import ConfigError
from ragtune.train.cluster.apis import PYTORCHJOB, TRAINJOB, training_api
from ragtune.train.cluster.plan import ClusterTraining, job_yaml, launcher_owner, plan_job
from ragtune.train.cluster.runner import job_condition, run_job
from tests.train.cluster.fakes import FakeCore, FakeCustomObjects, condition, pod, status
from tests.train.cluster.schemas import validate_job, validate_pytorchjob, validate_trainjob

NAME = "ragtune-train-abc"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
OPTIONS = ClusterTraining(
    image="ghcr.io/ragtune/ragtune-train:0.1.0",
    namespace="ragtune",
    node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
    tolerations=[GPU_TAINT],
    service_account="ragtune-train",
)
POD = {"POD_NAME": "ragtune-abc-train-pytorchjob-123", "POD_UID": "0b7c6f3e-1111-2222-3333-444455556666"}


def _config(**cluster: Any) -> RagtuneConfig:
    return build_config({"cache": {"uri": "s3://ragtune-cache/"}, "train": {"cluster": cluster}})


def _plan(environ: dict[str, str] | None = None, **cluster: Any) -> dict[str, Any]:
    job = plan_job(_config(**cluster), NAME, "s3://ragtune-data/run-1/dataset/", OPTIONS, environ or {})
    validate_job(job)
    return job


def _node_patch(job: dict[str, Any]) -> dict[str, Any]:
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node" and patch["manager"] == "ragtune.io/launcher"
    template: dict[str, Any] = node["template"]["spec"]["template"]
    return template


def test_the_default_is_a_trainjob_on_the_torch_distributed_runtime() -> None:
    job = _plan(nodes=4, gpus_per_node=8, cpu="32", memory="400Gi")

    assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert job["metadata"]["name"] == NAME and job["metadata"]["namespace"] == "ragtune"
    assert job["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (4, 8)
    assert trainer["image"] == OPTIONS.image
    assert trainer["resourcesPerNode"] == {
        "limits": {"nvidia.com/gpu": "8", "memory": "400Gi"},
        "requests": {"cpu": "32", "memory": "400Gi"},
    }
    command = trainer["command"]
    assert command[command.index("--dataset-uri") + 1] == "s3://ragtune-data/run-1/dataset/"
    assert command[command.index("--work-uri") + 1] == f"s3://ragtune-cache/trainjobs/{NAME}"
    launcher = command[command.index("--") + 1 :]
    assert launcher[:6] == [
        "torchrun",
        "--nnodes=4",
        "--nproc_per_node=8",
        "--node_rank=$(PET_NODE_RANK)",
        "--master_addr=$(PET_MASTER_ADDR)",
        "--master_port=$(PET_MASTER_PORT)",
    ]
    assert "--node-rank=$(PET_NODE_RANK)" in command
    env = {e["name"]: e for e in trainer["env"]}
    assert env["RAGTUNE_NODE_WORKDIR"]["value"] == "/workspace"
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    assert "suspend" not in job["spec"] and "activeDeadlineSeconds" not in job["spec"]
    assert "ownerReferences" not in job["metadata"]


def test_the_runtime_patch_carries_the_pod_settings_of_the_node_job() -> None:
    template = _node_patch(_plan())
    spec = template["spec"]

    assert template["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert spec["serviceAccountName"] == "ragtune-train"
    assert spec["nodeSelector"] == OPTIONS.node_selector and spec["tolerations"] == [GPU_TAINT]
    assert spec["securityContext"]["runAsUser"] == 10001 and spec["securityContext"]["runAsNonRoot"]
    (container,) = spec["containers"]
    assert container["name"] == "node"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]} == {
        "dshm": "/dev/shm",
        "workspace": "/workspace",
        "tmp": "/tmp",
        "model-downloads": "/var/cache/ragtune",
    }
    assert {v["name"] for v in spec["volumes"]} == {"dshm", "workspace", "tmp", "model-downloads"}


def test_kueue_priority_deadline_and_owner_on_a_trainjob() -> None:
    job = _plan(POD, queue="team-a-gpus", priority_class="training-low", deadline_s=7200)

    labels = job["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a-gpus"
    assert labels["kueue.x-k8s.io/priority-class"] == "training-low"
    assert job["spec"]["suspend"] is True  # Kueue admits (unsuspends) it
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": POD["POD_NAME"],
            "uid": POD["POD_UID"],
            "blockOwnerDeletion": False,
        }
    ]


def test_the_same_settings_on_a_pytorchjob() -> None:
    job = _plan(
        POD, api="pytorchjob", queue="q", priority_class="high", deadline_s=60, ttl_after_finished_s=600
    )

    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert job["spec"]["runPolicy"] == {
        "cleanPodPolicy": "None",
        "backoffLimit": 3,
        "activeDeadlineSeconds": 60,
        "ttlSecondsAfterFinished": 600,
        "suspend": True,
    }
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "q"
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert master["priorityClassName"] == "high"
    assert job["metadata"]["ownerReferences"][0]["uid"] == POD["POD_UID"]
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert f"s3://ragtune-cache/pytorchjobs/{NAME}" in master["containers"][0]["command"]


def test_procs_per_node_can_differ_from_gpus() -> None:
    trainer = _plan(gpus_per_node=0, procs_per_node=2)["spec"]["trainer"]
    assert trainer["numProcPerNode"] == 2 and "--nproc_per_node=2" in trainer["command"]
    assert trainer["resourcesPerNode"] == {"limits": {}}
    assert {"name": "DS_ACCELERATOR", "value": "cpu"} in trainer["env"]
    assert "OMP_NUM_THREADS" not in {e["name"] for e in trainer["env"]}


def test_cpu_nodes_get_the_configured_thread_count() -> None:
    config = build_config(
        {"cache": {"uri": "s3://c/"}, "train": {"cpu_threads": 1, "cluster": {"gpus_per_node": 0}}}
    )
    env = plan_job(config, NAME, "s3://b/d/", OPTIONS, {})["spec"]["trainer"]["env"]
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in env


def test_the_owner_comes_from_the_downward_api_or_kfp_and_is_absent_outside_a_pod() -> None:
    assert launcher_owner(POD)[0]["name"] == POD["POD_NAME"]
    assert launcher_owner({"KFP_POD_NAME": "p", "KFP_POD_UID": "u"})[0]["uid"] == "u"
    assert launcher_owner({"POD_NAME": "p"}) == [] and launcher_owner({}) == []


def test_the_model_checks_reject_what_the_api_server_would() -> None:
    job = _plan()
    job["spec"]["trainer"]["numNodes"] = "4"  # a string where the schema has an integer
    with pytest.raises(ValueError):
        validate_trainjob(job)
    job = _plan()
    job["spec"]["trainer"]["gpus"] = 4  # no such field: the model drops it, the round trip differs
    with pytest.raises(AssertionError, match="round-trip"):
        validate_trainjob(job)
    bad = _plan(api="pytorchjob")
    bad["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(Exception, match="gpus"):
        validate_pytorchjob(bad)


def test_bad_cluster_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"train\.cluster\.api: Input should be 'trainjob' or 'pytorchjob'"):
        _config(api="mpijob")
    with pytest.raises(ConfigError, match=r"train\.cluster\.nodes"):
        _config(nodes=0)
    with pytest.raises(ConfigError, match="TrainJob name"):
        plan_job(_config(), "Bad_Name", "s3://b/d/", OPTIONS, {})
    with pytest.raises(ConfigError, match="must be one of"):
        training_api("mpijob")


def test_job_yaml_is_the_body() -> None:
    job = _plan()
    assert yaml.safe_load(job_yaml(job)) == job
    assert job_yaml(job).startswith("apiVersion: trainer.kubeflow.org/v1alpha1\nkind: TrainJob\n")


def test_the_runner_follows_a_trainjob_until_complete_and_reads_node_0() -> None:
    job = _plan()
    api = FakeCustomObjects([status(condition("Created")), status(condition("Complete", "done"))])
    core = FakeCore([([pod(f"{NAME}-node-0-0", container="node")], "step 1\nstep 2\n")])
    lines: list[str] = []

    result = run_job(job, TRAINJOB, poll_s=0, timeout_s=60, api=api, core=core, log=lines.append)

    assert result == "Succeeded"
    assert api.calls[0] == (
        "create",
        {
            "group": "trainer.kubeflow.org",
            "version": "v1alpha1",
            "namespace": "ragtune",
            "plural": "trainjobs",
        },
    )
    assert set(core.selectors) == {
        f"jobset.sigs.k8s.io/jobset-name={NAME},jobset.sigs.k8s.io/replicatedjob-name=node,"
        "batch.kubernetes.io/job-completion-index=0"
    }
    assert {r["container"] for r in core.log_requests} == {"node"}
    assert "step 2" in lines and f"TrainJob ragtune/{NAME}: Succeeded (done)" in lines


def test_complete_means_succeeded_only_for_a_trainjob() -> None:
    done = {"status": status(condition("Complete"))}
    assert job_condition(done, TRAINJOB.succeeded)[0] == "Succeeded"
    assert job_condition(done, PYTORCHJOB.succeeded)[0] == "Complete"
