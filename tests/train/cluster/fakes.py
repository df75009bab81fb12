"""FAKE Kubernetes API objects for the job runner: plain classes that record calls and replay a script.

They stand in for ``kubernetes.client.CustomObjectsApi`` / ``CoreV1Api`` with the same method names
and keyword arguments the runner uses (``test_job.py`` checks the real classes have them). No
controller runs: the job's status conditions and node 0's log are whatever the test scripts. Every
body created is checked against the published models first (``schemas.py``), so the fake refuses
what the real API server would, and API discovery answers only for the resources in ``served``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException

from tests.train.cluster.schemas import validate_job

BOTH = frozenset({("trainer.kubeflow.org", "v1alpha1", "trainjobs"), ("kubeflow.org", "v1", "pytorchjobs")})


def condition(kind: str, message: str = "", status: str = "True") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": f"PyTorchJob{kind}", "message": message}


def status(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"conditions": list(conditions)} if conditions else {}


class FakeCustomObjects:
    """Replays ``statuses`` (one per get; the last repeats) for the job it was asked to create."""

    def __init__(
        self,
        statuses: Sequence[dict[str, Any]],
        create_error: int | None = None,
        existing: dict[str, Any] | None = None,
        on_create: Callable[[dict[str, Any]], None] | None = None,
        served: frozenset[tuple[str, str, str]] = BOTH,
        runtimes: frozenset[str] = frozenset({"torch-distributed"}),
    ) -> None:
        self.served = served
        self.runtimes = runtimes
        self.statuses = list(statuses)
        self.create_error = create_error
        self.existing = existing  # the job found on a 409, before any delete
        self.on_create = on_create
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.gets = 0
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any], **kwargs: Any
    ) -> dict[str, Any]:
        self.calls.append(
            ("create", {"group": group, "version": version, "namespace": namespace, "plural": plural})
        )
        if self.create_error is not None:
            error, self.create_error = self.create_error, None
            raise ApiException(status=error, reason="Conflict" if error == 409 else "Error")
        validate_job(body)
        self.created.append(body)
        if self.on_create is not None:
            self.on_create(body)
        return body

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **kwargs: Any
    ) -> dict[str, Any]:
        self.calls.append(
            ("get", {"group": group, "version": version, "namespace": namespace, "plural": plural})
        )
        if self.existing is not None and not self.created:
            if self.deleted:
                raise ApiException(status=404, reason="Not Found")
            return self.existing
        state = self.statuses[min(self.gets, len(self.statuses) - 1)]
        self.gets += 1
        return {"metadata": {"name": name, "namespace": namespace}, "status": state}

    def get_api_resources(self, group: str, version: str, **kwargs: Any) -> SimpleNamespace:
        """API discovery of one group/version: 404 when nothing of it is served."""
        plurals = [p for g, v, p in self.served if (g, v) == (group, version)]
        if not plurals:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(resources=[SimpleNamespace(name=p) for p in plurals])

    def get_cluster_custom_object(
        self, group: str, version: str, plural: str, name: str, **kwargs: Any
    ) -> dict[str, Any]:
        self.calls.append(
            ("get-cluster", {"group": group, "version": version, "plural": plural, "name": name})
        )
        if name not in self.runtimes:
            raise ApiException(status=404, reason="Not Found")
        return {"metadata": {"name": name}}

    def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **kwargs: Any
    ) -> dict[str, Any]:
        self.calls.append(
            ("delete", {"group": group, "version": version, "namespace": namespace, "plural": plural})
        )
        self.deleted.append(name)
        return {}


def pod(
    name: str,
    restarts: int = 0,
    exit_code: int | None = None,
    reason: str | None = None,
    container: str = "pytorch",
) -> SimpleNamespace:
    terminated = None if exit_code is None else SimpleNamespace(exit_code=exit_code, reason=reason)
    state = SimpleNamespace(
        name=container, restart_count=restarts, state=SimpleNamespace(terminated=terminated)
    )
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name), status=SimpleNamespace(container_statuses=[state])
    )


class FakeCore:
    """Replays (pods, Master log text) per poll; ``None`` log text answers 400 (container not started)."""

    def __init__(self, script: Sequence[tuple[list[SimpleNamespace], str | None]]) -> None:
        self.script = list(script)
        self.polls = 0
        self.current: tuple[list[SimpleNamespace], str | None] = ([], None)
        self.selectors: list[str] = []
        self.log_requests: list[dict[str, Any]] = []

    def list_namespaced_pod(self, namespace: str, **kwargs: Any) -> SimpleNamespace:
        """One poll: moves the script on."""
        self.selectors.append(kwargs["label_selector"])
        self.current = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        return SimpleNamespace(items=self.current[0])

    def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: Any) -> str:
        self.log_requests.append({"name": name, "namespace": namespace, **kwargs})
        text = self.current[1]
        if text is None:
            raise ApiException(status=400, reason="Bad Request")
        return text
