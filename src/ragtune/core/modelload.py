"""Model loading shared by the stages: the base model, an adapter's metadata, a tuned adapter.

``train.base_model`` names the base: the packaged SmolLM2 (``smollm2``), a local folder (a PVC mount
in the cluster), an ``s3://`` prefix holding a transformers folder (downloaded once into the model
cache through :mod:`ragtune.core.storage`), or a hub id (fetched with the token from
``train.hf_token_env``). The adapter folder records the base in ``ragtune_adapter.json``, so
:func:`load_tuned_model` needs nothing but the folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ragtune.core.artifacts import ModelDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import ConfigError, InputError
from ragtune.core.fsutil import atomic_write_text
from ragtune.core.models import (
    build_once,
    is_packaged_smollm2,
    load_causal_lm,
    model_download_dir,
    resolve_causal_lm_path,
)
from ragtune.core.records import sha256_hex
from ragtune.core.storage import is_s3_uri, open_storage

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Weights some hub repos ship twice in other formats (Mistral's consolidated.*, Meta's original/).
_HUB_IGNORE = ["consolidated.*", "original/*", "*.pth", "*.gguf", "*.msgpack", "*.h5"]
_COMPLETE_MARKER = ".ragtune-complete"
ADAPTER_META_FILE = ModelDir.ADAPTER_META


class AdapterMeta(BaseModel):
    """``ragtune_adapter.json``: what an adapter was trained from."""

    model_config = ConfigDict(extra="forbid")

    base_model: str
    base_model_path: str
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: list[str]
    qlora: bool
    max_seq_len: int
    dataset_sha256: str
    global_step: int
    dtype: str
    deepspeed: str


def read_adapter_meta(adapter_dir: Path) -> AdapterMeta:
    path = Path(adapter_dir) / ADAPTER_META_FILE
    try:
        return AdapterMeta.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found (not an adapter written by ragtune's train stage)") from None
    except ValueError as err:
        raise InputError(f"{path}: invalid ({err})") from None


def _download_s3(uri: str, config: RagtuneConfig) -> Path:
    """The model folder at ``uri``, downloaded once per machine even when every rank asks at once."""
    target = model_download_dir() / f"s3-{sha256_hex(uri)[:16]}"

    def download(folder: Path) -> None:
        log.info("downloading base model %s into %s (once)", uri, target)
        files = open_storage(uri, config.storage).download_dir("", folder)
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"train.base_model {uri}: no config.json there ({len(files)} files); not a model folder"
            )
        atomic_write_text(folder / _COMPLETE_MARKER, uri)

    return build_once(target, download, lambda folder: (folder / _COMPLETE_MARKER).is_file())


def _download_hub(repo_id: str, token_env: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id, token=os.environ.get(token_env) or None, ignore_patterns=_HUB_IGNORE
        )
    except Exception as err:  # offline, gated without a token, unknown id: one line for the CLI
        raise ConfigError(
            f"train.base_model {repo_id}: cannot fetch from the hub ({type(err).__name__}: {err})"
        ) from None
    return Path(folder)


def resolve_base_model(name: str, config: RagtuneConfig) -> str:
    """A local folder holding the base model ``name`` (see the module doc for what names may be)."""
    if is_packaged_smollm2(name):
        return resolve_causal_lm_path(name)
    if is_s3_uri(name):
        return str(_download_s3(name, config))
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # a path, not "org/name" or "name"
        raise ConfigError(f"train.base_model {name}: no such folder, and not an s3:// prefix or a hub id")
    return str(_download_hub(name, config.train.hf_token_env))


def compute_dtype() -> torch.dtype:
    """bfloat16 where a CUDA GPU supports it, else float32 (CPU training stays in float32)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tuned_model(
    adapter_dir: str | Path, config: RagtuneConfig | None = None, **model_kwargs: Any
) -> tuple[Any, PreTrainedTokenizerBase]:
    """Base model plus the adapter in ``adapter_dir``, in eval mode, and the tokenizer.

    The base comes from the adapter's ``ragtune_adapter.json``; ``config`` supplies storage
    credentials and the hub token variable when the base is an s3:// prefix or a hub id.
    ``model_kwargs`` go to ``from_pretrained`` (e.g. ``device_map``).
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    meta = read_adapter_meta(adapter_dir)
    path = resolve_base_model(meta.base_model, config or RagtuneConfig())
    model_kwargs.setdefault("dtype", compute_dtype())
    base, tokenizer = load_causal_lm(path, **model_kwargs)
    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    model.eval()
    return model, tokenizer


def write_adapter_meta(adapter_dir: Path, meta: AdapterMeta) -> None:
    atomic_write_text(adapter_dir / ADAPTER_META_FILE, meta.model_dump_json(indent=2))


def adapter_fingerprint(adapter_dir: Path) -> str:
    """SHA-256 over every file of an adapter folder (names and bytes): a retrained adapter differs."""
    digest = hashlib.sha256()
    for path in sorted(p for p in adapter_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(adapter_dir).as_posix().encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
