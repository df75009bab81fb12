"""A transformers model loaded on first use answering chat requests: the evaluation's base and tuned
answerers and the registry's served model are this one class, with the same greedy request.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from typing import Any

from ragtune.core.cache import ContentCache
from ragtune.core.llm.base import ChatRequest
from ragtune.core.llm.local_backend import TransformersChat

log = logging.getLogger(__name__)

ModelLoader = Callable[[], tuple[Any, Any]]
"""Returns ``(model, tokenizer)``: a transformers causal LM (or a peft model around one) and its tokenizer."""


def answer_request(messages: list[dict[str, str]], max_new_tokens: int, seed: int) -> ChatRequest:
    """Greedy decoding (temperature 0) for every contender, so answers are reproducible."""
    return ChatRequest(messages=messages, max_tokens=max_new_tokens, temperature=0.0, seed=seed)


class HFChat(TransformersChat):
    """A transformers causal LM answering chat requests (batched greedy generation, from the LLM layer).

    ``identity`` names the exact weights (it is the cache key's model part); ``load`` returns the
    model and tokenizer and runs on first use. Works wherever the model was loaded (CPU by default).
    """

    def __init__(
        self,
        identity: str,
        load: ModelLoader,
        *,
        cache: ContentCache | None = None,
        batch_size: int = 4,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(identity, cache=cache, seed=seed)
        self._load = load
        self._loaded: tuple[Any, Any] | None = None
        self.load_error: str | None = None
        self._lock = threading.Lock()
        self.batch_size = batch_size
        self.concurrency = 1  # one batch at a time: the model is one
        self.threads = threads

    def _model(self) -> tuple[Any, Any]:
        with self._lock:
            if self._loaded is None:
                log.info("loading %s", self.name)
                try:
                    model, tokenizer = self._load()
                except Exception as err:  # kept for the caller: a model that cannot load is fatal
                    self.load_error = f"{type(err).__name__}: {err}"
                    raise
                model.eval()
                tokenizer.padding_side = "left"
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.eos_token
                self._loaded = (model, tokenizer)
            return self._loaded

    def weights(self) -> tuple[Any, Any]:
        """``(model, tokenizer)``, loaded on first use: for scoring by likelihood beside answering."""
        return self._model()

    def release(self) -> None:
        """Drop the model so the next one fits in memory; it is reloaded if asked again."""
        with self._lock:
            self._loaded = None
        gc.collect()
