"""A cluster-wide mutex for ``ragtune submit --git-revision``: a ``coordination.k8s.io/v1`` Lease.

Two submits of one revision started together (an Argo CD re-sync racing a retry, or CI and the
PostSync hook) would both find no run in KFP and both create one. The KFP lookup stays the fast
path; when it finds nothing, the submit takes the Lease named after the revision, looks again and
only then creates the run, so exactly one run exists per revision.

The API server makes it safe: creating an existing Lease answers 409, and replacing one carries
the ``resourceVersion`` read, so of two replacements of an expired Lease only one succeeds. A
holder that dies leaves a Lease that expires after ``duration_s``; another submit then takes it
over. Release deletes it with the holder's ``resourceVersion`` as precondition.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ragtune.core.errors import ConfigError, RagtuneError

if TYPE_CHECKING:
    from kubernetes.client import CoordinationV1Api, V1Lease

log = logging.getLogger(__name__)

LEASE_PREFIX = "ragtune-submit-"
_CONFLICT, _NOT_FOUND = 409, 404


class LockTimeout(RagtuneError):
    """Another submit held the Lease for longer than we were willing to wait."""


def lease_name(key: str) -> str:
    """The Lease of one revision (a full commit hash: 40 or 64 hex characters fit a DNS name)."""
    return LEASE_PREFIX + key.lower()


def holder_identity() -> str:
    """Who holds the Lease: host (the pod's name in a cluster), pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _now() -> datetime:
    return datetime.now(UTC)


def _expired(lease: V1Lease, now: datetime) -> bool:
    spec = lease.spec
    renewed = spec.renew_time or spec.acquire_time
    if renewed is None or spec.lease_duration_seconds is None:
        return True
    if renewed.tzinfo is None:
        renewed = renewed.replace(tzinfo=UTC)
    return bool(renewed + timedelta(seconds=spec.lease_duration_seconds) <= now)


class RevisionLease:
    """Hold the Lease ``name`` in ``namespace`` (see the module doc); a context manager."""

    def __init__(
        self,
        api: CoordinationV1Api,
        namespace: str,
        name: str,
        *,
        duration_s: int = 120,
        wait_s: float = 300.0,
        poll_s: float = 1.0,
        holder: str | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.duration_s, self.wait_s, self.poll_s = duration_s, wait_s, poll_s
        self.holder = holder or holder_identity()
        self.clock = clock
        self._version: str | None = None

    def _body(self, resource_version: str | None = None) -> Any:
        from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta

        now = self.clock()
        return V1Lease(
            metadata=V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                resource_version=resource_version,
                labels={"app.kubernetes.io/part-of": "ragtune", "app.kubernetes.io/component": "submit"},
            ),
            spec=V1LeaseSpec(
                holder_identity=self.holder,
                lease_duration_seconds=self.duration_s,
                acquire_time=now,
                renew_time=now,
            ),
        )

    def _try_take(self) -> bool:
        """One attempt: create the Lease, or take over an expired one. True when we hold it."""
        from kubernetes.client.exceptions import ApiException

        try:
            created = self.api.create_namespaced_lease(self.namespace, self._body())
            self._version = created.metadata.resource_version
            return True
        except ApiException as err:
            if err.status != _CONFLICT:
                raise
        try:
            current = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as err:
            if err.status == _NOT_FOUND:  # released between our create and read: try again
                return False
            raise
        if not _expired(current, self.clock()):
            return False
        log.warning(
            "lease %s/%s of %s expired; taking it over",
            self.namespace,
            self.name,
            current.spec.holder_identity,
        )
        try:
            replaced = self.api.replace_namespaced_lease(
                self.name, self.namespace, self._body(current.metadata.resource_version)
            )
        except ApiException as err:
            if err.status in (_CONFLICT, _NOT_FOUND):  # someone else was faster
                return False
            raise
        self._version = replaced.metadata.resource_version
        return True

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait_s
        with _api_errors(f"taking lease {self.namespace}/{self.name}"):
            while not self._try_take():
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"lease {self.namespace}/{self.name} is still held after {self.wait_s:.0f} s "
                        "(another submit of this revision is running); try again later"
                    )
                time.sleep(self.poll_s)
        log.info("holding lease %s/%s as %s", self.namespace, self.name, self.holder)

    def release(self) -> None:
        from kubernetes.client import V1DeleteOptions, V1Preconditions
        from kubernetes.client.exceptions import ApiException

        if self._version is None:
            return
        try:
            self.api.delete_namespaced_lease(
                self.name,
                self.namespace,
                body=V1DeleteOptions(preconditions=V1Preconditions(resource_version=self._version)),
            )
        except ApiException as err:  # taken over after expiry, or already gone: not ours to delete
            if err.status not in (_CONFLICT, _NOT_FOUND):
                log.warning("could not release lease %s/%s: HTTP %s", self.namespace, self.name, err.status)
        self._version = None

    def __enter__(self) -> RevisionLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def _api_errors(what: str) -> Iterator[None]:
    """Kubernetes API failures (RBAC, unreachable) as one-line errors."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as err:
        raise RagtuneError(
            f"Kubernetes API: {what} failed: HTTP {err.status} {err.reason or ''}".rstrip()
            + " (the submitter's service account needs get/create/update/delete on leases)"
        ) from None
    except HTTPError as err:
        raise RagtuneError(f"Kubernetes API: {what} failed: cannot reach the server ({err})") from None


def lease_lock(namespace: str, api: CoordinationV1Api | None = None, **options: Any) -> Callable[[str], Any]:
    """A ``lock(key)`` for :func:`pipelines.kfp_client.submit`: the key's Lease in ``namespace``.

    Without ``api``, in-cluster credentials or the current kubeconfig context are used.
    """
    if api is None:
        from kubernetes import client
        from kubernetes import config as kube_config

        try:
            kube_config.load_incluster_config()
        except kube_config.ConfigException:
            try:
                kube_config.load_kube_config()
            except (kube_config.ConfigException, OSError) as err:
                raise ConfigError(
                    f"the submit lock needs Kubernetes credentials (in-cluster or kubeconfig): {err}; "
                    "pass --no-lock only where no other submit can run at the same time"
                ) from None
        api = client.CoordinationV1Api()
    coordination = api

    def lock(key: str) -> RevisionLease:
        return RevisionLease(coordination, namespace, lease_name(key), **options)

    return lock
