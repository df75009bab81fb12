"""The promotion audit trail: one immutable record per promotion decision, and who took it.

Each decision (forced or not) is written as its own JSON file under ``promotion_audit/`` in the
artifacts of the MLflow run that produced the version, named by time and a random suffix. A
record is never rewritten and never cut: two promotions at once write two files, where numbered
tags (read the highest number, write the next) could lose one, and a tag holds at most 5,000
characters. :func:`read_audit` lists them in order.

The actor comes from an identity the platform vouches for where there is one: an OIDC token
(the file named by ``RAGTUNE_OIDC_TOKEN_FILE`` or ``AWS_WEB_IDENTITY_TOKEN_FILE``), else the
pod's Kubernetes service account token. Its ``sub`` and ``iss`` claims are read without checking
the signature (the registry server, not this process, authenticates requests), and the record says
so (``verified: false``). Without a token, the local user name is recorded as ``local-user``:
whatever the process's environment says, nothing more.
"""

from __future__ import annotations

import getpass
import logging
import os
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from ragtune.core.errors import InputError

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

AUDIT_DIR = "promotion_audit"
TAG_AUDIT = "ragtune.promotion_audit"
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
OIDC_TOKEN_FILE_ENVS = ("RAGTUNE_OIDC_TOKEN_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE")

Source = Literal["oidc", "kubernetes-service-account", "local-user"]


class Actor(BaseModel):
    """Who promoted: a token's subject, or the local user (marked as such)."""

    name: str
    source: Source
    issuer: str | None = None
    verified: bool = Field(False, description="False: claims read without checking the token's signature.")

    def label(self) -> str:
        return f"{self.source}:{self.name}"


class AuditRecord(BaseModel):
    """One promotion decision as the audit trail keeps it (the reason whole, never cut)."""

    model_name: str
    version: int
    alias: str
    promoted: bool
    forced: bool
    reason: str
    metric: str
    previous_champion: int | None
    actor: Actor
    when: str = Field(description="UTC, ISO 8601.")


def _token_subject(path: Path) -> tuple[str, str | None] | None:
    """(sub, iss) of the JWT in ``path``; ``None`` when the file is absent or holds no readable JWT."""
    from google.auth import exceptions, jwt

    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    try:
        claims = jwt.decode(token, verify=False)
    except (exceptions.GoogleAuthError, ValueError) as err:
        log.warning("%s: not a readable JWT (%s); not used as the actor", path, type(err).__name__)
        return None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        return None
    issuer = claims.get("iss")
    return subject, issuer if isinstance(issuer, str) else None


def current_actor(
    environ: Mapping[str, str] | None = None, service_account_token: Path = SERVICE_ACCOUNT_TOKEN
) -> Actor:
    """The acting identity (see the module docstring for the order)."""
    environ = os.environ if environ is None else environ
    for env in OIDC_TOKEN_FILE_ENVS:
        if environ.get(env):
            found = _token_subject(Path(environ[env]))
            if found is not None:
                return Actor(name=found[0], source="oidc", issuer=found[1])
    found = _token_subject(service_account_token)
    if found is not None:
        return Actor(name=found[0], source="kubernetes-service-account", issuer=found[1])
    name = environ.get("USER") or environ.get("LOGNAME")
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "unknown"
    return Actor(name=name, source="local-user")


def append_audit(client: MlflowClient, run_id: str | None, record: AuditRecord) -> str:
    """Write ``record`` as a new file in run ``run_id``'s artifacts; returns its artifact path."""
    if not run_id:
        raise InputError(
            f"{record.model_name} version {record.version} has no MLflow run to hold its audit trail"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = f"{AUDIT_DIR}/{stamp}-{uuid.uuid4().hex[:12]}.json"
    client.log_text(run_id, record.model_dump_json(indent=2), path)
    return path


def read_audit(client: MlflowClient, run_id: str) -> list[AuditRecord]:
    """Every audit record of run ``run_id``, oldest first (file names start with the time)."""
    with tempfile.TemporaryDirectory(prefix="ragtune-audit-") as tmp:
        entries = sorted(entry.path for entry in client.list_artifacts(run_id, AUDIT_DIR))
        return [
            AuditRecord.model_validate_json(
                Path(client.download_artifacts(run_id, path, tmp)).read_text(encoding="utf-8")
            )
            for path in entries
        ]
