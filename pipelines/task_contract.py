"""What a cluster gives each task, read back from the compiled pipeline (``ragtune compile``'s YAML).

The compiled spec is the contract a KFP backend honours: the image, the Secrets and ConfigMap keys
mounted as env (kfp-kubernetes' platform spec) and the resource limits of every executor. The
docker runner (``pipelines/docker_runner.py``) gives each local container exactly this, so a task
that needs a credential its pod would not get fails here first; nothing is copied from the tables
in ``pipelines/ragtune_pipeline.py``, which only *write* the spec.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragtune.core.errors import ConfigError

#: kfp's memory figures in the compiled spec are decimal gigabytes.
_GB = 10**9


@dataclass(frozen=True)
class EnvSource:
    """One env var of a pod, from a key of a Secret or ConfigMap."""

    kind: str  # "secret" or "configmap"
    name: str  # the Secret's or ConfigMap's name
    key: str
    optional: bool


@dataclass(frozen=True)
class TaskContract:
    """The pod a cluster would start for one executor of the compiled pipeline."""

    executor: str
    image: str
    env: dict[str, EnvSource] = field(default_factory=dict)  # env var -> where its value comes from
    cpu_limit: float | None = None  # cores
    memory_limit: int | None = None  # bytes

    def secrets(self) -> set[str]:
        return {source.name for source in self.env.values() if source.kind == "secret"}


def _env_sources(platform: Mapping[str, Any]) -> dict[str, EnvSource]:
    env: dict[str, EnvSource] = {}
    for entry in platform.get("secretAsEnv", []):
        for item in entry["keyToEnv"]:
            env[item["envVar"]] = EnvSource(
                "secret", entry["secretName"], item["secretKey"], bool(entry.get("optional"))
            )
    for entry in platform.get("configMapAsEnv", []):
        for item in entry["keyToEnv"]:
            env[item["envVar"]] = EnvSource(
                "configmap", entry["configMapName"], item["configMapKey"], bool(entry.get("optional"))
            )
    return env


def read_contracts(pipeline: Mapping[str, Any], platform: Mapping[str, Any]) -> dict[str, TaskContract]:
    """Component name without ``comp-`` (the folder kfp's local runner gives the task) -> contract."""
    executors = pipeline["deploymentSpec"]["executors"]
    platform_executors = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
    platform_executors = platform_executors.get("executors", {})
    contracts: dict[str, TaskContract] = {}
    for component, spec in pipeline["components"].items():
        label = spec.get("executorLabel")
        if label is None:
            continue  # a DAG (condition, loop), not a pod
        container = executors[label]["container"]
        resources = container.get("resources", {})
        memory = resources.get("memoryLimit")
        contracts[component.removeprefix("comp-")] = TaskContract(
            executor=label,
            image=container["image"],
            env=_env_sources(platform_executors.get(label, {})),
            cpu_limit=float(resources["cpuLimit"]) if "cpuLimit" in resources else None,
            memory_limit=round(float(memory) * _GB) if memory is not None else None,
        )
    return contracts


def load_contracts(path: Path) -> dict[str, TaskContract]:
    """The contracts of a compiled pipeline YAML (pipeline spec, then its platform spec)."""
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    platform = documents[1] if len(documents) > 1 else {}
    return read_contracts(documents[0], platform)


def compiled_contracts() -> dict[str, TaskContract]:
    """The contracts of the graph as ``ragtune compile`` writes it now (same images, same code)."""
    from pipelines.compiler import compile_pipeline

    with tempfile.TemporaryDirectory(prefix="ragtune-compiled-") as folder:
        return load_contracts(compile_pipeline(Path(folder) / "ragtune_pipeline.yaml"))


def pod_env(contract: TaskContract, values: Mapping[str, str]) -> dict[str, str]:
    """The env a pod of ``contract`` gets when its Secrets and ConfigMap hold ``values``.

    ``values`` maps a Secret's or ConfigMap's key to its value (locally: the host's env, where a
    user keeps ``AWS_ACCESS_KEY_ID`` etc. under the same names). An optional key that is absent
    is left out, as Kubernetes does; a required one is an error, as a pod that never starts.
    """
    env: dict[str, str] = {}
    for var, source in contract.env.items():
        value = values.get(source.key)
        if value is not None:
            env[var] = value
        elif not source.optional:
            raise ConfigError(
                f"task {contract.executor.removeprefix('exec-')} needs {source.key} from {source.kind} "
                f"{source.name} (not optional in the compiled pipeline) and it is not set; "
                f"declare security.endpoints in ragtune.yaml or export {source.key}"
            )
    return env
