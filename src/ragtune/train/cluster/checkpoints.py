"""PyTorchJob checkpoints on shared storage, so a rescheduled pod resumes instead of starting over.

Each training pod keeps its checkpoints on its own disk (an ``emptyDir``, lost when the pod is
rescheduled), so every node copies each *complete* local checkpoint (``trainer_state.json``,
which the Trainer writes last, is there) to ``<work-uri>/checkpoints/<checkpoint-N>/`` and then
writes ``_node-<rank>.done`` beside it. The Trainer saves on every node (``save_on_each_node``),
so each node holds the shared files plus its own ranks' optimizer shards; the union is the whole
checkpoint, and it is usable only when all nodes' markers are there.

Before training, every node replaces its local ``checkpoints/`` with the newest checkpoint that
all nodes finished uploading (and the run identity file). Shared storage is the one truth: nodes
never resume from different steps, even when one pod kept its disk and another did not.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from pathlib import Path

from ragtune.core.artifacts import ModelDir
from ragtune.core.errors import RagtuneError
from ragtune.core.fsutil import atomic_write_bytes
from ragtune.core.storage import Storage
from ragtune.train.runner import RUN_FILE, TRAINER_STATE

log = logging.getLogger(__name__)

PREFIX = ModelDir.CHECKPOINTS_DIR + "/"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_MARKER = re.compile(r"^_node-(\d+)\.done$")


def marker(rank: int) -> str:
    """The file a node writes after uploading all of its files of a checkpoint."""
    return f"_node-{rank}.done"


def _step(name: str) -> int | None:
    match = _CHECKPOINT.match(name)
    return int(match.group(1)) if match else None


def complete_local(checkpoints: Path) -> list[Path]:
    """Local checkpoints the Trainer finished writing, oldest first."""
    if not checkpoints.is_dir():
        return []
    found = [p for p in checkpoints.iterdir() if _step(p.name) is not None and (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: _step(p.name) or 0)


def upload_checkpoint(checkpoint: Path, storage: Storage, rank: int) -> bool:
    """Copy ``checkpoint`` (a ``checkpoint-N`` folder) to shared storage, then this node's marker.

    False when the Trainer rotated the folder away meanwhile (an older checkpoint is not needed).
    """
    base = PREFIX + checkpoint.name + "/"
    try:
        files = sorted(p for p in checkpoint.rglob("*") if p.is_file())
        for path in files:
            storage.write_bytes(base + path.relative_to(checkpoint).as_posix(), path.read_bytes())
    except FileNotFoundError:
        log.info("%s was rotated away while uploading; skipped", checkpoint.name)
        return False
    storage.write_bytes(base + marker(rank), b"")
    return True


def upload_new(checkpoints: Path, storage: Storage, rank: int, done: set[str]) -> list[str]:
    """Upload the complete local checkpoints not in ``done`` (and the run identity file on node 0)."""
    uploaded = []
    for checkpoint in complete_local(checkpoints):
        if checkpoint.name in done:
            continue
        run_file = checkpoints / RUN_FILE
        if rank == 0 and run_file.is_file():
            storage.write_bytes(PREFIX + RUN_FILE, run_file.read_bytes())
        if upload_checkpoint(checkpoint, storage, rank):
            done.add(checkpoint.name)
            uploaded.append(checkpoint.name)
    return uploaded


def newest_shared(storage: Storage, num_nodes: int) -> str | None:
    """The newest checkpoint on shared storage that all ``num_nodes`` nodes finished uploading."""
    ranks: dict[str, set[int]] = {}
    for key in storage.list(PREFIX):
        parts = key[len(PREFIX) :].split("/")
        if len(parts) == 2 and _step(parts[0]) is not None and (match := _MARKER.match(parts[1])):
            ranks.setdefault(parts[0], set()).add(int(match.group(1)))
    whole = [name for name, seen in ranks.items() if set(range(num_nodes)) <= seen]
    return max(whole, key=lambda name: _step(name) or 0) if whole else None


def restore(storage: Storage, checkpoints: Path, num_nodes: int) -> str | None:
    """Make ``checkpoints`` hold exactly the newest whole shared checkpoint (none: an empty folder)."""
    name = newest_shared(storage, num_nodes)
    if checkpoints.exists():
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True)
    if name is None:
        return None
    for path in storage.download_dir(PREFIX + name + "/", checkpoints / name):
        if _MARKER.match(path.name) and path.parent == checkpoints / name:
            path.unlink()
    if storage.exists(PREFIX + RUN_FILE):
        atomic_write_bytes(checkpoints / RUN_FILE, storage.read_bytes(PREFIX + RUN_FILE))
    if not (checkpoints / name / TRAINER_STATE).is_file():
        raise RagtuneError(
            f"{storage.uri_for(PREFIX + name)}: all nodes marked it done but it has no {TRAINER_STATE}"
        )
    return name


class CheckpointSync:
    """Uploads new complete checkpoints every ``interval_s`` seconds in a background thread."""

    def __init__(self, checkpoints: Path, storage: Storage, rank: int, interval_s: float) -> None:
        self.checkpoints, self.storage, self.rank, self.interval_s = checkpoints, storage, rank, interval_s
        self.done: set[str] = {p.name for p in complete_local(checkpoints)}  # restored ones are there
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-sync", daemon=True)

    def _pass(self) -> None:
        try:
            for name in upload_new(self.checkpoints, self.storage, self.rank, self.done):
                print(f"node {self.rank}: {name} -> {self.storage.uri_for(PREFIX + name)}", flush=True)
        except RagtuneError as err:  # storage hiccup: the next pass tries again
            log.warning("checkpoint upload failed: %s", err)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._pass()

    def __enter__(self) -> CheckpointSync:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the thread and upload what the last steps wrote."""
        self._stop.set()
        self._thread.join()
        self._pass()
