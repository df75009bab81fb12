"""The two training APIs a cluster may serve, and the check of which one it does before any GPU is asked for.

* ``trainjob``: Kubeflow Trainer v2, ``trainer.kubeflow.org/v1alpha1`` ``TrainJob`` (names from the
  ``kubeflow`` SDK's constants); its JobSet runs the runtime's ``node`` replicated job, and the
  torch plugin injects ``PET_NODE_RANK``/``PET_MASTER_ADDR``/``PET_MASTER_PORT``.
* ``pytorchjob``: the Training Operator v1, ``kubeflow.org/v1`` ``PyTorchJob``; Master/Worker
  replicas with ``RANK``/``MASTER_ADDR``/``MASTER_PORT``.

The runner and the builders take one of these descriptors, so one launcher path serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeflow.trainer.constants import constants as trainer

from ragtune.core.errors import ConfigError
from ragtune.train.cluster import job as v1


@dataclass(frozen=True)
class TrainingApi:
    """What the launcher needs to know about one job kind."""

    name: str  # the value of train.cluster.api
    group: str
    version: str
    plural: str
    kind: str
    succeeded: str  # the status condition type that means done
    container: str  # the training container, whose log is streamed
    rendezvous: tuple[str, str, str]  # env vars: node rank, master address, master port
    install: str  # what to install when the cluster serves no such API
    log_labels: str  # selector of node rank 0's pod, {name} is the job name

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def resource(self) -> str:
        return f"{self.group}/{self.version} {self.plural}"

    def log_selector(self, job_name: str) -> str:
        return self.log_labels.format(name=job_name)

    def call(self, namespace: str, **extra: Any) -> dict[str, Any]:
        """Keyword arguments of the ``CustomObjectsApi`` calls on this kind."""
        return {
            "group": self.group,
            "version": self.version,
            "namespace": namespace,
            "plural": self.plural,
            **extra,
        }


TRAINJOB = TrainingApi(
    name="trainjob",
    group=trainer.GROUP,
    version=trainer.VERSION,
    plural=trainer.TRAINJOB_PLURAL,
    kind=trainer.TRAINJOB_KIND,
    succeeded=trainer.TRAINJOB_COMPLETE,
    container=trainer.NODE,
    rendezvous=("PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"),
    install="Kubeflow Trainer v2 (2.3) with its torch-distributed ClusterTrainingRuntime",
    log_labels=(
        f"{trainer.JOBSET_NAME_LABEL}={{name}},{trainer.JOBSET_RJOB_NAME_LABEL}={trainer.NODE},"
        f"{trainer.JOB_INDEX_LABEL}=0"
    ),
)
PYTORCHJOB = TrainingApi(
    name="pytorchjob",
    group=v1.GROUP,
    version=v1.VERSION,
    plural=v1.PLURAL,
    kind=v1.KIND,
    succeeded="Succeeded",
    container=v1.CONTAINER_NAME,
    rendezvous=("RANK", "MASTER_ADDR", "MASTER_PORT"),
    install="the Kubeflow Training Operator v1 (1.9)",
    log_labels=f"{v1.JOB_NAME_LABEL}={{name}},{v1.REPLICA_TYPE_LABEL}=master",
)
APIS = {api.name: api for api in (TRAINJOB, PYTORCHJOB)}


def training_api(name: str) -> TrainingApi:
    try:
        return APIS[name]
    except KeyError:
        raise ConfigError(f"train.cluster.api must be one of {sorted(APIS)} (got {name!r})") from None


def _serves(custom: Any, api: TrainingApi) -> bool:
    """Whether API discovery lists ``api``'s resource (a 404 means the group/version is not served)."""
    from kubernetes.client.exceptions import ApiException

    try:
        found = custom.get_api_resources(group=api.group, version=api.version)
    except ApiException as err:
        if err.status == 404:
            return False
        raise ConfigError(
            f"cannot ask the cluster for {api.group}/{api.version}: HTTP {err.status} {err.reason}"
        ) from None
    return any(resource.name == api.plural for resource in (getattr(found, "resources", None) or []))


def check_served(custom: Any, wanted: TrainingApi) -> None:
    """Fail in one line unless the cluster serves ``wanted``, saying what to install or to switch to."""
    if _serves(custom, wanted):
        return
    others = [api for api in APIS.values() if api is not wanted and _serves(custom, api)]
    if others:
        other = others[0]
        raise ConfigError(
            f"train.cluster.api is {wanted.name} but the cluster serves {other.resource}, not "
            f"{wanted.resource}: set train.cluster.api: {other.name}, or install {wanted.install}"
        )
    raise ConfigError(
        f"the cluster serves neither {TRAINJOB.resource} nor {PYTORCHJOB.resource}: install "
        f"{TRAINJOB.install} (or {PYTORCHJOB.install} and set train.cluster.api: pytorchjob)"
    )


def check_runtime(custom: Any, runtime: str) -> None:
    """Fail in one line when the ClusterTrainingRuntime a TrainJob references does not exist."""
    from kubernetes.client.exceptions import ApiException

    try:
        custom.get_cluster_custom_object(
            group=TRAINJOB.group,
            version=TRAINJOB.version,
            plural=trainer.CLUSTER_TRAINING_RUNTIME_PLURAL,
            name=runtime,
        )
    except ApiException as err:
        if err.status == 404:
            raise ConfigError(
                f"train.cluster.runtime: the cluster has no ClusterTrainingRuntime {runtime!r} "
                "(kubectl get clustertrainingruntimes lists those it has)"
            ) from None
        if err.status != 403:  # reading cluster-scoped runtimes may be forbidden; creating the job says
            raise ConfigError(
                f"cannot read ClusterTrainingRuntime {runtime!r}: HTTP {err.status} {err.reason}"
            ) from None
