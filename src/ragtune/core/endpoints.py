"""Credentials go only to the endpoints declared for them.

A config names the env var holding a secret (``api_key_env``, ``storage.access_key_env`` ...) and,
separately, the URL it is sent to. Both can come from a run's parameters, so without a binding one
KFP parameter could point ``llm.generator.base_url`` at any host and ``api_key_env`` at the S3
secret. Every client therefore reads its secret through :func:`credential_for`, which returns the
value only when a declared endpoint (``name``, ``url``, ``secrets``) matches the URL and lists the
env var; a set secret bound for an undeclared place raises :class:`CredentialError` before any
connection. A URL with no credential set is always allowed (e.g. a public or local model server).

The declarations come from ``$RAGTUNE_ENDPOINTS`` (a JSON list). In a cluster the
``ragtune-endpoints`` ConfigMap sets it for every task, and run parameters cannot change it. The
CLI exports ``security.endpoints`` of the user's own ``ragtune.yaml`` there (:func:`export_grants`)
unless the variable is already set. A ``security`` section inside a task's ``config_json`` is never
read here, so a run cannot grant itself a secret.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, MutableMapping
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from ragtune.core.config import EndpointGrant, SecurityConfig, StorageConfig
from ragtune.core.errors import ConfigError

ENDPOINTS_ENV = "RAGTUNE_ENDPOINTS"
OPENAI_URL = "https://api.openai.com/v1"  # where the openai client goes when base_url is unset
MLFLOW_CREDENTIAL_ENVS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
_GRANTS = TypeAdapter(list[EndpointGrant])
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CredentialError(ConfigError):
    """A secret would go to an endpoint not declared for it; nothing was sent."""


def plain_http(base_url: str | None) -> bool:
    """Whether a client for ``base_url`` can skip loading the CA certificates (~0.02-0.05 s a
    client, paid again by every stage that opens one): plain HTTP, e.g. an in-cluster vLLM or TEI."""
    return urlsplit(base_url or "").scheme.lower() == "http"


def declared_endpoints(environ: Mapping[str, str] | None = None) -> list[EndpointGrant]:
    """The grants in ``$RAGTUNE_ENDPOINTS`` (none when it is unset)."""
    environ = os.environ if environ is None else environ
    raw = environ.get(ENDPOINTS_ENV, "").strip()
    if not raw:
        return []
    try:
        return _GRANTS.validate_python(json.loads(raw))
    except (json.JSONDecodeError, ValidationError) as err:
        problem = str(err).splitlines()[0] if isinstance(err, json.JSONDecodeError) else _first(err)
        raise ConfigError(
            f"${ENDPOINTS_ENV}: expected a JSON list of {{name, url, secrets}}: {problem}"
        ) from None


def _first(err: ValidationError) -> str:
    item = err.errors()[0]
    return ".".join(str(part) for part in item["loc"]) + ": " + item["msg"]


def _origin(url: str) -> tuple[str, str, int, list[str]]:
    """(scheme, host, port, path segments) of an http(s) URL; ConfigError for anything else."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{url!r}: invalid port") from None
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"{url!r}: a credential can only go to an http(s)://host URL")
    segments = [s for s in parts.path.split("/") if s]
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme], segments


def url_matches(declared: str, url: str) -> bool:
    """Same scheme, host and port, and ``url``'s path starts with the declared path (whole segments)."""
    scheme, host, port, path = _origin(declared)
    other_scheme, other_host, other_port, other_path = _origin(url)
    return (scheme, host, port) == (other_scheme, other_host, other_port) and other_path[: len(path)] == path


def credential_for(url: str, env_name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``$env_name`` for a request to ``url``, or None when it is unset or empty.

    Raises :class:`CredentialError` when it is set but no declared endpoint matching ``url`` lists
    ``env_name``: the caller has not connected yet, so the secret never leaves the process.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(env_name)
    if not value:
        return None
    grants = declared_endpoints(environ)
    for grant in grants:
        if env_name in grant.secrets and url_matches(grant.url, url):
            return value
    declared = ", ".join(f"{g.name}={g.url} {g.secrets}" for g in grants) or "none"
    raise CredentialError(
        f"refusing to send ${env_name} to {url}: no declared endpoint for that URL may receive it "
        f"(declared: {declared}). Declare it in security.endpoints of ragtune.yaml or, in a cluster, "
        f"in {ENDPOINTS_ENV} of the ragtune-endpoints ConfigMap; or unset {env_name} for this run"
    )


def check_credentials(url: str, env_names: Iterable[str], environ: Mapping[str, str] | None = None) -> None:
    """:func:`credential_for` for credentials a library reads from the env itself (e.g. MLflow's)."""
    for name in env_names:
        credential_for(url, name, environ)


def storage_url(config: StorageConfig) -> str:
    """The S3/MinIO endpoint as a URL (``storage.endpoint`` may be host:port or a URL)."""
    endpoint = config.endpoint or "s3.amazonaws.com"
    if "://" in endpoint:
        return endpoint
    return f"{'https' if config.secure else 'http'}://{endpoint}"


def export_grants(security: SecurityConfig, environ: MutableMapping[str, str] | None = None) -> bool:
    """Put ``security.endpoints`` into ``$RAGTUNE_ENDPOINTS`` for this process and its tasks.

    Only when the variable is unset: a value the platform set (the cluster ConfigMap, or the
    user's shell) wins. True when exported.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENDPOINTS_ENV, "").strip() or not security.endpoints:
        return False
    environ[ENDPOINTS_ENV] = json.dumps([grant.model_dump() for grant in security.endpoints])
    return True
