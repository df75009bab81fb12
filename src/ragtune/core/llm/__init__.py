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
    local_threads: int = 1,
    seed: int = 0,
) -> ChatModel:
    """The chat model for ``endpoint``: its OpenAI-compatible server, or the local SmolLM2 when unset.

    ``cache`` should be a ``ContentCache`` with namespace ``"llm"``. Without a ``ledger`` one is made
    from the endpoint (its prices and budget); pass one to read the spending afterwards.
    """
    ledger = ledger or TokenLedger(stage="llm", endpoint=endpoint)
    if endpoint.base_url:
        from ragtune.core.llm.openai_backend import OpenAIChat

        return OpenAIChat(endpoint, cache=cache, ledger=ledger, seed=seed)
    from ragtune.core.llm.local_backend import LocalChat

    return LocalChat(endpoint, cache=cache, ledger=ledger, threads=local_threads, seed=seed)
