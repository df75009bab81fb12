"""PyTorchJob checkpoints on shared S3 (moto): a rescheduled pod resumes from the last whole checkpoint.

Each "pod" is ``node.main`` with its own fresh workdir (a rescheduled pod's emptyDir is empty) and
a stand-in launcher that records which checkpoints it found, then writes the next one like the
Trainer with ``save_on_each_node`` does (shared files + its rank's shard, trainer_state.json last).
"""

import json
import os
import sys
import uuid
from pathlib import Path

import pytest

from ragtune.core.config import RagtuneConfig, build_config, config_from_json
from ragtune.core.storage import S3Storage, Storage, open_storage
from ragtune.train.cluster import checkpoints, node
from ragtune.train.cluster.job import CONFIG_ENV
from ragtune.train.runner import RUN_FILE, TRAINER_STATE
from tests.conftest import S3Server

# argv: workdir rank exit-code. Writes <workdir>/seen.json = checkpoints present at start.
LAUNCHER = """
import json, pathlib, sys
work, rank, code = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ckpts = work / "out" / "checkpoints"
seen = sorted(p.name for p in ckpts.glob("checkpoint-*")) if ckpts.is_dir() else []
(work / "seen.json").write_text(json.dumps({"seen": seen, "run_file": (ckpts / "ragtune_run.json").is_file()}))
step = max([int(s.split("-")[1]) for s in seen] or [0]) + 2
new = ckpts / f"checkpoint-{step}"
(new / f"global_step{step}").mkdir(parents=True)
(ckpts / "ragtune_run.json").write_text('{"dataset_sha256": "x"}')
(new / "adapter_model.safetensors").write_bytes(b"w%d" % step)
(new / f"global_step{step}" / f"rank{rank}_optim_states.pt").write_bytes(b"shard")
(new / "trainer_state.json").write_text(json.dumps({"global_step": step}))
sys.exit(code)
"""


@pytest.fixture
def work(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    config = build_config({"storage": {"endpoint": s3_env.endpoint, "secure": False}})
    storage = open_storage("s3://ragtune-cache/", config.storage)
    assert isinstance(storage, S3Storage)
    storage.ensure_bucket()
    monkeypatch.setenv(CONFIG_ENV, config.to_json())
    uri = f"s3://ragtune-cache/pytorchjobs/job-{uuid.uuid4().hex[:8]}"
    open_storage(uri, config.storage).write_text("dataset/train.jsonl", '{"instruction": "q"}\n')
    return uri


def _storage(uri: str) -> Storage:
    return open_storage(uri, config_from_json(os.environ[CONFIG_ENV]).storage)


def _pod(uri: str, workdir: Path, rank: int, code: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """One pod's life: node.py with a fresh workdir; returns what the launcher found at start."""
    monkeypatch.setenv("RANK", str(rank))
    argv = ["--work-uri", uri, "--workdir", str(workdir), "--num-nodes", "2", "--checkpoint-sync-s", "60"]
    result = node.main([*argv, "--", sys.executable, "-c", LAUNCHER, str(workdir), str(rank), str(code)])
    assert result == code
    seen: dict[str, object] = json.loads((workdir / "seen.json").read_text())
    return seen


def test_a_rescheduled_job_resumes_from_the_shared_checkpoint(
    work: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # first attempt: both nodes train to checkpoint-2, then are preempted (SIGKILL: 137)
    assert _pod(work, tmp_path / "a0", 0, 137, monkeypatch)["seen"] == []
    assert _pod(work, tmp_path / "a1", 1, 137, monkeypatch)["seen"] == []
    keys = _storage(work).list("checkpoints/")
    assert "checkpoints/checkpoint-2/global_step2/rank0_optim_states.pt" in keys
    assert "checkpoints/checkpoint-2/global_step2/rank1_optim_states.pt" in keys
    assert "checkpoints/ragtune_run.json" in keys

    # rescheduled on other machines: empty disks, yet both start from checkpoint-2 with both shards
    again = _pod(work, tmp_path / "b0", 0, 0, monkeypatch)
    assert again == {"seen": ["checkpoint-2"], "run_file": True}
    restored = tmp_path / "b0" / "out" / "checkpoints" / "checkpoint-2"
    assert sorted(p.name for p in (restored / "global_step2").iterdir()) == [
        "rank0_optim_states.pt",
        "rank1_optim_states.pt",
    ]
    assert not list(restored.glob("_node-*"))  # markers stay on shared storage
    # node 0's finished run pushes outputs but never the checkpoints folder
    assert not [k for k in _storage(work).list("output/") if "checkpoints" in k]


def test_a_checkpoint_only_some_nodes_uploaded_is_not_resumed(
    work: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pod(work, tmp_path / "a0", 0, 137, monkeypatch)
    _pod(work, tmp_path / "a1", 1, 137, monkeypatch)
    _pod(work, tmp_path / "b0", 0, 137, monkeypatch)  # node 0 reached checkpoint-4, node 1 died before
    assert checkpoints.newest_shared(_storage(work), 2) == "checkpoint-2"

    # node 1's pod kept its disk with a newer local checkpoint: shared storage wins, so both agree
    stale = tmp_path / "b1" / "out" / "checkpoints" / "checkpoint-6"
    stale.mkdir(parents=True)
    (stale / TRAINER_STATE).write_text("{}")
    assert _pod(work, tmp_path / "b1", 1, 0, monkeypatch)["seen"] == ["checkpoint-2"]


def test_restore_without_shared_checkpoints_starts_clean(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "shared"))
    local = tmp_path / "ckpt"
    (local / "checkpoint-9").mkdir(parents=True)
    (local / RUN_FILE).write_text("{}")

    assert checkpoints.restore(storage, local, 1) is None
    assert local.is_dir() and not any(local.iterdir())


def test_upload_skips_incomplete_checkpoints_and_remembers_uploaded_ones(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "shared"))
    local = tmp_path / "ckpt"
    (local / "checkpoint-1").mkdir(parents=True)
    (local / "checkpoint-1" / "weights").write_bytes(b"w")  # no trainer_state.json yet
    done: set[str] = set()

    assert checkpoints.upload_new(local, storage, 0, done) == []
    (local / "checkpoint-1" / TRAINER_STATE).write_text("{}")
    assert checkpoints.upload_new(local, storage, 0, done) == ["checkpoint-1"]
    assert checkpoints.upload_new(local, storage, 0, done) == []
    assert storage.list("checkpoints/") == [
        "checkpoints/checkpoint-1/_node-0.done",
        "checkpoints/checkpoint-1/trainer_state.json",
        "checkpoints/checkpoint-1/weights",
    ]


def test_every_node_saves_whole_checkpoints_to_its_own_disk() -> None:
    """Without save_on_each_node only global rank 0 writes trainer_state.json: other nodes never upload."""
    from ragtune.train.runner import training_arguments

    args = training_arguments(RagtuneConfig(), Path("/tmp/x"), "off", has_eval=False, fresh=True)
    assert args.save_on_each_node is True
