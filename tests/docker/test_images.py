"""The CPU image is real: it builds here without a registry, and the whole graph runs inside it.

One session-scoped build and one `ragtune run --runner docker` on the sample corpus, shared with
test_contract.py (`contract_run` in conftest.py: the cache on an S3 server and the registry on an
MLflow server, both checking credentials). Then the checks read what the engine reported about
every container.

Run with `pytest -m docker` (`.ci/run` does, after `make test`). Needs root-capable Docker and
debootstrap (`apt-get install -y docker.io debootstrap`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kfp.dsl.constants import WORKSPACE_MOUNT_PATH

from pipelines.docker_runner import CONTAINER_RECORDS, MODEL_CACHE_MOUNT

pytestmark = pytest.mark.docker


REPO = Path(__file__).resolve().parents[2]
UID = "10001"


@pytest.fixture(scope="module")
def docker_run(contract_run: tuple[Path, Any]) -> Path:
    """The session's one `ragtune run --runner docker` (tests/docker/conftest.py `contract_run`)."""
    return contract_run[0]


def _records(run: Path) -> list[dict[str, Any]]:
    return json.loads((run / CONTAINER_RECORDS).read_text(encoding="utf-8"))


def test_every_task_ran_in_the_image_as_uid_10001_with_a_read_only_root(docker_run: Path, image: str) -> None:
    import docker

    records = _records(docker_run)
    tasks = {p.parent.name for p in docker_run.rglob("executor_output.json")}  # loop tasks sit deeper
    assert tasks >= {"parse-documents", "index-documents", "synthesize-dataset", "train-adapter"}
    assert {r["task"] for r in records} == tasks, "a task ran without a container record, or vice versa"
    image_id = docker.from_env().images.get(image).id
    for record in records:
        where = f"task {record['task']}"
        assert record["exit_code"] == 0, where
        assert (record["image"], record["image_id"]) == (image, image_id), where
        assert record["user"].split(":")[0] == UID, where
        assert record["read_only_root"] is True, where
        assert record["tmpfs"] == ["/tmp"], where
    # What the tasks wrote into the run folder belongs to uid 10001: the writes happened as that user.
    written = [
        p for p in docker_run.rglob("*") if p.is_file() and p.parent.name != "logs"
    ]  # logs: the host's
    owners = {p.stat().st_uid for p in written if p.name != CONTAINER_RECORDS}
    assert owners == {int(UID)}


def test_nothing_was_written_outside_the_mounted_folders(docker_run: Path) -> None:
    run_root = str(docker_run.parent)
    corpus = str(REPO / "examples/psychiatry/corpus")
    for record in _records(docker_run):
        mounts = {m["destination"]: m for m in record["mounts"]}
        writable = {d for d, m in mounts.items() if m["rw"]}
        # kfp.local also mounts its (empty) workspace folder at WORKSPACE_MOUNT_PATH.
        assert writable <= {run_root, MODEL_CACHE_MOUNT, WORKSPACE_MOUNT_PATH}, record["task"]
        assert {run_root, MODEL_CACHE_MOUNT} <= writable, record["task"]
        assert corpus in mounts and not mounts[corpus]["rw"], record["task"]
        # `docker diff`: only the mount points Docker itself created in the container layer.
        allowed = {*mounts, "/tmp"} | {str(p) for d in mounts for p in Path(d).parents}
        stray = set(record["rootfs_changes"]) - allowed
        assert not stray, f"task {record['task']} changed its root filesystem: {sorted(stray)}"


def _pem_blocks(text: str) -> set[str]:
    return set(re.findall(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----", text))


def _layer_files(image: str) -> Iterator[tuple[str, bytes]]:
    """(path, content) of every regular file in every layer of ``image`` (`docker save`, streamed)."""
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert save.stdout is not None
    with tarfile.open(fileobj=save.stdout, mode="r|") as outer:
        for member in outer:
            # Layers: <id>/layer.tar (docker save before 25) or blobs/sha256/<digest> (OCI layout).
            if not (
                member.isfile() and (member.name.endswith("layer.tar") or member.name.startswith("blobs/"))
            ):
                continue
            blob = outer.extractfile(member)
            if blob is None:
                continue
            try:
                with tarfile.open(fileobj=blob, mode="r|") as layer:
                    for entry in layer:
                        data = layer.extractfile(entry) if entry.isfile() else None
                        if data is not None:
                            yield entry.name, data.read()
            except tarfile.ReadError:  # a config or manifest blob, not a layer
                continue
    assert save.wait() == 0


def test_no_credentials_or_host_ca_bundle_in_any_layer(image: str) -> None:
    host_bundle = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
    stock = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "cat", "/etc/ssl/certs/ca-certificates.crt"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    # The host's own CAs (a proxy's, a company's): in its bundle, not in the image's stock one.
    extra = _pem_blocks(host_bundle.read_text()) - _pem_blocks(stock) if host_bundle.is_file() else set()
    # One base64 line from the middle of each certificate identifies it (the first lines of many
    # certificates share a prefix).
    needles = [lines[len(lines) // 2].encode() for lines in (b.split("\n") for b in extra)]
    keys = {k: v.encode() for k, v in os.environ.items() if k.endswith("_KEY") and len(v) >= 8}
    host_digest = hashlib.sha256(host_bundle.read_bytes()).hexdigest() if host_bundle.is_file() else None

    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "PIP_CERT" not in history and "--secret" not in history
    for name, value in keys.items():
        assert value.decode() not in history, f"the value of ${name} is in the image history"

    found: list[str] = []
    for path, data in _layer_files(image):
        if extra and hashlib.sha256(data).hexdigest() == host_digest:
            found.append(f"{path}: the host's CA bundle")
        found += [f"{path}: a host CA certificate" for needle in needles if needle in data]
        found += [f"{path}: the value of ${name}" for name, value in keys.items() if value in data]
    assert not found, found
