"""Entry point of every PyTorchJob pod: ``python -m ragtune.train.cluster.node --work-uri URI -- torchrun ...``.

1. reads the resolved config from ``$RAGTUNE_JOB_CONFIG_JSON`` into ``<workdir>/config.json``;
2. copies the dataset (``--dataset-uri``, default ``<work-uri>/dataset/``) into ``<workdir>/dataset``
   (each node has its own disk), and
   the newest checkpoint all ``--num-nodes`` nodes uploaded to ``<work-uri>/checkpoints/`` into
   ``<workdir>/out/checkpoints`` (a rescheduled pod resumes there; see ``checkpoints.py``);
3. runs the launcher command given after ``--`` (torchrun on ``ragtune.train.launch``), forwarding
   SIGTERM/SIGINT to it so a deleted job stops training, while copying each new complete
   checkpoint to ``<work-uri>/checkpoints/`` every ``--checkpoint-sync-s`` seconds;
4. on node rank 0 (``--node-rank``: ``$(RANK)`` of a PyTorchJob, ``$(PET_NODE_RANK)`` of a TrainJob),
   whose global rank 0 writes the outputs, copies
   ``<workdir>/out`` (without ``checkpoints/``) to ``<work-uri>/output/`` when training succeeded,
   and ``train_error.txt`` there when it did not.

Storage goes through ``ragtune.core.storage`` (S3/MinIO with the config's ``storage`` section and
the credentials in the env vars it names).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from ragtune.core.artifacts import ModelDir
from ragtune.core.config import RagtuneConfig, config_from_json
from ragtune.core.errors import RagtuneError
from ragtune.core.storage import Storage, open_storage
from ragtune.train.cluster import checkpoints
from ragtune.train.cluster.job import CONFIG_ENV, WORKDIR
from ragtune.train.distributed import ERROR_FILE

DATASET_PREFIX = "dataset/"
OUTPUT_PREFIX = "output/"
SKIP_OUTPUTS = (ModelDir.CHECKPOINTS_DIR,)  # large; shared through <work-uri>/checkpoints/ while training


def _run(command: list[str]) -> int:
    """Run ``command``, passing SIGTERM/SIGINT on to it; its exit code."""
    child = subprocess.Popen(command)

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def push_outputs(out_dir: Path, storage: Storage) -> list[str]:
    """Copy the training outputs (not checkpoints) to ``output/`` in ``storage``."""
    keys: list[str] = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(out_dir)
        if relative.parts[0] in SKIP_OUTPUTS:
            continue
        key = OUTPUT_PREFIX + relative.as_posix()
        storage.write_bytes(key, path.read_bytes())
        keys.append(key)
    return keys


def _dataset_source(storage: Storage, dataset_uri: str, config: RagtuneConfig) -> tuple[Storage, str]:
    """Where the dataset is read: ``--dataset-uri`` when given, else ``dataset/`` of the work URI."""
    if not dataset_uri:
        return storage, DATASET_PREFIX
    return open_storage(dataset_uri, config.storage), ""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print(
            "usage: python -m ragtune.train.cluster.node --work-uri URI [--workdir DIR] -- COMMAND...",
            file=sys.stderr,
        )
        return 2
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="python -m ragtune.train.cluster.node", description=__doc__)
    parser.add_argument(
        "--work-uri", required=True, help="s3:// prefix holding dataset/ and receiving output/."
    )
    parser.add_argument(
        "--dataset-uri",
        default="",
        help="Folder or s3:// prefix of the dataset (default <work-uri>/dataset/).",
    )
    parser.add_argument("--workdir", type=Path, default=Path(WORKDIR), help="Local folder of this node.")
    parser.add_argument(
        "--node-rank", type=int, default=None, help="This node's rank (default: $RANK, else 0)."
    )
    parser.add_argument(
        "--num-nodes", type=int, default=1, help="Nodes of the job (a shared checkpoint needs all of them)."
    )
    parser.add_argument(
        "--checkpoint-sync-s",
        type=float,
        default=30.0,
        help="Seconds between uploads of new complete checkpoints to <work-uri>/checkpoints/.",
    )
    options = parser.parse_args(args[:split])
    command = args[split + 1 :]
    if not command:
        parser.error("no launcher command after --")
    rank = options.node_rank if options.node_rank is not None else int(os.environ.get("RANK", "0"))
    try:
        config = config_from_json(os.environ.get(CONFIG_ENV, "{}"))
        storage = open_storage(options.work_uri, config.storage)
        workdir: Path = options.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json(), encoding="utf-8")
        dataset, prefix = _dataset_source(storage, options.dataset_uri, config)
        files = dataset.download_dir(prefix, workdir / "dataset")
        if not files:
            raise RagtuneError(
                f"{dataset.uri_for(prefix)}: no dataset files (the launcher stages them there)"
            )
        print(f"node {rank}: {len(files)} dataset file(s) from {dataset.uri_for(prefix)}", flush=True)
        local_checkpoints = ModelDir(workdir / "out").checkpoints_dir
        resumed = checkpoints.restore(storage, local_checkpoints, options.num_nodes)
        if resumed:
            print(f"node {rank}: resuming from {storage.uri_for(checkpoints.PREFIX + resumed)}", flush=True)
    except RagtuneError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    with checkpoints.CheckpointSync(local_checkpoints, storage, rank, options.checkpoint_sync_s):
        code = _run(command)
    if rank != 0:
        return code
    out_dir = workdir / "out"
    try:
        if code == 0:
            keys = push_outputs(out_dir, storage)
            print(f"node 0: {len(keys)} output file(s) -> {storage.uri_for(OUTPUT_PREFIX)}", flush=True)
        elif (out_dir / ERROR_FILE).is_file():
            storage.write_bytes(OUTPUT_PREFIX + ERROR_FILE, (out_dir / ERROR_FILE).read_bytes())
    except RagtuneError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return code or 2
    return code


if __name__ == "__main__":
    sys.exit(main())
