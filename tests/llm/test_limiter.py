"""Adaptive concurrency: the limiter's rules on their own, then the client against a server with a capacity."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from ragtune.core.llm import ChatRequest, ChatResponse, open_chat_model
from ragtune.core.llm.limiter import AdaptiveLimiter
from ragtune.core.llm.openai_backend import OpenAIChat
from tests.llm.fake_openai import FakeOpenAI

pytestmark = pytest.mark.timeout(60)


def ask(text: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}])


async def finish(limiter: AdaptiveLimiter, outcomes: list[str]) -> None:
    """Hold one slot per outcome at once, then release them all with their outcomes."""
    release = asyncio.Event()

    async def one(outcome: str) -> None:
        async with limiter.slot() as slot:
            await release.wait()
            slot.outcome = outcome

    tasks = [asyncio.create_task(one(o)) for o in outcomes]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)


# -- the rules (latency_tolerance=inf where latency is not the point: slot timings are noise here) ---


def test_starts_at_the_ceiling_and_cuts_once_per_overload_episode() -> None:
    limiter = AdaptiveLimiter(16)
    assert limiter.level == 16
    # 12 requests sent together all come back overloaded: one episode, one cut
    asyncio.run(finish(limiter, ["overload"] * 12))
    assert limiter.level == 8
    assert limiter.cuts == 1


def test_cut_returns_to_the_level_that_held() -> None:
    limiter = AdaptiveLimiter(16, probe_interval_s=0.0, latency_tolerance=math.inf)
    asyncio.run(finish(limiter, ["overload"]))  # 16 -> 8
    for _ in range(3):  # three full windows at 8 and 9 and 10: the limit grows one per window
        asyncio.run(finish(limiter, ["ok"] * limiter.level))
    held = limiter.level - 1
    assert held >= 9
    asyncio.run(finish(limiter, ["overload"]))
    assert limiter.level == held  # not halved: the last level that held a full window


def test_no_growth_past_a_recent_overload_until_the_probe_interval() -> None:
    limiter = AdaptiveLimiter(16, probe_interval_s=3600.0, latency_tolerance=math.inf)
    asyncio.run(finish(limiter, ["overload"]))  # at 16 -> 8
    for _ in range(30):
        asyncio.run(finish(limiter, ["ok"] * limiter.level))
    assert limiter.level == 15  # grows up to just below the level that overloaded, not into it


def test_no_growth_while_latency_rises() -> None:
    limiter = AdaptiveLimiter(8, latency_tolerance=2.0)
    asyncio.run(finish(limiter, ["overload"]))  # 8 -> 4
    limiter._baseline = 1e-9  # every later reply looks far slower than the unloaded server: it queues
    for _ in range(10):
        asyncio.run(finish(limiter, ["ok"] * limiter.level))
    assert limiter.level == 4


def test_fixed_limiter_never_moves() -> None:
    limiter = AdaptiveLimiter(8, adaptive=False)
    asyncio.run(finish(limiter, ["overload"] * 8))
    assert limiter.level == 8
    assert limiter.cuts == 0


def test_slots_never_exceed_the_level() -> None:
    limiter = AdaptiveLimiter(3)
    seen: list[int] = []

    async def one() -> None:
        async with limiter.slot() as slot:
            seen.append(limiter.in_flight)
            await asyncio.sleep(0.001)
            slot.outcome = "ok"

    async def many() -> None:
        await asyncio.gather(*(one() for _ in range(30)))

    asyncio.run(many())
    assert max(seen) == 3
    assert limiter.in_flight == 0


# -- against a server with a fixed capacity ------------------------------------------------------


def run_against_capacity(server: FakeOpenAI, requests: int, **endpoint: Any) -> tuple[OpenAIChat, list[Any]]:
    model = open_chat_model(server.endpoint(**endpoint))
    assert isinstance(model, OpenAIChat)
    return model, model.chat_many([ask(f"q{i}") for i in range(requests)])


def test_adaptive_settles_at_the_server_capacity_without_failures(fake_openai: FakeOpenAI) -> None:
    fake_openai.capacity = 4
    fake_openai.latency_s = 0.02
    fake_openai.retry_after_s = 0.05
    model, results = run_against_capacity(fake_openai, 160, concurrency=16, max_retries=8, timeout_s=5.0)
    assert all(isinstance(r, ChatResponse) for r in results)  # zero failed items
    assert model.limiter.level <= 4
    assert model.stats["concurrency"] == model.limiter.level
    rejected = [r for r in fake_openai.chat_requests() if r.action == "over_capacity"]
    late = [r for r in rejected if r.index >= 80]  # the second half of the arrivals
    assert len(late) <= 2, f"{len(late)} rejections after settling"


def test_fixed_overrun_keeps_being_rejected(fake_openai: FakeOpenAI) -> None:
    """The baseline the limiter is for: a fixed concurrency above capacity is rejected all run long."""
    fake_openai.capacity = 4
    fake_openai.latency_s = 0.02
    fake_openai.retry_after_s = 0.05
    model, _ = run_against_capacity(
        fake_openai, 60, concurrency=16, max_retries=8, timeout_s=5.0, adaptive_concurrency=False
    )
    assert model.limiter.level == 16
    late = [r for r in fake_openai.chat_requests() if r.action == "over_capacity" and r.index >= 60]
    assert len(late) > 10


def test_retry_after_pauses_the_whole_endpoint(fake_openai: FakeOpenAI) -> None:
    fake_openai.latency_s = 0.01
    fake_openai.retry_after_s = 0.6
    fake_openai.plan = lambda index, body: "rate_limit" if index == 5 else None
    model, results = run_against_capacity(fake_openai, 30, concurrency=4, timeout_s=5.0)
    assert all(isinstance(r, ChatResponse) for r in results)
    arrivals = fake_openai.chat_requests()
    limited = next(r for r in arrivals if r.action == "rate_limit")
    answered = limited.time + fake_openai.latency_s  # when the 429 left the server
    # requests already on their way when the 429 arrived may still land; then nothing until it expires
    quiet = [r for r in arrivals if answered + 0.15 <= r.time < answered + 0.5]
    assert quiet == [], f"{len(quiet)} requests sent during the Retry-After pause"
    assert model.limiter.pauses == 1


def test_without_the_endpoint_pause_only_the_limited_request_waits(fake_openai: FakeOpenAI) -> None:
    """``pause_endpoint=False`` (the benchmark's baseline): the rest go on, the 429'd one waits its Retry-After."""
    fake_openai.latency_s = 0.01
    fake_openai.retry_after_s = 0.6
    fake_openai.plan = lambda index, body: "rate_limit" if index == 5 else None
    model = open_chat_model(fake_openai.endpoint(concurrency=4, timeout_s=5.0))
    assert isinstance(model, OpenAIChat)
    model.limiter = AdaptiveLimiter(4, adaptive=False, pause_endpoint=False)
    results = model.chat_many([ask(f"q{i}") for i in range(30)])
    assert all(isinstance(r, ChatResponse) for r in results)
    arrivals = fake_openai.chat_requests()
    limited = next(r for r in arrivals if r.action == "rate_limit")
    retried = next(r for r in arrivals if r.index > limited.index and r.body == limited.body)
    assert retried.time - limited.time >= 0.6 - 0.05  # its own Retry-After
    assert [r for r in arrivals if limited.time < r.time < retried.time], "the others were held too"
    assert model.limiter.pauses == 0
