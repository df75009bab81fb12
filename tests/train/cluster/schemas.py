"""Check a job body against the published shapes, so a fake API server cannot accept what a real one rejects.

* TrainJob: deserialized into ``kubeflow_trainer_api``'s ``TrainerV1alpha1TrainJob`` and serialized
  back; the generated models drop fields they do not know and reject wrong types, so the round trip
  must give the body unchanged.
* PyTorchJob: every replica's pod template is validated strictly (unknown fields are errors)
  against the Kubernetes 1.30 OpenAPI schema of a ``PodTemplate`` (``kubernetes-validate``), and
  the job-level keys against the fields of the v1 operator's ``KubeflowOrgV1PyTorchJobSpec`` /
  ``KubeflowOrgV1RunPolicy`` / ``KubeflowOrgV1ReplicaSpec`` (kubeflow-training 1.9 — not
  installed here: its ``kubeflow/__init__.py`` would replace the Trainer v2 SDK's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KUBERNETES_VERSION = "1.30.0"
# Field names (JSON) of the kubeflow-training 1.9 models, read from its published source.
PYTORCHJOB_SPEC = {"elasticPolicy", "nprocPerNode", "pytorchReplicaSpecs", "runPolicy"}
RUN_POLICY = {
    "activeDeadlineSeconds",
    "backoffLimit",
    "cleanPodPolicy",
    "managedBy",
    "schedulingPolicy",
    "suspend",
    "ttlSecondsAfterFinished",
}
REPLICA_SPEC = {"replicas", "restartPolicy", "template"}
REPLICA_TYPES = {"Master", "Worker"}


def validate_trainjob(body: Mapping[str, Any]) -> None:
    from kubeflow_trainer_api import models

    parsed = models.TrainerV1alpha1TrainJob.from_dict(dict(body))
    assert parsed is not None
    assert parsed.to_dict() == body, "the TrainJob model does not round-trip the body"


def validate_pytorchjob(body: Mapping[str, Any]) -> None:
    import kubernetes_validate

    assert (body["apiVersion"], body["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    spec = body["spec"]
    assert set(spec) <= PYTORCHJOB_SPEC, set(spec) - PYTORCHJOB_SPEC
    assert set(spec["runPolicy"]) <= RUN_POLICY, set(spec["runPolicy"]) - RUN_POLICY
    assert set(spec["pytorchReplicaSpecs"]) <= REPLICA_TYPES
    for name, replica in spec["pytorchReplicaSpecs"].items():
        assert set(replica) <= REPLICA_SPEC, (name, set(replica) - REPLICA_SPEC)
        template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"{body['metadata']['name']}-{name.lower()}"},
            "template": replica["template"],
        }
        kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
    meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": body["metadata"]}
    kubernetes_validate.validate(meta, KUBERNETES_VERSION, strict=True)  # ObjectMeta, same schema


def validate_job(body: Mapping[str, Any]) -> None:
    """Whichever kind ``body`` is."""
    if body.get("kind") == "TrainJob":
        validate_trainjob(body)
    else:
        validate_pytorchjob(body)
