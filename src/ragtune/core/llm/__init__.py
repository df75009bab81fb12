"""The LLM layer: one :class:`ChatModel` interface, an OpenAI-compatible and a local backend.

>>> model = open_chat_model(config.llm.generator, cache=cache, ledger=TokenLedger("synth", config.llm.generator))
>>> model.chat_many([ChatRequest(messages=[{"role": "user", "content": "Hi"}])])
"""

from __future__ import annotations

from ragtune.core.cache import ContentCache
from ragtune.core.config import LLMEndpoint
from ragtune.core.llm.base import (
    BUDGET_EXHAUSTED,
    MALFORMED,
    ChatModel,
    ChatRequest,
    ChatResponse,
    LLMCallError,
    LLMFailure,
)
from ragtune.core.llm.jsonparse import parse_json_object
from ragtune.core.llm.ledger import BudgetExceeded, SpendLog, TokenLedger, shared_ledger

__all__ = [
    "BUDGET_EXHAUSTED",
    "MALFORMED",
    "BudgetExceeded",
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "LLMCallError",
    "LLMFailure",
    "SpendLog",
    "TokenLedger",
    "open_chat_model",
    "parse_json_object",
    "shared_ledger",
]


def open_chat_model(
    endpoint: LLMEndpoint,
    cache: ContentCache | None = None,
    ledger: TokenLedger | None = None,
    local_threads: int | None = None,
    seed: int = 0,
    local_batch_size: int | None = None,
    local_stop_repeats: bool = True,
) -> ChatModel:
    """The chat model for ``endpoint``: its OpenAI-compatible server, or the local SmolLM2 when unset.

    ``local_*`` configure the local backend (``llm.local_threads`` etc.; threads unset: one per core).
    ``cache`` should be a ``ContentCache`` with namespace ``"llm"``. Without a ``ledger`` one is made
    from the endpoint (its prices and budget); pass one to read the spending afterwards.
    """
    ledger = ledger or TokenLedger(stage="llm", endpoint=endpoint)
    if endpoint.base_url:
        from ragtune.core.llm.openai_backend import OpenAIChat

        return OpenAIChat(endpoint, cache=cache, ledger=ledger, seed=seed)
    from ragtune.core.llm.local_backend import DEFAULT_BATCH_SIZE, LocalChat

    return LocalChat(
        endpoint,
        cache=cache,
        ledger=ledger,
        threads=local_threads,
        seed=seed,
        batch_size=local_batch_size or DEFAULT_BATCH_SIZE,
        stop_repeats=local_stop_repeats,
    )
