"""An s3:// base model is downloaded once per machine even when every training rank asks at once.

Real S3 protocol (moto); the ranks are forked processes sharing one model cache folder, as the
ranks of one pod share its mounted volume. A slowed-down download widens the race window.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from ragtune.core import modelload
from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.errors import ConfigError
from ragtune.core.models import MODEL_DOWNLOADS_ENV, build_once
from ragtune.core.storage import S3Storage, open_storage
from tests.conftest import S3Server

MODEL_URI = "s3://ragtune-models/tiny-model"


@pytest.fixture
def s3_model(s3_env: S3Server) -> RagtuneConfig:
    config = build_config({"storage": {"endpoint": s3_env.endpoint, "secure": False}})
    storage = open_storage(MODEL_URI, config.storage)
    assert isinstance(storage, S3Storage)
    storage.ensure_bucket()
    storage.write_text("config.json", '{"model_type": "tiny"}')
    storage.write_bytes("model.safetensors", b"\0" * 4096)
    return config


def _rank(config_json: str, out: str) -> None:
    """One rank: resolve the base model and report the folder and the files it saw there."""
    from ragtune.core.config import config_from_json

    folder = modelload._download_s3(MODEL_URI, config_from_json(config_json))
    Path(out).write_text(f"{folder}\n{sorted(p.name for p in folder.iterdir())}")


def test_concurrent_ranks_download_once_and_all_see_the_whole_folder(
    s3_model: RagtuneConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "downloads"
    monkeypatch.setenv(MODEL_DOWNLOADS_ENV, str(cache))
    log = tmp_path / "downloads.log"
    real = S3Storage.download_dir

    def slow_download(self: S3Storage, prefix: str, dest: Path) -> list[Path]:
        with log.open("a") as handle:
            handle.write("download\n")
        files = real(self, prefix, dest)
        time.sleep(0.5)  # every other rank arrives while this one is still copying
        return files

    monkeypatch.setattr(S3Storage, "download_dir", slow_download)
    context = multiprocessing.get_context("fork")  # children inherit the patched download
    outs = [tmp_path / f"rank{i}.txt" for i in range(4)]
    ranks = [context.Process(target=_rank, args=(s3_model.to_json(), str(out))) for out in outs]
    for rank in ranks:
        rank.start()
    for rank in ranks:
        rank.join(60)
        assert rank.exitcode == 0

    assert log.read_text().count("download") == 1
    results = {out.read_text() for out in outs}
    assert len(results) == 1
    folder, files = results.pop().split("\n")
    assert Path(folder).parent == cache
    assert files == str(sorted([modelload._COMPLETE_MARKER, "config.json", "model.safetensors"]))
    assert not [p for p in cache.iterdir() if ".tmp" in p.name]  # no half-built folder left


def test_a_failed_build_leaves_nothing_and_the_next_caller_builds(tmp_path: Path) -> None:
    target = tmp_path / "m"

    def broken(folder: Path) -> None:
        folder.mkdir()
        (folder / "half").write_text("x")
        raise ConfigError("no config.json there")

    with pytest.raises(ConfigError):
        build_once(target, broken, lambda f: (f / "done").is_file())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.lock"]

    def good(folder: Path) -> None:
        folder.mkdir()
        (folder / "done").write_text("ok")

    assert build_once(target, good, lambda f: (f / "done").is_file()) == target
    assert (target / "done").is_file()


def test_an_unwritable_cache_names_the_variable(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")  # like a read-only image path, the folder cannot be created
    with pytest.raises(ConfigError, match=MODEL_DOWNLOADS_ENV):
        build_once(not_a_folder / "m", lambda f: None, lambda f: False)
