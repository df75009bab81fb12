"""The LLM budget holds across workers (shards) and concurrency, and every paid attempt counts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ragtune.core.config import LLMEndpoint
from ragtune.core.llm import (
    BUDGET_EXHAUSTED,
    ChatRequest,
    ChatResponse,
    LLMFailure,
    TokenLedger,
    open_chat_model,
)
from ragtune.core.llm.ledger import Admission, Reservation, SpendLog
from ragtune.core.storage import LocalStorage
from tests.llm.fake_openai import FakeOpenAI, default_responder, usage_of

pytestmark = pytest.mark.timeout(90)

PRICED = {"price_prompt_per_m": 1e6, "price_completion_per_m": 1e6}  # $1 a token: easy sums


def ask(text: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}])


# -- the ledger on its own -------------------------------------------------------------------------


def test_reservations_hold_the_budget_until_settled() -> None:
    ledger = TokenLedger("synth", LLMEndpoint(budget_tokens=100))
    first = ledger.reserve(10, 50)
    assert isinstance(first, Reservation)
    second = ledger.reserve(10, 50)
    assert isinstance(second, Reservation)
    assert ledger.reserve(10, 50) == Admission.WAIT  # 120 reserved: only the two in flight stand in the way
    ledger.settle(first, 10, 5)
    assert isinstance(ledger.reserve(10, 50), Reservation)  # 15 spent + 60 + 60 reserved... admitted at 75
    ledger.settle(second, 90, 0)
    assert ledger.reserve(1, 1) == Admission.EXHAUSTED  # 105 spent
    assert ledger.calls == 2
    assert ledger.exhausted


def test_free_attempts_release_their_reservation() -> None:
    ledger = TokenLedger("synth", LLMEndpoint(budget_tokens=10))
    held = ledger.reserve(5, 50)
    assert isinstance(held, Reservation)
    assert ledger.reserve(5, 50) == Admission.WAIT
    ledger.settle(held, 0, 0, calls=0)  # a 429: nothing paid
    assert isinstance(ledger.reserve(5, 50), Reservation)
    assert ledger.total_tokens == 0


def test_workers_see_each_others_spend_and_open_reservations(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    endpoint = LLMEndpoint(budget_tokens=100)
    a = TokenLedger("synth", endpoint, shared=SpendLog(storage, "run-1", worker="a"))
    b = TokenLedger("synth", endpoint, shared=SpendLog(storage, "run-1", worker="b"))
    elsewhere = TokenLedger("synth", endpoint, shared=SpendLog(storage, "run-2", worker="c"))
    held = a.reserve(30, 50)  # open: 80 tokens that b must count
    assert isinstance(held, Reservation)
    assert isinstance(b.reserve(10, 10), Reservation)  # 80 counted, under 100
    assert b.reserve(10, 10) == Admission.WAIT  # 80 + b's own 20 in flight reach 100
    a.settle(held, 100, 0)  # settled: its 100 replace the reservation
    assert b.reserve(1, 1) == Admission.EXHAUSTED
    assert isinstance(elsewhere.reserve(1, 1), Reservation)  # another scope, another budget
    assert a.to_dict()["prompt_tokens"] == 100  # each ledger reports its own spend


def test_unreadable_spend_record_is_not_counted(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write_bytes("spend/run/zz-00000000.reserve.json", b"{not json")
    ledger = TokenLedger("synth", LLMEndpoint(budget_tokens=10), shared=SpendLog(storage, "run"))
    assert isinstance(ledger.reserve(1, 1), Reservation)


# -- against the fake server -------------------------------------------------------------------------


def test_budget_holds_across_shards_and_concurrency_16(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """Three shards at concurrency 16 share $300; hangs (timeouts) and garbled bodies are paid too."""
    fake_openai.latency_s = 0.01
    fake_openai.hang_s = 0.6
    fake_openai.rates = {"hang": 0.05, "broken_body": 0.05, "rate_limit": 0.05}
    fake_openai.retry_after_s = 0.01
    budget, shards = 300.0, 3
    endpoint = fake_openai.endpoint(concurrency=16, timeout_s=0.3, max_retries=3, budget_usd=budget, **PRICED)
    storage = LocalStorage(tmp_path / "cache")
    models = [
        open_chat_model(endpoint, ledger=TokenLedger("synth", endpoint, shared=SpendLog(storage, "run")))
        for _ in range(shards)
    ]
    results: dict[int, list[ChatResponse | LLMFailure]] = {}

    def shard(number: int) -> None:
        requests = [ask(f"shard {number} asks question {i}") for i in range(60)]
        results[number] = models[number].chat_many(requests, desc=f"shard {number}")

    threads = [threading.Thread(target=shard, args=(n,)) for n in range(shards)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    received = fake_openai.chat_requests()
    paid = [r for r in received if r.action in ("ok", "hang", "broken_body")]
    answered_cost = sum(
        usage_of(r.body, default_responder(r.body))["total_tokens"] for r in received if r.action == "ok"
    )
    worst_single = max(sum(models[0].worst_case([ask("shard 0 asks question 59")])), 1)
    recorded = sum(m.ledger.cost_usd for m in models)
    assert sum(m.ledger.calls for m in models) == len(paid)  # every paid attempt counted, nothing else
    assert recorded >= answered_cost
    assert recorded <= budget + shards * worst_single  # one request in flight per worker at most
    flat = [r for rs in results.values() for r in rs]
    assert any(isinstance(r, LLMFailure) and r.reason == BUDGET_EXHAUSTED for r in flat)  # it did bind
    assert sum(isinstance(r, ChatResponse) for r in flat) >= 5  # and the budget was used


def test_one_worker_at_concurrency_16_overshoots_by_at_most_one_request(fake_openai: FakeOpenAI) -> None:
    fake_openai.latency_s = 0.02
    endpoint = fake_openai.endpoint(concurrency=16, budget_tokens=60, max_tokens=16)
    model = open_chat_model(endpoint)
    results = model.chat_many([ask(f"tell me about item number {i}") for i in range(64)])
    largest = max(
        usage_of(r.body, default_responder(r.body))["total_tokens"] for r in fake_openai.chat_requests()
    )
    assert model.ledger.total_tokens <= 60 + largest
    assert sum(isinstance(r, ChatResponse) for r in results) == fake_openai.chat_count
    assert model.stats["budget_skipped"] == 64 - fake_openai.chat_count
