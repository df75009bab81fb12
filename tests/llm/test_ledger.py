from __future__ import annotations

import pytest

from ragtune.core.config import LLMEndpoint
from ragtune.core.errors import RagtuneError
from ragtune.core.llm import BudgetExceeded, TokenLedger


def test_cost_math() -> None:
    endpoint = LLMEndpoint(price_prompt_per_m=2.5, price_completion_per_m=10.0)
    ledger = TokenLedger(stage="synth", endpoint=endpoint)
    ledger.add(1_000, 200)
    ledger.add(3_000, 800)
    ledger.add_cached(5)
    assert ledger.prompt_tokens == 4_000
    assert ledger.completion_tokens == 1_000
    assert ledger.total_tokens == 5_000
    # 4000 * 2.5/1e6 + 1000 * 10/1e6 = 0.01 + 0.01
    assert ledger.cost_usd == pytest.approx(0.02)
    data = ledger.to_dict()
    assert data["stage"] == "synth"
    assert data["calls"] == 2
    assert data["cached_calls"] == 5
    assert data["cost_usd"] == pytest.approx(0.02)
    assert data["exhausted"] is False


def test_usd_budget() -> None:
    ledger = TokenLedger(stage="synth", endpoint=LLMEndpoint(price_prompt_per_m=1.0, budget_usd=0.001))
    ledger.add(999, 0)
    ledger.check()
    assert not ledger.exhausted
    ledger.add(1, 0)  # exactly at the budget counts as reached
    assert ledger.exhausted
    with pytest.raises(BudgetExceeded, match="synth") as info:
        ledger.check()
    assert isinstance(info.value, RagtuneError)


def test_token_budget_and_no_budget() -> None:
    ledger = TokenLedger(stage="judge", endpoint=LLMEndpoint(budget_tokens=100))
    ledger.add(60, 39)
    assert not ledger.exhausted
    ledger.add(0, 1)
    assert ledger.exhausted
    unlimited = TokenLedger(stage="x")
    unlimited.add(10**9, 10**9)
    unlimited.check()
    assert unlimited.cost_usd == 0.0
