"""Build the Kubeflow Trainer v2 ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``) from the
``kubeflow-trainer-api`` models, so a field the Trainer does not have fails here, not in the cluster.

The job references a ``ClusterTrainingRuntime`` (``torch-distributed``): the runtime owns the JobSet
(replicated job ``node``, container ``node``) and the torch plugin injects ``PET_*`` rendezvous env.
What ragtune sets goes where the TrainJob allows it:

* ``spec.trainer``: image, command, env, ``numNodes``, ``numProcPerNode``, ``resourcesPerNode``;
* ``spec.runtimePatches`` (manager ``ragtune.io/launcher``): the pods' volumes, security contexts,
  service account, node selector, tolerations and the no-sidecar annotation, for the ``node`` job;
* ``spec.activeDeadlineSeconds``, ``spec.suspend`` (with a Kueue queue), labels (Kueue queue and
  WorkloadPriorityClass; a TrainJob has no PriorityClass field) and the launcher pod as owner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubeflow_trainer_api import models

from ragtune.core.errors import ConfigError
from ragtune.train.cluster.apis import TRAINJOB
from ragtune.train.cluster.job import (
    CONTAINER_SECURITY,
    KUEUE_PRIORITY_LABEL,
    POD_ANNOTATIONS,
    POD_SECURITY,
    check_command,
    check_name,
    job_labels_for,
    volume_mounts,
    volumes,
)

PATCH_MANAGER = "ragtune.io/launcher"
NODE_JOB = TRAINJOB.container  # the runtime's replicated job and its container are both "node"


def _node_patch(
    *,
    service_account: str,
    node_selector: Mapping[str, str],
    tolerations: Sequence[Mapping[str, Any]],
    shm_size: str,
    labels: Mapping[str, str],
) -> models.TrainerV1alpha1RuntimePatch:
    """The pod settings of the ``node`` replicated job, as a runtime patch the Trainer merges in."""
    container = models.TrainerV1alpha1ContainerPatch.from_dict(
        {"name": NODE_JOB, "securityContext": CONTAINER_SECURITY, "volumeMounts": volume_mounts()}
    )
    pod_spec = models.TrainerV1alpha1PodSpecPatch.from_dict(
        {
            "serviceAccountName": service_account,
            "securityContext": POD_SECURITY,
            "nodeSelector": dict(node_selector) or None,
            "tolerations": [dict(t) for t in tolerations] or None,
            "volumes": volumes(shm_size),
        }
    )
    assert pod_spec is not None and container is not None
    pod_spec.containers = [container]
    pod = models.TrainerV1alpha1PodTemplatePatch(
        metadata=models.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            labels=dict(labels), annotations=dict(POD_ANNOTATIONS)
        ),
        spec=pod_spec,
    )
    node = models.TrainerV1alpha1ReplicatedJobPatch(
        name=NODE_JOB,
        template=models.TrainerV1alpha1JobTemplatePatch(
            spec=models.TrainerV1alpha1JobSpecPatch(template=pod)
        ),
    )
    return models.TrainerV1alpha1RuntimePatch(
        manager=PATCH_MANAGER,
        trainingRuntimeSpec=models.TrainerV1alpha1TrainingRuntimeSpecPatch(
            template=models.TrainerV1alpha1JobSetTemplatePatch(
                spec=models.TrainerV1alpha1JobSetSpecPatch(replicatedJobs=[node])
            )
        ),
    )


def build_trainjob(
    name: str,
    namespace: str,
    image: str,
    command: list[str],
    num_nodes: int,
    procs_per_node: int,
    resources: Mapping[str, Any],
    *,
    runtime: str = "torch-distributed",
    env: Sequence[Mapping[str, Any]] = (),
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
    service_account: str = "default",
    shm_size: str = "16Gi",
    labels: Mapping[str, str] | None = None,
    queue: str | None = None,
    priority_class: str | None = None,
    active_deadline_s: int | None = None,
    owner: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A TrainJob body (``to_dict()`` of the model) on ``runtime`` with ``num_nodes`` x ``procs_per_node``."""
    check_name(name, TRAINJOB.kind)
    if num_nodes < 1 or procs_per_node < 1:
        raise ConfigError(
            f"a TrainJob needs at least 1 node and 1 process (got {num_nodes} x {procs_per_node})"
        )
    check_command(command, env)
    job_labels = job_labels_for(labels, queue)
    if priority_class:
        job_labels[KUEUE_PRIORITY_LABEL] = priority_class
    trainer = models.TrainerV1alpha1Trainer.from_dict(
        {
            "image": image,
            "command": list(command),
            "env": [dict(e) for e in env],
            "numNodes": num_nodes,
            "numProcPerNode": procs_per_node,
            "resourcesPerNode": dict(resources),
        }
    )
    metadata = models.IoK8sApimachineryPkgApisMetaV1ObjectMeta.from_dict(
        {"name": name, "namespace": namespace, "labels": job_labels, "ownerReferences": list(owner) or None}
    )
    spec = models.TrainerV1alpha1TrainJobSpec(
        runtimeRef=models.TrainerV1alpha1RuntimeRef(
            apiGroup=TRAINJOB.group, kind="ClusterTrainingRuntime", name=runtime
        ),
        trainer=trainer,
        runtimePatches=[
            _node_patch(
                service_account=service_account,
                node_selector=node_selector or {},
                tolerations=tolerations or [],
                shm_size=shm_size,
                labels=job_labels,
            )
        ],
        activeDeadlineSeconds=active_deadline_s,
        suspend=True if queue else None,
    )
    job = models.TrainerV1alpha1TrainJob(
        apiVersion=TRAINJOB.api_version, kind=TRAINJOB.kind, metadata=metadata, spec=spec
    )
    return job.to_dict()
