"""The base model, its LoRA adapter, and loading a tuned adapter back.

``train.base_model`` names the base: the packaged SmolLM2 (``smollm2``), a local folder (a PVC mount
in the cluster), an ``s3://`` prefix holding a transformers folder (downloaded once into the model
cache through :mod:`ragtune.core.storage`), or a hub id (fetched with the token from
``train.hf_token_env``). The adapter folder records the base in ``ragtune_adapter.json``, so
:func:`load_tuned_model` needs nothing but the folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ragtune.core.config import RagtuneConfig, TrainConfig
from ragtune.core.errors import ConfigError, InputError
from ragtune.core.models import (
    default_model_cache,
    is_packaged_smollm2,
    load_causal_lm,
    resolve_causal_lm_path,
)
from ragtune.core.records import sha256_hex
from ragtune.core.storage import is_s3_uri, open_storage
from ragtune.train.report import ADAPTER_META_FILE

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Weights some hub repos ship twice in other formats (Mistral's consolidated.*, Meta's original/).
_HUB_IGNORE = ["consolidated.*", "original/*", "*.pth", "*.gguf", "*.msgpack", "*.h5"]
_COMPLETE_MARKER = ".ragtune-complete"


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
    target = default_model_cache() / f"s3-{sha256_hex(uri)[:16]}"
    if (target / _COMPLETE_MARKER).is_file():
        return target
    log.info("downloading base model %s into %s (once)", uri, target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    files = open_storage(uri, config.storage).download_dir("", tmp)
    if not (tmp / "config.json").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(
            f"train.base_model {uri}: no config.json there ({len(files)} files); not a model folder"
        )
    (tmp / _COMPLETE_MARKER).write_text(uri, encoding="utf-8")
    if (target / _COMPLETE_MARKER).is_file():  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        return target
    shutil.rmtree(target, ignore_errors=True)  # a partial copy left by a crash
    tmp.replace(target)
    return target


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


def check_qlora(train: TrainConfig) -> None:
    """QLoRA needs CUDA and bitsandbytes; say so before anything is loaded."""
    if not train.qlora:
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "train.qlora: 4-bit QLoRA needs a CUDA GPU and none is visible; set train.qlora=false"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("train.qlora: needs the bitsandbytes package (pip install 'ragtune[gpu]')")


def load_base_model(
    path: str, train: TrainConfig, for_training: bool = True
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model in the training dtype (4-bit NF4 under QLoRA) and its tokenizer."""
    dtype = compute_dtype()
    kwargs: dict[str, Any] = {"dtype": dtype}
    if train.qlora and for_training:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,  # lets ZeRO-3 shard the quantized weights
        )
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return load_causal_lm(path, **kwargs)


def add_lora(model: PreTrainedModel, train: TrainConfig) -> Any:
    """Wrap ``model`` in a peft LoRA adapter as configured (only the adapter trains)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if train.qlora:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=train.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=train.lora_r,
        lora_alpha=train.lora_alpha,
        lora_dropout=train.lora_dropout,
        target_modules=list(train.target_modules),
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as err:  # e.g. target modules that the architecture does not have
        raise ConfigError(f"train.target_modules {train.target_modules}: {err}") from None


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


def merge_adapter(adapter_dir: Path, merged_dir: Path, config: RagtuneConfig) -> Path:
    """Write the base with the adapter merged in (a plain transformers folder) to ``merged_dir``.

    The base is loaded unquantized, so a QLoRA adapter merges into full-precision weights.
    """
    model, tokenizer = load_tuned_model(adapter_dir, config)
    merged = model.merge_and_unload()
    tmp = merged_dir.with_name(merged_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(merged_dir, ignore_errors=True)
    tmp.replace(merged_dir)
    return merged_dir


def probe_logits(model: Any, tokenizer: PreTrainedTokenizerBase, text: str) -> torch.Tensor:
    """Logits of ``model`` on ``text`` (eval mode, one thread, so that equal weights give equal bits)."""
    import torch

    threads = torch.get_num_threads()
    was_training = model.training
    model.eval()
    torch.set_num_threads(1)
    try:
        device = next(model.parameters()).device
        inputs = tokenizer(text, return_tensors="pt").to(device)
        with torch.no_grad():
            logits = model(**inputs).logits[0].float().cpu()
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    return logits


def write_adapter_meta(adapter_dir: Path, meta: AdapterMeta) -> None:
    (adapter_dir / ADAPTER_META_FILE).write_text(meta.model_dump_json(indent=2), encoding="utf-8")
