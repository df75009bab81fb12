"""What the train stage decides before any model is loaded: errors, DeepSpeed stage, checkpoints, base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ragtune.core.config import StorageConfig, build_config
from ragtune.core.errors import ConfigError, InputError, RagtuneError
from ragtune.core.modelload import resolve_base_model
from ragtune.core.storage import open_storage
from ragtune.train import run_train
from ragtune.train.distributed import deepspeed_config_path, launch_command, resolve_stage
from ragtune.train.runner import RUN_FILE, resumable_checkpoint
from tests.conftest import S3Server
from tests.train.helpers import small_config

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


@no_cuda
def test_qlora_without_cuda_is_a_clear_error(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(RagtuneError, match=r"train\.qlora: .*needs a CUDA GPU"):
        run_train(small_config(qlora=True), tiny_dataset, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was written or loaded


def test_missing_train_split_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"train\.jsonl: file not found"):
        run_train(small_config(deepspeed="off"), tmp_path, tmp_path / "out")


def test_bad_train_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.max_steps"):
        build_config({"train": {"max_steps": 0}})
    with pytest.raises(ConfigError, match=r"train\.deepspeed"):
        build_config({"train": {"deepspeed": "zero1"}})


@no_cuda
def test_deepspeed_auto_is_off_on_cpu_and_explicit_stages_stay() -> None:
    assert resolve_stage(small_config().train) == "off"
    assert resolve_stage(small_config(deepspeed="zero2").train) == "zero2"
    assert resolve_stage(small_config(deepspeed="zero3").train) == "zero3"


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_packaged_deepspeed_configs_leave_trainer_values_to_auto(stage: str) -> None:
    ds = json.loads(deepspeed_config_path(stage).read_text())  # type: ignore[arg-type]
    assert ds["zero_optimization"]["stage"] == int(stage[-1])
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert ds[key] == "auto"
    assert ds["bf16"]["enabled"] == "auto"
    # The Trainer's AdamW and schedule, as in-process training uses: no op to compile, same LR curve.
    assert "optimizer" not in ds and "scheduler" not in ds


def test_launcher_command_runs_our_module_with_its_arguments(tmp_path: Path) -> None:
    command = launch_command(tmp_path / "c.json", tmp_path / "d", tmp_path / "o", "zero2", 2, "probe text")
    assert command[1:4] == ["-m", "deepspeed.launcher.runner", "--num_gpus"] and command[4] == "2"
    module_at = command.index("--module")
    assert command[module_at + 1] == "ragtune.train.launch"
    assert command[-6:] == ["--out", str(tmp_path / "o"), "--stage", "zero2", "--probe", "probe text"]
    # With CUDA_VISIBLE_DEVICES set, its first devices are named (--num_gpus would make it ignored).
    chosen = launch_command(tmp_path / "c.json", tmp_path / "d", tmp_path / "o", "zero2", 2, None, "4,5,6")
    assert chosen[3:5] == ["--include", "localhost:4,5"] and "--num_gpus" not in chosen


def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_resume_picks_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    identity = {"dataset_sha256": "abc", "base_model": "smollm2"}
    assert resumable_checkpoint(tmp_path, identity) is None
    _checkpoint(tmp_path, 2)
    newest = _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 12, complete=False)  # a crash while saving
    (tmp_path / RUN_FILE).write_text(json.dumps(identity))
    assert resumable_checkpoint(tmp_path, identity) == newest


def test_checkpoints_of_another_dataset_are_not_resumed(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 4)
    (tmp_path / RUN_FILE).write_text(json.dumps({"dataset_sha256": "old", "base_model": "smollm2"}))
    with pytest.raises(ConfigError, match="dataset_sha256 changed"):
        resumable_checkpoint(tmp_path, {"dataset_sha256": "new", "base_model": "smollm2"})


def test_base_model_names(tmp_path: Path) -> None:
    config = small_config()
    assert resolve_base_model(str(tmp_path), config) == str(tmp_path)  # a folder (PVC mount)
    with pytest.raises(ConfigError, match="no such folder"):
        resolve_base_model("/nowhere/model", config)
    with pytest.raises(ConfigError, match="cannot fetch from the hub"):  # HF_HUB_OFFLINE=1, not cached
        resolve_base_model("ragtune-tests/no-such-model", config)


def test_s3_base_model_is_downloaded_once_into_the_model_cache(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(tmp_path / "cache"))
    storage_config = StorageConfig(endpoint=s3_env.endpoint, secure=False, region="us-east-1")
    bucket = open_storage("s3://models", storage_config)
    bucket.ensure_bucket()  # type: ignore[attr-defined]
    remote = open_storage("s3://models/mistral-7b", storage_config)
    remote.write_text("config.json", '{"model_type": "mistral"}')
    remote.write_text("tokenizer/tokenizer.json", "{}")
    config = build_config(
        {"storage": storage_config.model_dump(), "train": {"base_model": "s3://models/mistral-7b"}}
    )

    folder = Path(resolve_base_model(config.train.base_model, config))
    assert folder.parent == tmp_path / "cache"
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "mistral"}
    assert (folder / "tokenizer" / "tokenizer.json").is_file()
    remote.write_text("config.json", '{"model_type": "changed"}')
    assert resolve_base_model(config.train.base_model, config) == str(folder)  # cached, not fetched again
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "mistral"}

    open_storage("s3://models/empty", storage_config).write_text("README.md", "no model here")
    with pytest.raises(ConfigError, match=r"no config\.json"):
        resolve_base_model("s3://models/empty", config)
