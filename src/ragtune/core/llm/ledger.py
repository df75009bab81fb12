"""Counting the tokens and money a stage spends on an LLM, and stopping it at a budget."""

from __future__ import annotations

import threading
from typing import Any

from ragtune.core.config import LLMEndpoint
from ragtune.core.errors import RagtuneError


class BudgetExceeded(RagtuneError):
    """The stage's LLM budget (``budget_usd`` or ``budget_tokens``) is used up."""


class TokenLedger:
    """Prompt/completion tokens and their cost for one stage, priced by ``endpoint``.

    Prices are per million tokens (``price_prompt_per_m``, ``price_completion_per_m``). The budget
    (``budget_usd``, ``budget_tokens``) is *reached* once spending is at or above it; requests
    already in flight when that happens still finish and are counted, so a run can overshoot by at
    most ``concurrency`` requests. Responses served from the cache cost nothing. Thread-safe.
    """

    def __init__(self, stage: str, endpoint: LLMEndpoint | None = None) -> None:
        self.stage = stage
        self.endpoint = endpoint or LLMEndpoint()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.calls = 0
        self.cached_calls = 0
        self._lock = threading.Lock()

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Record one paid call."""
        with self._lock:
            self.prompt_tokens += max(0, prompt_tokens)
            self.completion_tokens += max(0, completion_tokens)
            self.calls += 1

    def add_cached(self, count: int = 1) -> None:
        """Record responses served from the cache (free)."""
        with self._lock:
            self.cached_calls += count

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_usd(self) -> float:
        return (
            self.prompt_tokens * self.endpoint.price_prompt_per_m
            + self.completion_tokens * self.endpoint.price_completion_per_m
        ) / 1_000_000

    def exhausted_reason(self) -> str | None:
        """Why the budget is reached, or ``None`` while there is budget left."""
        budget_usd, budget_tokens = self.endpoint.budget_usd, self.endpoint.budget_tokens
        if budget_usd is not None and self.cost_usd >= budget_usd:
            return f"cost ${self.cost_usd:.4f} reached budget_usd ${budget_usd:.4f}"
        if budget_tokens is not None and self.total_tokens >= budget_tokens:
            return f"{self.total_tokens} tokens reached budget_tokens {budget_tokens}"
        return None

    @property
    def exhausted(self) -> bool:
        return self.exhausted_reason() is not None

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` if the budget is reached."""
        reason = self.exhausted_reason()
        if reason is not None:
            raise BudgetExceeded(f"{self.stage}: LLM budget exhausted ({reason})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "model": self.endpoint.model,
            "calls": self.calls,
            "cached_calls": self.cached_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "budget_usd": self.endpoint.budget_usd,
            "budget_tokens": self.endpoint.budget_tokens,
            "exhausted": self.exhausted,
        }
