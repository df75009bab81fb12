"""The training side of the model: QLoRA checks, the base in training dtype, the LoRA wrapper, merging.

Loading the base and a tuned adapter for other stages lives in :mod:`ragtune.core.modelload`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.core.config import RagtuneConfig, TrainConfig
from ragtune.core.errors import ConfigError
from ragtune.core.modelload import compute_dtype, load_tuned_model
from ragtune.core.models import load_causal_lm

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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
