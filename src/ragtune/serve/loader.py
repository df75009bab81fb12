"""The registered version a server answers with: resolved in MLflow, fetched once, loaded and checked.

A version is immutable, so its adapter is downloaded once into ``<run.root>/serve/<model>/<version>``
and reused. The base model is the one the adapter records (``ragtune_adapter.json``); when
``serve.base_model`` names the base this server (or deployment) is for, an adapter trained on
another base is refused before anything is loaded, with one line naming both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.core.artifacts import ModelDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import InputError
from ragtune.core.llm.hf_chat import HFChat
from ragtune.core.modelload import AdapterMeta, load_tuned_model, read_adapter_meta, resolve_base_model
from ragtune.registry import ModelVersionInfo, fetch_adapter, resolve_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """What a server answers with: the name clients send, and the version behind it."""

    name: str
    info: ModelVersionInfo
    meta: AdapterMeta
    adapter_dir: Path
    created: int
    context_tokens: int | None = None  # the base model's context window, when its config says


def describe(info: ModelVersionInfo) -> str:
    return f"{info.name} version {info.version}"


def _same_folder(first: str, second: str) -> bool:
    a, b = Path(first).expanduser(), Path(second).expanduser()
    return a.is_dir() and b.is_dir() and a.resolve() == b.resolve()


def check_base(config: RagtuneConfig, meta: AdapterMeta, what: str) -> None:
    """Refuse an adapter trained on another base than ``serve.base_model`` (unset: any base)."""
    expected = config.serve.base_model
    if expected is None or expected == meta.base_model:
        return
    if _same_folder(expected, meta.base_model):
        return
    raise InputError(
        f"{what}: its adapter was trained on base model {meta.base_model!r}, but serve.base_model is"
        f" {expected!r}; refusing to load it on another base"
    )


def fetch_version(
    config: RagtuneConfig, alias: str | None, version: int | None
) -> tuple[ModelVersionInfo, Path]:
    """The version that ``version`` or ``alias`` names and its adapter folder (downloaded once)."""
    info = resolve_version(config, alias or config.serve.alias, version)
    target = Path(config.run.root).expanduser() / "serve" / info.name / str(info.version)
    adapter = target / "adapter"
    if not (adapter / ModelDir.ADAPTER_META).is_file():
        adapter = fetch_adapter(config, info, target)
    return info, adapter


def load_model(config: RagtuneConfig, adapter_dir: Path, meta: AdapterMeta, what: str) -> tuple[Any, Any]:
    """Base plus adapter (peft), eval mode; an adapter that does not fit its base is one line."""
    try:
        return load_tuned_model(adapter_dir, config)
    except (RuntimeError, ValueError, KeyError) as err:  # peft/torch: shape or module mismatch
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        base = resolve_base_model(meta.base_model, config)
        raise InputError(f"{what}: its adapter does not fit base model {base!r}: {first}") from None


def load_served(
    config: RagtuneConfig, alias: str | None = None, version: int | None = None
) -> tuple[ServedModel, HFChat, Any]:
    """Resolve, fetch, check and load the version: what it is, the chat model and its tokenizer."""
    info, adapter_dir = fetch_version(config, alias, version)
    what = describe(info)
    meta = read_adapter_meta(adapter_dir)
    check_base(config, meta, what)
    started = time.monotonic()
    loaded = load_model(config, adapter_dir, meta, what)
    log.info("loaded %s (base %s) in %.1f s", what, meta.base_model, time.monotonic() - started)
    chat = HFChat(
        f"{info.name}/{info.version}",
        lambda: loaded,
        batch_size=config.serve.batch_size,
        threads=config.serve.threads,
        seed=config.run.seed,
    )
    chat.stop_repeats = config.llm.local_stop_repeats
    served = ServedModel(
        name=config.serve.served_model_name or info.name,
        info=info,
        meta=meta,
        adapter_dir=adapter_dir,
        created=int(time.time()),
        context_tokens=getattr(loaded[0].config, "max_position_embeddings", None),
    )
    return served, chat, loaded[1]
