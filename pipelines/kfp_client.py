"""Talk to a Kubeflow Pipelines API: connect, upload the compiled graph, submit one run per git revision.

The CLI calls these; the Argo CD PostSync hook (``manifests/retrain``) runs a submit with the synced
git revision, so a second sync of the same revision submits nothing. Two submits of one revision
started together create one run too: the KFP lookup is the fast path, and a cluster Lease
(``pipelines/lease.py``) serializes the look-again-then-create step. A run is keyed by the full
commit hash (a short hash or a branch is resolved with git first).

Authentication, first match wins (the token itself is never logged or printed):

1. a bearer token in the environment variable named by ``token_env`` (default ``KFP_TOKEN``);
2. with a host, the audience-bound service-account token file KFP's SDK knows
   (``$KF_PIPELINES_SA_TOKEN_PATH``, default ``/var/run/secrets/kubeflow/pipelines/token``), which
   the retrain hook projects: re-read on every call, so kubelet rotation is picked up;
3. with ``kubeconfig=True`` (no host), in-cluster credentials or the current kubeconfig context: the
   SDK then reaches ``ml-pipeline`` in the ``kubeflow`` namespace through the API server proxy;
4. otherwise no credentials (a ``kubectl port-forward`` to a single-user KFP).

``namespace`` is the profile namespace of multi-user Kubeflow (``None`` on single-user KFP). It is
passed explicitly to every call that takes one, never stored in ``~/.config/kfp/context.json``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import subprocess
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ragtune.core.errors import ConfigError, InputError, RagtuneError

if TYPE_CHECKING:
    import kfp

log = logging.getLogger(__name__)

RUN_PREFIX = "ragtune"
GIT_REVISION_PARAM = "git_revision"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_REVISION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._/-]{0,254}$")
_FULL_HASH = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # SHA-1 or SHA-256 object name
_ARCHIVED = "ARCHIVED"
_EQUALS = 1  # filter.proto Predicate.Operation.EQUALS


@dataclass(frozen=True)
class UploadResult:
    pipeline_id: str
    version_id: str
    created_pipeline: bool
    created_version: bool = True  # False: a version with this name was already there (nothing uploaded)
    version_name: str = ""


@dataclass(frozen=True)
class SubmitResult:
    run_id: str
    run_url: str
    skipped: bool  # True: a run for this git revision exists already; nothing was submitted
    reason: str
    display_name: str = ""
    experiment_id: str = ""


def _filter_equals(key: str, value: str) -> str:
    """A v2beta1 filter (filter.proto as JSON) selecting ``key == value``, spelled as kfp's SDK does."""
    return json.dumps({"predicates": [{"operation": _EQUALS, "key": key, "stringValue": value}]})


@contextlib.contextmanager
def _sdk_output() -> Iterator[None]:
    """Route the SDK's ``print`` links and FutureWarning into debug logging (stdout stays ours)."""
    buffer = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buffer):
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                log.debug("kfp: %s", line)


@contextlib.contextmanager
def _api(what: str) -> Iterator[None]:
    """Turn API and connection failures into one-line errors (status and server message only)."""
    import kfp_server_api
    import urllib3

    try:
        with _sdk_output():
            yield
    except kfp_server_api.ApiException as err:
        message = _server_message(err.body)
        raise RagtuneError(
            f"KFP API: {what} failed: HTTP {err.status} {err.reason or ''}".rstrip()
            + (f": {message}" if message else "")
        ) from None
    except urllib3.exceptions.HTTPError as err:
        reason = getattr(err, "reason", None) or err
        raise RagtuneError(f"KFP API: {what} failed: cannot reach the server ({reason})") from None
    except TimeoutError as err:  # the SDK's healthz check gives up this way (e.g. after 401s)
        raise RagtuneError(f"KFP API: {what} failed: {err} (check the host and the credentials)") from None


def _server_message(body: Any) -> str:
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return str(body).strip()[:300]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or "")[:300]
    return ""


def connect(
    host: str | None,
    namespace: str | None,
    token_env: str = "KFP_TOKEN",
    kubeconfig: bool = False,
    *,
    ui_host: str | None = None,
) -> kfp.Client:
    """A ``kfp.Client`` for ``host`` (or kubeconfig / in-cluster), authenticated as the module doc says.

    ``ui_host`` is where run links point (default: ``$KF_PIPELINES_UI_ENDPOINT``, else ``host``).
    Without ``namespace`` the SDK checks the server's healthz here, retrying 5 times 5 s apart on
    an HTTP error (e.g. a rejected token) before this raises.
    """
    from kfp import Client
    from kfp.client import KF_PIPELINES_SA_TOKEN_ENV, KF_PIPELINES_SA_TOKEN_PATH
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    if not _ENV_NAME.match(token_env):
        # Never echo it: a token pasted here by mistake must not end up in a log.
        raise ConfigError(
            "token_env must be the name of an environment variable holding the KFP token (value not shown)"
        )
    host = (host or os.environ.get("KF_PIPELINES_ENDPOINT") or "").strip() or None
    if kubeconfig and host:
        raise ConfigError("give either a KFP host or kubeconfig credentials, not both")
    if not kubeconfig and not host:
        raise ConfigError(
            "no KFP host: pass one (http://localhost:8080 through `kubectl port-forward`, "
            "http://ml-pipeline.kubeflow.svc:8888 in-cluster) or use kubeconfig credentials"
        )
    kwargs: dict[str, Any] = {"host": host, "ui_host": ui_host}
    token = (os.environ.get(token_env) or "").strip()
    token_file = os.environ.get(KF_PIPELINES_SA_TOKEN_ENV) or KF_PIPELINES_SA_TOKEN_PATH
    if kubeconfig:
        # The SDK uses kfp.Client's `namespace` for where KFP itself runs (the API-server proxy path).
        kwargs["namespace"] = "kubeflow"
        log.info("KFP auth: kubeconfig / in-cluster credentials")
    elif token:
        kwargs["existing_token"] = token
        log.info("KFP auth: bearer token from $%s", token_env)
    elif Path(token_file).is_file():
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(token_file)
        log.info("KFP auth: service-account token file %s", token_file)
    else:
        log.info("KFP auth: none ($%s unset, no token file at %s)", token_env, token_file)
    if namespace and not kubeconfig:
        kwargs["namespace"] = namespace  # only sets the SDK's default user namespace for this client
    with _api(f"connecting to {host or 'the cluster (kubeconfig)'}"):
        return Client(**kwargs)


#: The oldest KFP backend that runs the compiled YAML: its platform spec takes node selectors and
#: tolerations from pipeline parameters (``nodeSelectorJson``/``tolerationJson`` of kfp-kubernetes),
#: which older v2 drivers ignore or reject. Stated in docs/deploy.md (Prerequisites).
MIN_KFP_BACKEND = (2, 5, 0)
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def backend_version(client: kfp.Client) -> str:
    """The KFP API server's release (``tag_name`` of ``/apis/v1beta1/healthz``).

    kfp 2.17's ``get_kfp_healthz`` reads the v2beta1 healthz, which carries no version; the v1beta1
    one, which every KFP 1.x/2.x API server serves, does. Asked with the client's own credentials.
    """
    api_client = client._healthz_api.api_client  # kfp.Client keeps its authenticated ApiClient here
    with _api("reading the KFP backend's version (/apis/v1beta1/healthz)"):
        data = api_client.call_api(
            "/apis/v1beta1/healthz",
            "GET",
            response_type="object",
            auth_settings=["Bearer"],
            _return_http_data_only=True,
        )
    return str((data or {}).get("tag_name") or "") if isinstance(data, dict) else ""


def require_backend(client: kfp.Client) -> str:
    """The backend's version, or a one-line error when it is older than :data:`MIN_KFP_BACKEND`
    (or does not say which it is): the run would fail on the cluster, not here."""
    found = backend_version(client)
    floor = ".".join(map(str, MIN_KFP_BACKEND))
    match = _VERSION.match(found)
    if match is None:
        raise ConfigError(
            f"the KFP backend reports version {found or 'none'!r}; the compiled pipeline needs KFP {floor} "
            "or newer (parameterised node selectors and tolerations): check the cluster's KFP release"
        )
    version = tuple(int(part or 0) for part in match.groups())
    if version < MIN_KFP_BACKEND:
        raise ConfigError(
            f"the KFP backend is {found}; the compiled pipeline needs KFP {floor} or newer "
            "(parameterised node selectors and tolerations): upgrade Kubeflow Pipelines"
        )
    return found


def pipeline_parameters(package_path: Path) -> dict[str, Any]:
    """The root parameters a compiled pipeline declares (name -> its inputDefinitions entry)."""
    try:
        text = Path(package_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{package_path}: no compiled pipeline (run `ragtune compile` first)") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as err:
        raise InputError(f"{package_path}: not a compiled pipeline ({err})") from None
    spec = documents[0] if documents else None
    if not isinstance(spec, dict) or "root" not in spec:
        raise InputError(f"{package_path}: not a compiled KFP v2 pipeline (no root)")
    parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return dict(parameters)


def parameters_from_flags(package_path: Path, flags: list[str]) -> dict[str, Any]:
    """``name=value`` flags as pipeline arguments: strings stay strings, other types are read as YAML.

    The UI's config fields are strings (empty keeps the config's value), so ``lora_r=16`` must go as
    ``"16"``; ``synth_shards=4`` or ``gpu_node_selector={pool: gpu}`` go typed.
    """
    declared = pipeline_parameters(package_path)
    arguments: dict[str, Any] = {}
    for flag in flags:
        name, sep, raw = flag.partition("=")
        name = name.strip()
        if not sep or name not in declared:
            known = ", ".join(sorted(declared))
            raise InputError(f"--param {flag!r}: expected NAME=VALUE with NAME one of: {known}")
        if declared[name].get("parameterType") == "STRING":
            arguments[name] = raw
        else:
            try:
                arguments[name] = yaml.safe_load(raw)
            except yaml.YAMLError as err:
                raise InputError(f"--param {name}: cannot read {raw!r} ({err})") from None
    return arguments


def _ui_base(client: kfp.Client) -> str:
    # kfp builds its own links this way (KF_PIPELINES_UI_ENDPOINT, ui_host or host).
    prefix = getattr(client, "_get_url_prefix", None)
    return str(prefix()).rstrip("/") if callable(prefix) else ""


def run_url(client: kfp.Client, run_id: str) -> str:
    return f"{_ui_base(client)}/#/runs/details/{run_id}"


def _version_by_name(client: kfp.Client, pipeline_id: str, version_name: str) -> str | None:
    response = client.list_pipeline_versions(
        pipeline_id=pipeline_id, filter=_filter_equals("display_name", version_name), page_size=10
    )
    for version in response.pipeline_versions or []:
        if version.display_name == version_name:
            return str(version.pipeline_version_id)
    return None


def upload(
    client: kfp.Client, package_path: Path, pipeline_name: str, version_name: str, description: str
) -> UploadResult:
    """Make ``version_name`` a version of pipeline ``pipeline_name``, creating the pipeline if missing.

    KFP gives a new pipeline a first version named after the pipeline; a distinct ``version_name``
    is then uploaded as a second version, so after this call a version named ``version_name``
    always exists. Re-uploading a version name that exists uploads nothing (``created_version``
    False), so a retried sync is harmless.
    """
    package = str(package_path)
    pipeline_parameters(package_path)  # a clear error for a missing or foreign file
    require_backend(client)
    with _api(f"looking up pipeline {pipeline_name!r}"):
        pipeline_id = client.get_pipeline_id(pipeline_name)
    created_pipeline = pipeline_id is None
    if pipeline_id is None:
        with _api(f"uploading pipeline {pipeline_name!r}"):
            pipeline = client.upload_pipeline(package, pipeline_name=pipeline_name, description=description)
        pipeline_id = str(pipeline.pipeline_id)
        log.info("created pipeline %s (%s)", pipeline_name, pipeline_id)
    with _api(f"looking up version {version_name!r} of pipeline {pipeline_name!r}"):
        existing = _version_by_name(client, pipeline_id, version_name)
    if existing is not None:
        log.info(
            "pipeline %s already has version %s (%s); nothing uploaded", pipeline_name, version_name, existing
        )
        return UploadResult(
            pipeline_id, existing, created_pipeline, created_version=False, version_name=version_name
        )
    with _api(f"uploading version {version_name!r} of pipeline {pipeline_name!r}"):
        version = client.upload_pipeline_version(
            package, pipeline_version_name=version_name, pipeline_id=pipeline_id, description=description
        )
    log.info(
        "uploaded version %s of pipeline %s (%s)", version_name, pipeline_name, version.pipeline_version_id
    )
    return UploadResult(
        pipeline_id,
        str(version.pipeline_version_id),
        created_pipeline,
        created_version=True,
        version_name=version_name,
    )


def revision_run_name(git_revision: str) -> str:
    """The display name of the one run of a git revision: ``ragtune-<full commit hash>``.

    The whole hash: two commits sharing a prefix are two revisions and get two runs.
    """
    return f"{RUN_PREFIX}-{git_revision}"


def resolve_revision(revision: str, repo: Path | None = None) -> str:
    """The full commit hash of ``revision``: as given when it is one, else resolved with git in ``repo``.

    A short hash, a tag or a branch name is a moving or ambiguous key, so it never names a run.
    """
    revision = revision.strip()
    if _FULL_HASH.match(revision.lower()):
        return revision.lower()
    if not _REVISION.match(revision) or revision.startswith("-"):
        raise ConfigError(f"invalid git revision {revision!r}")
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ConfigError(
            f"git revision {revision!r} is not a full commit hash and git failed: {err}"
        ) from None
    resolved = done.stdout.strip().lower()
    if done.returncode != 0 or not _FULL_HASH.match(resolved):
        raise ConfigError(
            f"git revision {revision!r} is not a full commit hash and git cannot resolve it in "
            f"{repo or Path.cwd()}; pass the full hash (git rev-parse {revision})"
        )
    return resolved


def _existing_run(client: kfp.Client, experiment_id: str, display_name: str) -> Any | None:
    """A run of the experiment with this display name that is not archived (archiving one allows a resubmit)."""
    response = client.list_runs(
        experiment_id=experiment_id, filter=_filter_equals("display_name", display_name), page_size=10
    )
    runs = [
        run
        for run in response.runs or []
        if run.display_name == display_name and str(run.storage_state or "").upper() != _ARCHIVED
    ]
    return runs[0] if runs else None


def submit(
    client: kfp.Client,
    package_path: Path,
    params: Mapping[str, Any],
    experiment: str,
    namespace: str | None = None,
    git_revision: str | None = None,
    run_name: str | None = None,
    *,
    service_account: str | None = None,
    lock: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> SubmitResult:
    """Submit one run of the compiled pipeline into ``experiment`` (created if missing).

    With ``git_revision`` (resolved to the full commit hash) the run is named ``ragtune-<hash>``
    (``run_name`` is then ignored), the hash is passed as the pipeline parameter ``git_revision``,
    and if a run with that name exists in the experiment (and is not archived) nothing is
    submitted: ``skipped`` is True and the existing run's id and link are returned. ``lock(hash)``
    (e.g. :func:`pipelines.lease.lease_lock`) is held while looking again and creating the run,
    so concurrent submits of one revision create one run. ``service_account`` is the Kubernetes service
    account the run's pods use (e.g. ``ragtune-pipeline``, which may launch PyTorchJobs).
    """
    declared = pipeline_parameters(package_path)
    require_backend(client)
    arguments = dict(params)
    if git_revision is not None:
        revision = resolve_revision(git_revision)
        if run_name:
            log.warning("run name %r ignored: a run for a git revision is named after it", run_name)
        arguments[GIT_REVISION_PARAM] = revision
        display_name = revision_run_name(revision)
    else:
        display_name = run_name or f"{RUN_PREFIX}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    unknown = sorted(set(arguments) - set(declared))
    if unknown:
        raise ConfigError(
            f"{package_path}: the pipeline has no parameter {', '.join(unknown)} "
            f"(it takes {', '.join(sorted(declared)) or 'none'}); recompile it with `ragtune compile`"
        )
    with _api(f"getting or creating experiment {experiment!r}"):
        experiment_id = str(client.create_experiment(name=experiment, namespace=namespace).experiment_id)
    if git_revision is None:
        return _create_run(
            client, package_path, arguments, experiment, experiment_id, display_name, service_account
        )
    found = _skip_existing(client, experiment, experiment_id, display_name, arguments[GIT_REVISION_PARAM])
    if found is not None:  # the fast path: no lock needed to see a run that exists
        return found
    with lock(arguments[GIT_REVISION_PARAM]) if lock is not None else contextlib.nullcontext():
        found = _skip_existing(client, experiment, experiment_id, display_name, arguments[GIT_REVISION_PARAM])
        if found is not None:  # another submit created it while we waited for the lock
            return found
        return _create_run(
            client, package_path, arguments, experiment, experiment_id, display_name, service_account
        )


def _skip_existing(
    client: kfp.Client, experiment: str, experiment_id: str, display_name: str, revision: str
) -> SubmitResult | None:
    with _api(f"looking for run {display_name!r}"):
        existing = _existing_run(client, experiment_id, display_name)
    if existing is None:
        return None
    run_id = str(existing.run_id)
    reason = (
        f"run {display_name} for git revision {revision} exists already in experiment "
        f"{experiment} (state {existing.state or 'unknown'}); one run per git revision, nothing submitted"
    )
    log.info(reason)
    return SubmitResult(run_id, run_url(client, run_id), True, reason, display_name, experiment_id)


def _create_run(
    client: kfp.Client,
    package_path: Path,
    arguments: Mapping[str, Any],
    experiment: str,
    experiment_id: str,
    display_name: str,
    service_account: str | None,
) -> SubmitResult:
    with _api(f"submitting run {display_name!r}"):
        run = client.run_pipeline(
            experiment_id=experiment_id,
            job_name=display_name,
            pipeline_package_path=str(package_path),
            params=arguments,
            service_account=service_account,
        )
    run_id = str(run.run_id)
    log.info("submitted run %s (%s) in experiment %s", display_name, run_id, experiment)
    return SubmitResult(run_id, run_url(client, run_id), False, "submitted", display_name, experiment_id)
