"""Run the local graph's tasks in the ragtune image (``ragtune run --runner docker``).

``kfp.local.DockerRunner`` runs each task with the image named in the compiled component and
mounts only the pipeline root. That is not how a cluster runs ragtune, so this module adds what
the manifests do and ``kfp.local`` has no option for:

- every task runs in one local image (the CPU image: training runs on CPU here), as the image's
  non-root user (uid 10001) with a read-only root filesystem, a ``/tmp`` tmpfs and a named
  model-cache volume at ``/var/cache/ragtune`` (the Hugging Face cache lives there);
- the corpus is mounted read-only and a local cache folder read-write, at the same paths, so the
  config's absolute paths mean the same inside and out;
- each task gets the env and limits its executor has in the compiled pipeline
  (:mod:`pipelines.task_contract`): the keys of exactly the Secrets and ``ragtune-endpoints``
  ConfigMap entries its pod would mount, valued from this shell's env (``RAGTUNE_ENDPOINTS`` holds
  the config's ``security.endpoints``), and its memory and CPU limits. A task that opens a service
  its spec gives no credential for fails here as it would in a cluster;
- each container is inspected before it is removed and described in ``containers.json`` in the
  run folder: exit code, user, read-only root, mounts, and what it changed in its root filesystem
  (``docker diff``), which is how the tests prove nothing was written outside the mounts.

kfp 2.17 picks the task handler by the runner's exact type and takes the image from the compiled
spec, so :func:`tasks_in_image` swaps in a handler subclass for the duration of one run.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.task_contract import TaskContract, compiled_contracts, pod_env
from ragtune.core.config import RagtuneConfig
from ragtune.core.endpoints import ENDPOINTS_ENV
from ragtune.core.errors import RagtuneError

log = logging.getLogger(__name__)
CONTAINER_RECORDS = "containers.json"
MODEL_CACHE_VOLUME = "ragtune-model-cache"
MODEL_CACHE_MOUNT = "/var/cache/ragtune"  # created in docker/Dockerfile, owned by uid 10001
TMPFS_OPTIONS = "rw,nosuid,nodev,size=8g,mode=1777"
SHM_SIZE = "2g"  # DataLoader workers share tensors through /dev/shm; Docker's default is 64 MB
# Files the tasks create stay manageable by the host user's group (runs/ is group-writable).
UMASK_ENTRYPOINT = ["/bin/sh", "-c", 'umask 0002 && exec "$@"', "ragtune-task"]
_TASK_DIR = re.compile(r'"outputFile":\s*"([^"]+)/executor_output\.json"')


def docker_sdk() -> Any:
    """The Docker SDK module (typed ``Any``: for mypy the repository's docker/ folder shadows it)."""
    try:
        return importlib.import_module("docker")
    except ImportError as err:  # pragma: no cover - docker is a ragtune dependency
        raise RagtuneError("--runner docker needs the 'docker' Python package (pip install docker)") from err


def docker_client() -> Any:
    """A client of the local Docker engine, or a clear error saying why there is none."""
    try:
        client = docker_sdk().from_env()
        client.ping()
    except Exception as err:
        raise RagtuneError(
            f"--runner docker: no Docker engine answers ({err}); start dockerd or use --runner subprocess"
        ) from None
    return client


def require_image(client: Any, image: str) -> None:
    """Fail before the first task when the image was never built (no registry pull is attempted)."""
    try:
        client.images.get(image)
    except docker_sdk().errors.ImageNotFound:
        raise RagtuneError(
            f"--runner docker: image {image} not found locally; build it with `make images` "
            "(or set RAGTUNE_IMAGE to an image you have)"
        ) from None


def task_volumes(read_only: list[Path], read_write: list[Path]) -> dict[str, dict[str, str]]:
    """The model-cache volume and host folders mounted at their own paths (besides the run root)."""
    volumes = {MODEL_CACHE_VOLUME: {"bind": MODEL_CACHE_MOUNT, "mode": "rw"}}
    for path, mode in [*((p, "ro") for p in read_only), *((p, "rw") for p in read_write)]:
        volumes[str(path)] = {"bind": str(path), "mode": mode}
    return volumes


def runner_options() -> dict[str, Any]:
    """``DockerRunner`` (``containers.run``) options that make a task container look like a pod."""
    return {
        "read_only": True,
        "tmpfs": {"/tmp": TMPFS_OPTIONS},
        "shm_size": SHM_SIZE,
        "network_mode": "host",  # endpoints on localhost (an LLM server, MLflow) work as in subprocess runs
        "group_add": [str(os.getgid())],
        "entrypoint": UMASK_ENTRYPOINT,
    }


def cluster_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the Secrets and the ``ragtune-endpoints`` ConfigMap hold when run locally: this shell's
    env (``ragtune run`` has exported the config's grants), with no grants declared when none are."""
    environ = dict(os.environ) if environ is None else dict(environ)
    environ.setdefault(ENDPOINTS_ENV, "[]")
    return environ


def credential_names(config: RagtuneConfig) -> set[str]:
    """The env vars the config names in its ``*_env`` fields (API keys, S3 credentials, HF token)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith("_env") and isinstance(value, str):
                    names.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config.model_dump())
    return names


def unmounted_credentials(
    config: RagtuneConfig, contracts: Mapping[str, TaskContract], environ: Mapping[str, str]
) -> list[str]:
    """Credentials the config names and this shell holds that no task's pod would get: a run that
    needs one fails here as it would in the cluster, so say so before the first task."""
    mounted = {var for contract in contracts.values() for var in contract.env}
    return sorted(name for name in credential_names(config) if environ.get(name) and name not in mounted)


def task_args(contract: TaskContract, environ: Mapping[str, str]) -> dict[str, Any]:
    """``containers.run`` options of one task: its pod's env and its resource limits."""
    args: dict[str, Any] = {"environment": pod_env(contract, cluster_values(environ))}
    if contract.memory_limit is not None:
        args["mem_limit"] = contract.memory_limit
        args["memswap_limit"] = contract.memory_limit  # no swap: a pod over its limit is killed
    if contract.cpu_limit is not None:  # Docker refuses more CPUs than the host has
        args["nano_cpus"] = int(min(contract.cpu_limit, os.cpu_count() or 1) * 1e9)
    return args


def share_with_tasks(folder: Path) -> None:
    """Let uid 10001 (in the host user's group) write into ``folder`` and everything under it.

    New files keep the folder's group (setgid) and are group-writable (the tasks' umask). Files a
    subprocess run wrote before (the local MLflow store, caches) get the same, so both runners can
    take turns on one ``run.root``; what this user may not change is named in one line instead of
    failing a task later with ``attempt to write a readonly database``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    blocked: list[Path] = []
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        stat = path.stat()
        wanted = stat.st_mode | (0o2070 if path.is_dir() else 0o060)
        try:
            if stat.st_gid != os.getgid():
                os.chown(path, -1, os.getgid())
            if wanted != stat.st_mode:
                path.chmod(wanted)
        except PermissionError:
            blocked.append(path)
    if blocked:
        raise RagtuneError(
            f"--runner docker: {len(blocked)} paths under {folder} cannot be made writable for the task "
            f"containers (first: {blocked[0]}, owner uid {blocked[0].stat().st_uid}); "
            f"run `sudo chgrp -R {os.getgid()} {folder} && sudo chmod -R g+rwX {folder}` or use another run.root"
        )


def describe(container: Any, exit_code: int, command: list[str]) -> dict[str, Any]:
    """What the engine says the finished container was (not what we asked for)."""
    attrs = container.attrs
    host = attrs["HostConfig"]
    return {
        "task": task_name(command),
        "image": attrs["Config"]["Image"],
        "image_id": attrs["Image"],
        "exit_code": exit_code,
        "user": attrs["Config"]["User"],
        "read_only_root": bool(host.get("ReadonlyRootfs")),
        "tmpfs": sorted((host.get("Tmpfs") or {}).keys()),
        "mounts": [
            {"destination": m["Destination"], "source": m.get("Source", ""), "rw": m["RW"], "type": m["Type"]}
            for m in attrs.get("Mounts", [])
        ],
        "rootfs_changes": [change["Path"] for change in container.diff() or []],
        "env_names": sorted(item.partition("=")[0] for item in attrs["Config"].get("Env") or []),  # no values
        "memory_limit": host.get("Memory") or None,
        "nano_cpus": host.get("NanoCpus") or None,
    }


def relay_lines(chunks: Iterable[bytes]) -> None:
    """Print a container's log line by line, as kfp's subprocess runner relays a task's output
    (``print`` under kfp's indentation; ``\\r`` progress refreshes become lines), so the local
    run's log routing sees the same thing from either runner."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk)
        *lines, pending = pending.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for line in lines:
            print(line)
    pending += decoder.decode(b"", final=True)
    if pending:
        print(pending)


@dataclass(frozen=True)
class TaskSetup:
    """What every task container of one run shares, and each task's contract from the compiled spec."""

    image: str
    volumes: dict[str, dict[str, str]]
    contracts: dict[str, TaskContract]
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def contract_for(self, command: list[str]) -> TaskContract:
        task = task_name(command)
        if task not in self.contracts:
            raise RagtuneError(f"--runner docker: task {task} is not in the compiled pipeline")
        return self.contracts[task]


def task_name(command: list[str]) -> str | None:
    """The task's folder name (kfp's local runner names it after the component)."""
    match = _TASK_DIR.search(" ".join(command))
    return Path(match.group(1)).name if match else None


def run_task(setup: TaskSetup, handler: Any, records: list[dict[str, Any]]) -> Any:
    """Run one KFP task as its pod would run, stream its log, record the container, then remove it."""
    from kfp.local import status

    contract = setup.contract_for(handler.full_command)
    args = task_args(contract, setup.environ)
    environment = {
        **handler.env_vars,
        **args.pop("environment"),
        "HF_HOME": f"{MODEL_CACHE_MOUNT}/huggingface",
    }
    client = docker_client()
    try:
        container = client.containers.run(
            image=setup.image,
            command=handler.full_command,
            volumes={**handler.get_volumes_to_mount(client), **setup.volumes},
            environment=environment,
            detach=True,
            **handler.runner.container_run_args,
            **args,
        )
        try:
            relay_lines(container.logs(stream=True, follow=True))
            exit_code = int(container.wait()["StatusCode"])
            container.reload()
            record = describe(container, exit_code, handler.full_command)
            records.append({**record, "executor": contract.executor, "spec_image": contract.image})
        finally:
            container.remove(force=True)
    finally:
        client.close()
    return status.Status.SUCCESS if exit_code == 0 else status.Status.FAILURE


@contextlib.contextmanager
def tasks_in_image(setup: TaskSetup) -> Iterator[list[dict[str, Any]]]:
    """While open, ``DockerRunner`` tasks run as ``setup`` says; yields the container records."""
    from kfp.local import docker_task_handler

    records: list[dict[str, Any]] = []
    original = docker_task_handler.DockerTaskHandler

    class RagtuneTaskHandler(original):  # type: ignore[misc, valid-type]
        def run(self) -> Any:
            return run_task(setup, self, records)

    docker_task_handler.DockerTaskHandler = RagtuneTaskHandler
    try:
        yield records
    finally:
        docker_task_handler.DockerTaskHandler = original


def write_records(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    path = run_dir / CONTAINER_RECORDS
    path.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def docker_tasks(config: RagtuneConfig) -> Iterator[list[dict[str, Any]]]:
    """``kfp.local.DockerRunner`` on the CPU image, with the corpus and a local cache mounted.

    A corpus that is not a local path (s3://) is not mounted; a missing one is left to the parse
    stage to report (mounting it would make Docker create it).
    """
    from kfp import local

    from components.images import CPU_IMAGE

    client = docker_client()
    try:
        require_image(client, CPU_IMAGE)
    finally:
        client.close()
    root = Path(config.run.root)
    share_with_tasks(root)
    read_only = [Path(config.corpus.uri)] if Path(config.corpus.uri).exists() else []
    read_write = []
    if config.cache.uri and "://" not in config.cache.uri and not Path(config.cache.uri).is_relative_to(root):
        share_with_tasks(Path(config.cache.uri))
        read_write.append(Path(config.cache.uri))
    local.init(runner=local.DockerRunner(**runner_options()), pipeline_root=str(root), raise_on_error=True)
    setup = TaskSetup(CPU_IMAGE, task_volumes(read_only, read_write), compiled_contracts())
    if missing := unmounted_credentials(config, setup.contracts, setup.environ):
        log.warning(
            "--runner docker: %s set here, but no Secret of the compiled pipeline provides it: tasks "
            "run without it, as pods would (name the Secrets' keys in the config's *_env fields)",
            ", ".join(missing),
        )
    with tasks_in_image(setup) as records:
        yield records
