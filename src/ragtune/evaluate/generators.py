"""Who answers the eval questions: the base model, the tuned model, and any extra contenders.

Every answerer is a :class:`~ragtune.core.llm.ChatModel`, so all of them get the same response
cache (namespace ``eval-answers``, keyed by the model's identity, the prompt and the decoding
parameters), failure recording, budget and progress bar from the LLM layer. Base and tuned are a
:class:`HFChat` around a transformers model and tokenizer, loaded lazily — a rerun whose answers
are all cached never loads them — and released once their answers are in. Contenders are
OpenAI-compatible endpoints through :func:`ragtune.core.llm.open_chat_model`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from ragtune.core.cache import ContentCache
from ragtune.core.config import LLMEndpoint, RagtuneConfig
from ragtune.core.llm import ChatModel, TokenLedger, open_chat_model
from ragtune.core.llm.hf_chat import HFChat
from ragtune.core.modelload import adapter_fingerprint
from ragtune.core.records import InstructionItem
from ragtune.core.reports.evaluation import BASE, TUNED

log = logging.getLogger(__name__)

ANSWER_CACHE_NAMESPACE = "eval-answers"


def answer_messages(item: InstructionItem) -> list[dict[str, str]]:
    """The prompt every contender answers: the item's chat messages before the reference answer.

    That is the question alone (no retrieved context), with the dataset's system message if it has
    one, i.e. exactly what the tuned model saw in training.
    """
    prompt: list[dict[str, str]] = []
    for message in item.messages:
        if message.get("role") == "assistant":
            break
        prompt.append({"role": str(message.get("role", "")), "content": str(message.get("content", ""))})
    if not any(m["role"] == "user" for m in prompt):
        prompt = [m for m in prompt if m["role"] == "system"] + [{"role": "user", "content": item.question}]
    return prompt


RAG_INSTRUCTION = "Answer the question using the context below."


def rag_messages(item: InstructionItem, chunks: list[str]) -> list[dict[str, str]]:
    """:func:`answer_messages` with retrieved ``chunks`` put before the question (the RAG contenders)."""
    context = "\n".join(f"[{i}] {chunk}" for i, chunk in enumerate(chunks, 1)) or "(nothing retrieved)"
    prompt = answer_messages(item)
    last = max(i for i, m in enumerate(prompt) if m["role"] == "user")
    prompt[last] = {
        "role": "user",
        "content": f"{RAG_INSTRUCTION}\n\nContext:\n{context}\n\nQuestion: {prompt[last]['content']}",
    }
    return prompt


def _load_base(name: str, config: RagtuneConfig) -> Any:
    """The base model resolved and loaded exactly as training loads it (same folder, same dtype)."""
    from ragtune.core.modelload import compute_dtype, resolve_base_model
    from ragtune.core.models import load_causal_lm

    return load_causal_lm(resolve_base_model(name, config), dtype=compute_dtype())


def _load_tuned(adapter_dir: Path, config: RagtuneConfig) -> Any:
    from ragtune.core.modelload import load_tuned_model

    return load_tuned_model(adapter_dir, config)


def model_answerers(
    config: RagtuneConfig,
    adapter_dir: Path | None,
    cache: ContentCache | None,
    extra_adapters: Mapping[str, Path] | None = None,
) -> tuple[dict[str, ChatModel], list[str]]:
    """``base`` and, given an adapter, ``tuned`` — both loaded lazily — plus warnings.

    Without an adapter the base is ``train.base_model``. With one, it is the base the adapter was
    trained on (its ``ragtune_adapter.json``), so the comparison isolates what tuning changed.
    ``extra_adapters`` (e.g. ``{"champion": path}``) are evaluated too, when trained on that same
    base; an adapter on another base is left out with a warning (its scores would not be comparable).
    """
    from ragtune.core.modelload import read_adapter_meta

    warnings: list[str] = []
    options: dict[str, Any] = {
        "cache": cache,
        "batch_size": config.evaluate.batch_size,
        "threads": config.llm.local_threads,
        "seed": config.run.seed,
    }
    name = config.train.base_model
    tuned: HFChat | None = None
    if adapter_dir is not None:
        adapter_dir = Path(adapter_dir)
        meta = read_adapter_meta(adapter_dir)  # an InputError naming the file if it is not an adapter
        if meta.base_model != name:
            warnings.append(
                f"the adapter was trained on {meta.base_model!r}, not train.base_model {name!r}: "
                f"{meta.base_model!r} is evaluated as the base"
            )
            name = meta.base_model
        identity = f"adapter:{adapter_fingerprint(adapter_dir)[:32]}"
        tuned = HFChat(identity, lambda: _load_tuned(adapter_dir, config), **options)
    answerers: dict[str, ChatModel] = {
        BASE: HFChat(f"hf:{name}", lambda: _load_base(name, config), **options)
    }
    if tuned is not None:
        answerers[TUNED] = tuned
    for label, path in (extra_adapters or {}).items():
        path = Path(path)
        other = read_adapter_meta(path).base_model
        if other != name:
            warnings.append(
                f"{label}: its adapter was trained on {other!r}, not {name!r}: the versions are not"
                f" comparable, so {label} is not evaluated"
            )
            continue
        answerers[label] = HFChat(
            f"adapter:{adapter_fingerprint(path)[:32]}", partial(_load_tuned, path, config), **options
        )
    for warning in warnings:
        log.warning(warning)
    return answerers, warnings


def contender_endpoint(config: RagtuneConfig, index: int) -> LLMEndpoint:
    contender = config.evaluate.contenders[index]
    return LLMEndpoint(
        base_url=contender.base_url,
        model=contender.model,
        api_key_env=contender.api_key_env,
        temperature=0.0,
        max_tokens=config.evaluate.max_new_tokens,
    )


def contender_answerers(config: RagtuneConfig, cache: ContentCache | None) -> dict[str, ChatModel]:
    """The extra OpenAI-compatible contenders of ``evaluate.contenders``, by name, each with its ledger."""
    answerers = {}
    for i, contender in enumerate(config.evaluate.contenders):
        endpoint = contender_endpoint(config, i)
        ledger = TokenLedger(f"evaluate:{contender.name}", endpoint)
        answerers[contender.name] = open_chat_model(
            endpoint, cache=cache, ledger=ledger, seed=config.run.seed
        )
    return answerers


def load_error(answerer: ChatModel) -> str | None:
    """Why a local model could not be loaded (its answers then all failed), else ``None``."""
    error = getattr(answerer, "load_error", None)
    return error if isinstance(error, str) else None


def release(answerer: ChatModel) -> None:
    """Free a local model's memory (no-op for endpoint-backed answerers)."""
    free = getattr(answerer, "release", None)
    if callable(free):
        free()
