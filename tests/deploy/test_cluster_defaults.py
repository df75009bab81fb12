"""Issue 17: ragtune on the Kubeflow people install today, with fail-closed cluster defaults.

The object store is one setting (a URL in ``ragtune-endpoints``) that reaches every user of it;
egress lists are configuration; Istio AuthorizationPolicies admit only the pipeline's identity;
the standalone-KFP route has what its pipeline pods read. Offline: ``kubectl kustomize`` builds,
``kubernetes-validate --strict`` for Kubernetes kinds, and the Istio fields we use checked against
Istio's published CRD schema.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.deploy.test_manifests import (
    K8S_VERSION,
    MANIFESTS,
    OVERLAYS,
    PIPELINE_POD,
    ROOT,
    build,
    containers,
    kustomize,
    named,
    of_kind,
    selector_matches,
)

STORE_KEY = "RAGTUNE_STORAGE__ENDPOINT"
# Object-store hosts anyone might spell: KFP's MinIO and SeaweedFS Services.
STORE_HOSTS = re.compile(r"\b(minio-service|seaweedfs)\.kubeflow\b")
PRIVATE_RANGES = {ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")}
STANDALONE = "standalone-kfp"
PIPELINE_PRINCIPALS = {
    "cluster.local/ns/ragtune/sa/ragtune-pipeline",
    "cluster.local/ns/kubeflow/sa/ragtune-pipeline",
}


def relative(tmp_path: Path, *parts: str) -> str:
    """kustomize refuses absolute paths to bases and components: name them from ``tmp_path``."""
    return os.path.relpath(MANIFESTS.joinpath(*parts), tmp_path)


def store_url(objects: list[dict[str, Any]]) -> str:
    return named(objects, "ConfigMap", "ragtune-endpoints")["data"][STORE_KEY]


def grants(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    import json

    raw = named(objects, "ConfigMap", "ragtune-endpoints")["data"]["RAGTUNE_ENDPOINTS"]
    return {grant["name"]: grant for grant in json.loads(raw)}


def policy(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return named(objects, "NetworkPolicy", name)


def env_of(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, dict[str, Any]]:
    obj = named(objects, kind, name)
    (container,) = containers(obj["spec"]["template"]["spec"])
    return {e["name"]: e for e in container.get("env", [])}


def with_setting(tmp_path: Path, overlay: str, url: str) -> list[dict[str, Any]]:
    """An overlay on top of ``overlay`` that changes the object store, as docs/deploy.md says to."""
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{relative(tmp_path, overlay)}]\n"
        "generatorOptions: {disableNameSuffixHash: true}\n"
        "configMapGenerator:\n"
        "  - name: ragtune-endpoints\n"
        "    behavior: merge\n"
        f"    literals: [{STORE_KEY}={url}]\n"
        f"components: [{relative(tmp_path, 'components', 'object-store')}]\n"
    )
    return kustomize(tmp_path)


def validate_strict(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Strict Kubernetes schema validation; returns the kinds it has no schema for."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (dev extra) missing"
    )
    from kubernetes_validate.utils import SchemaNotFoundError

    unknown = set()
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except SchemaNotFoundError:
            unknown.add((obj["apiVersion"], obj["kind"]))
    return unknown


# ---------------------------------------------------------------------------------- object store
def test_the_object_store_host_is_written_once() -> None:
    """Manifests and pipeline spell it once (ragtune-endpoints); the docs only in their table."""
    hits: list[str] = []
    for folder in ("manifests", "pipelines"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in {".yaml", ".yml", ".py", ".md", ".example", ".ini"}:
                text = path.read_text(encoding="utf-8")
                hits += [f"{path.relative_to(ROOT)}:{m.group(0)}" for m in STORE_HOSTS.finditer(text)]
    assert hits == ["manifests/base/pipeline/kustomization.yaml:seaweedfs.kubeflow"], hits
    for doc in ("docs/deploy.md", "README.md"):
        for number, line in enumerate((ROOT / doc).read_text(encoding="utf-8").splitlines(), 1):
            if STORE_HOSTS.search(line):
                assert line.startswith("|"), f"{doc}:{number}: an object-store host outside the table"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_object_store_setting_reaches_every_user(overlay: str) -> None:
    objects = build(overlay)
    url = urlparse(store_url(objects))
    assert url.scheme in {"http", "https"} and url.port, f"{STORE_KEY} must be a URL with its port"
    assert grants(objects)["object-store"]["url"] == store_url(objects)
    egress = policy(objects, "object-store-egress")["spec"]["egress"]
    assert [p["port"] for rule in egress for p in rule["ports"]] == [url.port]
    mlflow = env_of(objects, "Deployment", "mlflow")
    for var, key in (("MLFLOW_S3_ENDPOINT_URL", STORE_KEY), ("MLFLOW_ARTIFACTS_DESTINATION", None)):
        ref = mlflow[var]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == "ragtune-endpoints" and ref["key"] == (key or var)
    buckets = env_of(objects, "Job", "ragtune-minio-buckets")
    assert buckets[STORE_KEY]["valueFrom"]["configMapKeyRef"]["key"] == STORE_KEY


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("http://minio-service.kubeflow:9000", 9000),  # Kubeflow with KFP's MinIO
        ("http://seaweedfs.kubeflow:8333", 8333),  # Kubeflow Pipelines >= 2.5: SeaweedFS
        ("https://s3.example.com:443", 443),  # an external MinIO or S3 over TLS
    ],
)
def test_changing_the_one_setting_moves_the_port_the_grant_and_the_config(
    tmp_path: Path, url: str, port: int
) -> None:
    from ragtune.core.config import build_config, env_overrides
    from ragtune.core.endpoints import credential_for, storage_url

    objects = with_setting(tmp_path, "overlays/gpu", url)
    assert store_url(objects) == url
    assert grants(objects)["object-store"]["url"] == url
    (rule,) = policy(objects, "object-store-egress")["spec"]["egress"]
    assert [p["port"] for p in rule["ports"]] == [port]
    env = dict(named(objects, "ConfigMap", "ragtune-endpoints")["data"])
    storage = build_config({}, env_overrides(env)).storage
    assert storage_url(storage) == url  # the tasks' client: TLS from the scheme
    assert urlparse(storage_url(storage)).scheme == ("https" if port == 443 else "http")
    assert credential_for(url, "AWS_SECRET_ACCESS_KEY", {**env, "AWS_SECRET_ACCESS_KEY": "k"}) == "k"
    assert not validate_strict(objects) - {
        ("external-secrets.io/v1", "ExternalSecret"),
    }


@pytest.mark.parametrize(
    ("url", "alias"),
    [
        ("http://seaweedfs.kubeflow:8333", "http://AK:SK@seaweedfs.kubeflow:8333"),
        ("https://s3.example.com:443", "https://AK:SK@s3.example.com:443"),
    ],
)
def test_the_bucket_job_builds_its_mc_alias_from_the_url(tmp_path: Path, url: str, alias: str) -> None:
    """The Job's own script, run by sh with `mc` replaced by a recorder (no S3 server for mc here)."""
    (container,) = containers(
        named(build("overlays/dev"), "Job", "ragtune-minio-buckets")["spec"]["template"]["spec"]
    )
    assert container["command"] == ["/bin/sh", "-ec"]
    (tmp_path / "mc").write_text('#!/bin/sh\necho "$MC_HOST_kfp $*" >> "$RECORD"\n')
    (tmp_path / "mc").chmod(0o755)
    record = tmp_path / "calls"
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "RECORD": str(record),
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SK",
        STORE_KEY: url,
        "MLFLOW_ARTIFACTS_DESTINATION": "s3://mlflow-artifacts/",
    }
    subprocess.run(["/bin/sh", "-ec", container["args"][0]], env=env, check=True, timeout=30)
    calls = record.read_text().splitlines()
    buckets = ["ragtune-corpus", "ragtune-cache", "ragtune-artifacts", "mlflow-artifacts"]
    assert calls == [f"{alias} mb --ignore-existing kfp/{b}" for b in buckets] + [f"{alias} ls kfp"]


# ----------------------------------------------------------------------------------------- egress
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kube_api_egress_is_a_configured_list_not_every_private_range(overlay: str) -> None:
    objects = build(overlay)
    api = policy(objects, "kube-api-egress")
    assert selector_matches(api["spec"]["podSelector"], PIPELINE_POD)
    for rule in api["spec"]["egress"]:
        assert {p["port"] for p in rule["ports"]} <= {443, 6443}
        for peer in rule["to"]:
            network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            assert network.prefixlen >= 16, f"{overlay}: {network} is wider than a cluster network"
            assert network not in PRIVATE_RANGES
    for other in of_kind(objects, "NetworkPolicy"):
        if other["metadata"]["name"] == "kube-api-egress":
            continue
        for rule in other["spec"].get("egress", []):
            assert all("ipBlock" not in peer for peer in rule.get("to", [])), other["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_store_user_is_egress_isolated_to_what_it_needs(overlay: str) -> None:
    """MLflow: DNS, Postgres, the store. The bucket Job: DNS, the store. Services that use no store
    (and the submit hook) are not pulled into the store's policy."""
    objects = build(overlay)
    store = policy(objects, "object-store-egress")["spec"]["podSelector"]
    mlflow = named(objects, "Deployment", "mlflow")["spec"]["template"]["metadata"]["labels"]
    job = named(objects, "Job", "ragtune-minio-buckets")["spec"]["template"]["metadata"]["labels"]
    for labels in (mlflow, job, PIPELINE_POD):
        assert selector_matches(store, labels), labels
    for name in ("postgres", "weaviate", "grobid", "vllm", "ragtune-submit"):
        assert not selector_matches(
            store, {"app.kubernetes.io/part-of": "ragtune", "app.kubernetes.io/name": name}
        )

    def ports(labels: dict[str, str]) -> set[int]:
        return {
            p["port"]
            for np in of_kind(objects, "NetworkPolicy")
            if "Egress" in np["spec"]["policyTypes"] and selector_matches(np["spec"]["podSelector"], labels)
            for rule in np["spec"]["egress"]
            for p in rule.get("ports", [])
        }

    store_port = urlparse(store_url(objects)).port
    assert ports(mlflow) == {53, 5432, store_port}
    assert ports(job) == {53, store_port}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_compiled_graphs_task_pods_get_the_egress_they_need(overlay: str) -> None:
    """The labels the graph puts on its task pods are the ones the egress policies select."""
    import yaml

    from pipelines.compiler import COMPILED_PATH

    _, platform = yaml.safe_load_all(COMPILED_PATH.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    objects = build(overlay)
    needed = ("pipeline-egress", "object-store-egress", "kube-api-egress")
    in_cluster = [e for e in executors.values() if "configMapAsEnv" in e]
    assert in_cluster
    for settings in in_cluster:
        labels = {**settings["podMetadata"]["labels"], "pipelines.kubeflow.org/v2_component": "true"}
        for name in needed:
            assert selector_matches(policy(objects, name)["spec"]["podSelector"], labels), (name, labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_stateful_services_reach_only_dns_and_their_peers(overlay: str) -> None:
    objects = build(overlay)
    guard = policy(objects, "services-egress")
    for service in ("postgres", "grobid", "weaviate"):
        assert selector_matches(guard["spec"]["podSelector"], {"app.kubernetes.io/name": service})
    (dns, peers) = guard["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [peer["podSelector"]["matchLabels"] for peer in peers["to"]] == [
        {"app.kubernetes.io/name": "weaviate"}
    ]


# ------------------------------------------------------------------------------------------ Istio
# The fields of security.istio.io/v1 AuthorizationPolicy that ragtune uses, each checked by hand
# against istio/api kubernetes/customresourcedefinitions.gen.yaml (commit b8f8791d, 2026-07-21):
# spec.{selector.matchLabels, action (enum ALLOW|DENY|AUDIT|CUSTOM), rules[].from[].source.principals
# (string list), rules[].to[].operation.ports (a list of STRINGS)}. Anything else fails here.
ISTIO_SPEC_FIELDS = {
    "selector": {"matchLabels"},
    "action": None,
    "rules": {"from", "to"},
}
ISTIO_ACTIONS = {"ALLOW", "DENY", "AUDIT", "CUSTOM"}


def with_component(tmp_path: Path, component: str) -> list[dict[str, Any]]:
    """The gpu overlay with an opt-in component, as an overlay of the user's would include it."""
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{relative(tmp_path, 'overlays', 'gpu')}]\n"
        f"components: [{relative(tmp_path, 'components', component)}]\n"
    )
    return kustomize(tmp_path)


def check_authorization_policy_shape(obj: dict[str, Any]) -> None:
    assert obj["apiVersion"] == "security.istio.io/v1"
    spec = obj["spec"]
    assert set(spec) <= set(ISTIO_SPEC_FIELDS), set(spec) - set(ISTIO_SPEC_FIELDS)
    assert set(spec["selector"]) <= {"matchLabels"}
    assert all(isinstance(v, str) and "*" not in k + v for k, v in spec["selector"]["matchLabels"].items())
    assert spec["action"] in ISTIO_ACTIONS
    for rule in spec["rules"]:
        assert set(rule) <= {"from", "to"}
        for source in rule.get("from", []):
            assert set(source) == {"source"} and set(source["source"]) <= {"principals"}
            assert all(isinstance(p, str) for p in source["source"]["principals"])
        for target in rule.get("to", []):
            assert set(target) == {"operation"} and set(target["operation"]) <= {"ports"}
            assert all(isinstance(p, str) and p.isdigit() for p in target["operation"]["ports"])


def test_authorization_policy_shape_check_rejects_what_the_crd_rejects() -> None:
    good: dict[str, Any] = {
        "apiVersion": "security.istio.io/v1",
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["p"]}}], "to": [{"operation": {"ports": ["1"]}}]}],
        },
    }
    check_authorization_policy_shape(good)
    bad: dict[str, Any]
    for bad in (
        {**good["spec"], "action": "PERMIT"},
        {**good["spec"], "rules": [{"to": [{"operation": {"ports": [5000]}}]}]},  # ports are strings
        {**good["spec"], "selector": {"matchExpressions": []}},
    ):
        with pytest.raises(AssertionError):
            check_authorization_policy_shape({**good, "spec": bad})


def test_each_service_admits_only_the_pipeline_identity_under_istio(tmp_path: Path) -> None:
    objects = with_component(tmp_path, "istio")
    policies = of_kind(objects, "AuthorizationPolicy")
    for obj in policies:
        check_authorization_policy_shape(obj)
        assert obj["metadata"]["namespace"] == "ragtune"
        assert obj["spec"]["action"] == "ALLOW"
        for rule in obj["spec"]["rules"]:
            principals = {p for s in rule["from"] for p in s["source"]["principals"]}
            assert principals == PIPELINE_PRINCIPALS
    for service in ("mlflow", "weaviate", "grobid", "vllm"):
        svc = named(objects, "Service", service)
        pods = next(
            w["spec"]["template"]
            for w in objects
            if w["kind"] in {"Deployment", "StatefulSet"} and w["metadata"]["name"] == service
        )
        container_ports = {
            str(p["containerPort"]) for c in containers(pods["spec"]) for p in c.get("ports", [])
        }
        (guard,) = [
            p for p in policies if selector_matches(p["spec"]["selector"], pods["metadata"]["labels"])
        ]
        allowed = {port for r in guard["spec"]["rules"] for t in r["to"] for port in t["operation"]["ports"]}
        served = {
            str(p["targetPort"]) if isinstance(p["targetPort"], int) else None for p in svc["spec"]["ports"]
        }
        assert allowed and allowed <= container_ports, (service, allowed, container_ports)
        assert served - {None} <= allowed
    assert validate_strict(objects) - {("external-secrets.io/v1", "ExternalSecret")} == {
        ("security.istio.io/v1", "AuthorizationPolicy")
    }
    # the principals name ServiceAccounts that exist: ragtune's here, kubeflow's in standalone-kfp
    assert named(objects, "ServiceAccount", "ragtune-pipeline")["metadata"]["namespace"] == "ragtune"
    assert (
        named(build(STANDALONE), "ServiceAccount", "ragtune-pipeline")["metadata"]["namespace"] == "kubeflow"
    )


# ---------------------------------------------------------------------------------- standalone KFP
def test_standalone_kfp_puts_what_pipeline_pods_read_into_kubeflow() -> None:
    from pipelines.ragtune_pipeline import ENDPOINT_KEYS, GRANTS_KEY, SERVICE_SECRETS

    objects = build(STANDALONE)
    assert {o["metadata"]["namespace"] for o in objects} == {"kubeflow"}
    assert not validate_strict(objects)
    binding = named(objects, "RoleBinding", "ragtune-pipeline")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ragtune-pipeline", "namespace": "kubeflow"}
    ]
    named(objects, "Role", "ragtune-pipeline")
    endpoints = named(objects, "ConfigMap", "ragtune-endpoints")["data"]
    dev = named(build("overlays/dev"), "ConfigMap", "ragtune-endpoints")["data"]
    assert endpoints == dev  # the same endpoints and grants; the services stay in `ragtune`
    assert GRANTS_KEY in endpoints and STORE_KEY in endpoints and set(ENDPOINT_KEYS) & set(endpoints)
    secrets = {o["metadata"]["name"]: set(o["data"]) for o in of_kind(objects, "Secret")}
    wanted: dict[str, set[str]] = {}
    for service in SERVICE_SECRETS.values():
        for name, key_to_env in service.items():
            wanted.setdefault(name, set()).update(key_to_env)
    wanted.pop("ragtune-hf", None)  # the gpu overlay's (vLLM's) Secret: no model download in dev
    for name, keys in wanted.items():
        assert name in secrets and keys <= secrets[name], name
    assert "ragtune-mlflow" in secrets


# ------------------------------------------------------------------------------------------ Kueue
# kubernetes-sigs/kueue config/components/crd/bases/kueue.x-k8s.io_localqueues.yaml (commit
# ff69552e, 2026-08-22): v1beta1 and v1beta2 served; spec.{clusterQueue (DNS subdomain, <= 253),
# fairSharing, stopPolicy}. Kueue names the namespace's default queue "default"
# (constants.DefaultLocalQueueName).
LOCAL_QUEUE_SPEC = {"clusterQueue", "fairSharing", "stopPolicy"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def test_the_kueue_component_is_the_namespaces_default_local_queue(tmp_path: Path) -> None:
    objects = with_component(tmp_path, "kueue")
    (queue,) = of_kind(objects, "LocalQueue")
    assert queue["apiVersion"] in {"kueue.x-k8s.io/v1beta1", "kueue.x-k8s.io/v1beta2"}
    assert queue["metadata"] == {**queue["metadata"], "name": "default", "namespace": "ragtune"}
    assert set(queue["spec"]) <= LOCAL_QUEUE_SPEC
    cluster_queue = queue["spec"]["clusterQueue"]
    assert len(cluster_queue) <= 253 and DNS_SUBDOMAIN.match(cluster_queue)
    assert validate_strict(objects) - {("external-secrets.io/v1", "ExternalSecret")} == {
        ("kueue.x-k8s.io/v1beta1", "LocalQueue")
    }
