"""Create a training job (TrainJob or PyTorchJob), follow its status conditions, stream node 0's log,
report how it ended.

One path for both kinds: a :class:`~ragtune.train.cluster.apis.TrainingApi` says the group, version,
plural, the condition that means success, and which pod and container hold node rank 0's log.
Uses the ``kubernetes`` client (``CustomObjectsApi`` for the job, ``CoreV1Api`` for pods and logs);
the RBAC it needs is in ``manifests/base/rbac.yaml`` (trainjobs/pytorchjobs create/get/delete,
pods and pods/log get/list). The log is re-read on each poll and only new lines are passed on: simple and
robust to restarts, at the cost of re-reading it (a training log is small).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragtune.core.errors import RagtuneError
from ragtune.train.cluster.apis import PYTORCHJOB, TrainingApi

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api, CustomObjectsApi

SUCCEEDED = "Succeeded"  # what run_job returns, whatever the kind calls it
FAILED = "Failed"
PENDING = "Pending"  # no condition yet: the operator has not seen the job
_TAIL = 30
_TRANSIENT = {429, 500, 502, 503, 504}  # the API server is busy or restarting: poll again


class TrainingJobError(RagtuneError):
    """The training job failed, vanished or did not finish in time; the message says which and why."""


def job_condition(job: Mapping[str, Any], succeeded: str = SUCCEEDED) -> tuple[str, str]:
    """(type, message) of the job's current condition: Failed/``succeeded`` win (reported as
    Failed/Succeeded), else the newest true one."""
    conditions = [
        c for c in (job.get("status") or {}).get("conditions") or [] if str(c.get("status")) == "True"
    ]
    for final, reported in ((FAILED, FAILED), (succeeded, SUCCEEDED)):
        for condition in conditions:
            if condition.get("type") == final:
                return reported, str(condition.get("message") or condition.get("reason") or "")
    if not conditions:
        return PENDING, ""
    newest = conditions[-1]
    return str(newest.get("type")), str(newest.get("message") or newest.get("reason") or "")


def _status(err: Exception) -> int | None:
    status = getattr(err, "status", None)
    return int(status) if status is not None else None


def _describe(err: Exception) -> str:
    status = _status(err)
    if status is not None:
        return f"HTTP {status} {getattr(err, 'reason', '') or ''}".strip()
    return str(getattr(err, "reason", None) or type(err).__name__)


@dataclass
class _MasterLog:
    """Passes on the new lines of node rank 0's training container log at each poll."""

    core: Any
    namespace: str
    job_name: str
    log: Callable[[str], None]
    api: TrainingApi = PYTORCHJOB
    pod: str | None = None
    restarts: int = 0
    printed: int = 0
    tail: list[str] = field(default_factory=list)
    terminated: str = ""  # "exit code 137 (OOMKilled)" once the container ended

    def poll(self) -> None:
        from kubernetes.client.exceptions import ApiException

        pods = self.core.list_namespaced_pod(
            namespace=self.namespace, label_selector=self.api.log_selector(self.job_name)
        )
        items = list(getattr(pods, "items", None) or [])
        if not items:
            return
        pod = items[0]
        name = str(pod.metadata.name)
        status = next(
            (
                s
                for s in (getattr(pod.status, "container_statuses", None) or [])
                if s.name == self.api.container
            ),
            None,
        )
        restarts = int(getattr(status, "restart_count", 0) or 0)
        if name != self.pod or restarts != self.restarts:
            if self.pod is not None:
                self.log(f"--- {name}: container restarted (restart {restarts}); its log starts over ---")
            self.pod, self.restarts, self.printed = name, restarts, 0
        terminated = getattr(getattr(status, "state", None), "terminated", None)
        if terminated is not None:
            reason = f" ({terminated.reason})" if getattr(terminated, "reason", None) else ""
            self.terminated = f"exit code {terminated.exit_code}{reason}"
        try:
            text = self.core.read_namespaced_pod_log(
                name=name, namespace=self.namespace, container=self.api.container
            )
        except ApiException as err:
            if _status(err) in (400, 404):  # not started yet (ContainerCreating) or just replaced
                return
            raise
        lines = str(text or "").splitlines()
        for line in lines[self.printed :]:
            self.log(line)
        self.printed = max(self.printed, len(lines))
        self.tail = lines[-_TAIL:]

    def training_error(self) -> str:
        """The last ``error: ...`` line ragtune.train.launch printed, if any."""
        return next((line.strip() for line in reversed(self.tail) if line.strip().startswith("error:")), "")


def _where(api: TrainingApi, job: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = job["metadata"]
    return meta["name"], meta["namespace"], f"{api.kind} {meta['namespace']}/{meta['name']}"


def _create(api: Any, kind: TrainingApi, job: Mapping[str, Any], log: Callable[[str], None]) -> None:
    from kubernetes.client.exceptions import ApiException

    name, namespace, where = _where(kind, job)
    try:
        api.create_namespaced_custom_object(body=job, **kind.call(namespace))
        log(f"created {where}")
        return
    except ApiException as err:
        if _status(err) != 409:
            raise TrainingJobError(
                f"cannot create {where}: HTTP {err.status} {err.reason}"
                f" (is {kind.install} installed, and may this service account create {kind.plural}?)"
            ) from None
    # 409: a retry of this task. Follow the job unless it already failed; then start it afresh.
    state, _ = job_condition(
        api.get_namespaced_custom_object(**kind.call(namespace, name=name)), kind.succeeded
    )
    if state != FAILED:
        log(f"{where} exists already ({state}); following it")
        return
    log(f"{where} exists and failed; deleting it and starting again")
    api.delete_namespaced_custom_object(**kind.call(namespace, name=name, propagation_policy="Foreground"))
    for _ in range(120):
        try:
            api.get_namespaced_custom_object(**kind.call(namespace, name=name))
        except ApiException as err:
            if _status(err) == 404:
                break
            raise
        time.sleep(1.0)
    api.create_namespaced_custom_object(body=job, **kind.call(namespace))
    log(f"created {where}")


def delete_job(api: Any, kind: TrainingApi, job: Mapping[str, Any]) -> None:
    """Delete the job and, in the background, its pods."""
    name, namespace, _ = _where(kind, job)
    api.delete_namespaced_custom_object(**kind.call(namespace, name=name, propagation_policy="Background"))


def run_job(
    job: Mapping[str, Any],
    kind: TrainingApi = PYTORCHJOB,
    poll_s: float = 15.0,
    timeout_s: float = 24 * 3600.0,
    api: CustomObjectsApi | None = None,
    core: CoreV1Api | None = None,
    log: Callable[[str], None] = print,
    *,
    delete_on_timeout: bool = True,
) -> str:
    """Create ``job``, stream node 0's log through ``log`` until it ends; return ``"Succeeded"``.

    Raises :class:`TrainingJobError` with the controller's message (plus node 0's container exit
    code and the training error line, when known) if the job fails, disappears, or is not done
    after ``timeout_s`` (then it is deleted, so it frees its GPUs, unless ``delete_on_timeout`` is
    False). ``api``/``core`` default to clients from the loaded kube config.
    """
    import urllib3
    from kubernetes.client.exceptions import ApiException

    if api is None or core is None:
        from kubernetes import client

        api = api or client.CustomObjectsApi()
        core = core or client.CoreV1Api()
    name, namespace, where = _where(kind, job)
    _create(api, kind, job, log)
    master = _MasterLog(core, namespace, name, log, kind)
    deadline = time.monotonic() + timeout_s
    last = ""
    log_unreadable = False
    while True:
        state: str | None = None
        try:
            state, message = job_condition(
                api.get_namespaced_custom_object(**kind.call(namespace, name=name)), kind.succeeded
            )
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            status = _status(err)
            if status == 404:
                raise TrainingJobError(f"{where} was deleted while it ran") from None
            if status is not None and status not in _TRANSIENT:
                raise TrainingJobError(
                    f"cannot read {where}: HTTP {status} {getattr(err, 'reason', '')}"
                ) from None
            log(f"{where}: reading its status failed ({_describe(err)}); trying again")
        if state is not None:
            if state != last:
                log(f"{where}: {state}" + (f" ({message})" if message else ""))
                last = state
            try:
                master.poll()
            except (ApiException, urllib3.exceptions.HTTPError) as err:
                if not log_unreadable:  # the log is a convenience; the job's status decides
                    log(f"{where}: cannot read node 0's log ({_describe(err)}); following its status only")
                    log_unreadable = True
            if state == SUCCEEDED:
                return state
            if state == FAILED:
                details = [message or "no message from the controller"]
                if master.terminated:
                    details.append(f"node 0 container {master.terminated}")
                if master.training_error():
                    details.append(f"training said: {master.training_error()}")
                raise TrainingJobError(f"{where} failed: " + "; ".join(details))
        if time.monotonic() >= deadline:
            action = "not deleted"
            if delete_on_timeout:
                api.delete_namespaced_custom_object(**kind.call(namespace, name=name))
                action = "deleted it"
            raise TrainingJobError(
                f"{where} did not finish within {timeout_s:.0f}s (last condition {last or PENDING}); {action}"
            )
        time.sleep(poll_s)
