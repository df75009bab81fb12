"""The LLM layer against a real HTTP server speaking the OpenAI protocol, with injected faults."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ragtune.core.cache import ContentCache
from ragtune.core.config import LLMEndpoint
from ragtune.core.llm import (
    BUDGET_EXHAUSTED,
    ChatModel,
    ChatRequest,
    ChatResponse,
    LLMFailure,
    TokenLedger,
    open_chat_model,
)
from ragtune.core.llm.base import REPAIR_SEPARATOR
from ragtune.core.llm.local_backend import LocalChat
from ragtune.core.llm.openai_backend import OpenAIChat, retry_after
from ragtune.core.retry import RETRY_AFTER_MAX_S
from ragtune.core.storage import LocalStorage
from tests.conftest import declare_endpoint
from tests.llm.fake_openai import FakeOpenAI, last_user_message

pytestmark = pytest.mark.timeout(60)


def ask(text: str, **fields: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **fields)


def llm_cache(tmp_path: Path) -> ContentCache:
    return ContentCache(LocalStorage(tmp_path / "cache"), "llm")


class Question(BaseModel):
    question: str
    difficulty: int


# -- basics ------------------------------------------------------------------------------------


def test_open_chat_model_picks_backend(fake_openai: FakeOpenAI) -> None:
    remote = open_chat_model(fake_openai.endpoint(model="gpt-4o"))
    assert isinstance(remote, OpenAIChat)
    assert remote.name == "openai:gpt-4o"
    local = open_chat_model(LLMEndpoint(), local_threads=1)  # not loaded until used
    assert isinstance(local, LocalChat)
    assert local.name == "local:smollm2"
    assert isinstance(local, ChatModel)


def test_order_preserved_and_content_matches(fake_openai: FakeOpenAI) -> None:
    model = open_chat_model(fake_openai.endpoint(concurrency=8))
    requests = [ask(f"question number {i}") for i in range(40)]
    results = model.chat_many(requests, desc="order")
    assert [r.text for r in results if isinstance(r, ChatResponse)] == [
        f"echo: question number {i}" for i in range(40)
    ]
    assert fake_openai.chat_count == 40
    stats = model.stats
    assert stats["requests"] == 40
    assert stats["calls"] == 40
    assert stats["failures"] == 0
    assert model.ledger.calls == 40
    assert model.ledger.prompt_tokens == sum(len(r.messages[0]["content"].split()) for r in requests)


def test_concurrency_is_bounded(fake_openai: FakeOpenAI) -> None:
    fake_openai.latency_s = 0.05
    model = open_chat_model(fake_openai.endpoint(concurrency=4))
    results = model.chat_many([ask(f"q{i}") for i in range(24)])
    assert all(isinstance(r, ChatResponse) for r in results)
    assert fake_openai.max_in_flight == 4


def test_endpoint_defaults_and_request_overrides(fake_openai: FakeOpenAI) -> None:
    model = open_chat_model(fake_openai.endpoint(temperature=0.3, max_tokens=77), seed=5)
    model.chat_many([ask("defaults"), ask("explicit", temperature=0.9, max_tokens=11, seed=1)])
    bodies = {last_user_message(r.body): r.body for r in fake_openai.chat_requests()}
    assert (
        bodies["defaults"]["temperature"],
        bodies["defaults"]["max_tokens"],
        bodies["defaults"]["seed"],
    ) == (0.3, 77, 5)
    assert (
        bodies["explicit"]["temperature"],
        bodies["explicit"]["max_tokens"],
        bodies["explicit"]["seed"],
    ) == (0.9, 11, 1)


def test_identical_requests_are_sent_once(fake_openai: FakeOpenAI) -> None:
    model = open_chat_model(fake_openai.endpoint())
    results = model.chat_many([ask("same"), ask("other"), ask("same")])
    assert fake_openai.chat_count == 2
    assert [r.text for r in results if isinstance(r, ChatResponse)] == [
        "echo: same",
        "echo: other",
        "echo: same",
    ]


def test_prefill_is_an_instruction_not_a_prefix(fake_openai: FakeOpenAI) -> None:
    model = open_chat_model(fake_openai.endpoint())
    (result,) = model.chat_many([ask("hello", prefill='{"question": "')])
    sent = fake_openai.chat_requests()[0].body["messages"]
    assert [m["role"] for m in sent] == ["user"]
    assert 'Start your reply with exactly: {"question": "' in sent[-1]["content"]
    assert isinstance(result, ChatResponse)
    assert result.text.startswith("echo: hello")  # the reply as written, nothing prepended


def test_works_inside_a_running_event_loop(fake_openai: FakeOpenAI) -> None:
    model = open_chat_model(fake_openai.endpoint())

    async def caller() -> list[ChatResponse | LLMFailure]:
        sync_results = model.chat_many([ask("from sync")])
        async_results = await model.achat_many([ask("from async")])
        return sync_results + async_results

    results = asyncio.run(caller())
    assert [r.text for r in results if isinstance(r, ChatResponse)] == ["echo: from sync", "echo: from async"]


def test_overlapping_runs_on_one_model(fake_openai: FakeOpenAI) -> None:
    """Runs gathered in one loop and runs from two threads each keep their own client."""
    fake_openai.latency_s = 0.02
    model = open_chat_model(fake_openai.endpoint(concurrency=4))

    async def two_runs() -> list[list[ChatResponse | LLMFailure]]:
        return list(
            await asyncio.gather(*(model.achat_many([ask(f"{tag} {i}") for i in range(6)]) for tag in "ab"))
        )

    for run in asyncio.run(two_runs()):
        assert all(isinstance(r, ChatResponse) for r in run)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda tag: model.chat_many([ask(f"{tag} {i}") for i in range(6)]), "cd"))
    for tag, run in zip("cd", runs, strict=True):
        assert [r.text for r in run if isinstance(r, ChatResponse)] == [f"echo: {tag} {i}" for i in range(6)]


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fast_backoff")
def test_every_request_ends_as_response_or_failure_under_faults(fake_openai: FakeOpenAI) -> None:
    fake_openai.rates = {
        "rate_limit": 0.15,
        "server_error": 0.15,
        "hang": 0.05,
        "broken_body": 0.05,
        "malformed": 0.05,
        "bad_request": 0.05,
    }
    fake_openai.retry_after_s = 0.01
    fake_openai.hang_s = 3.0
    model = open_chat_model(fake_openai.endpoint(timeout_s=0.3, max_retries=2, concurrency=8))
    requests = [ask(f"item {i}") for i in range(60)]
    results = model.chat_many(requests, desc="faults")

    assert len(results) == len(requests)
    responses = 0
    for i, result in enumerate(results):
        if isinstance(result, ChatResponse):
            responses += 1
            assert result.text in {f"echo: item {i}", "Sure! Here it is: {not json at all"}
        else:
            assert isinstance(result, LLMFailure)
            assert result.reason
    assert responses > 30  # most get through after retries
    stats = model.stats
    assert stats["retries"] > 0
    assert stats["failures"] == len(results) - responses
    # no request issued more often than 1 + max_retries times (plus one response_format fallback)
    per_prompt: dict[str, int] = {}
    for received in fake_openai.chat_requests():
        prompt = last_user_message(received.body)
        per_prompt[prompt] = per_prompt.get(prompt, 0) + 1
    assert max(per_prompt.values()) <= 3
    assert set(per_prompt) == {f"item {i}" for i in range(60)}


def test_retry_after_is_honoured(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["rate_limit"]
    fake_openai.retry_after_s = 1.0
    model = open_chat_model(fake_openai.endpoint(max_retries=2))
    (result,) = model.chat_many([ask("patience")])
    assert isinstance(result, ChatResponse)
    first, second = fake_openai.chat_requests()
    assert (first.action, second.action) == ("rate_limit", "ok")
    assert second.time - first.time >= 1.0  # server-side arrival times
    assert model.stats["retries"] == 1


def test_retry_after_headers() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after": " 0.5 "}) == 0.5
    assert retry_after({}) is None
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert retry_after({"retry-after": "100000"}) == RETRY_AFTER_MAX_S
    assert retry_after({"retry-after": "nan"}) is None
    assert retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25  # OpenAI's, when sent
    assert retry_after({"retry-after-ms": "soon", "retry-after": "3"}) == 3.0


@pytest.mark.usefixtures("fast_backoff")
def test_retries_are_bounded(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["server_error"] * 10
    model = open_chat_model(fake_openai.endpoint(max_retries=3))
    (result,) = model.chat_many([ask("doomed")])
    assert isinstance(result, LLMFailure)
    assert "HTTP 500" in result.reason
    assert result.attempts == 4
    assert fake_openai.chat_count == 4
    assert model.stats["retries"] == 3
    assert model.stats["failures"] == 1


@pytest.mark.usefixtures("fast_backoff")
def test_timeout_then_success(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["hang"]
    fake_openai.hang_s = 3.0
    model = open_chat_model(fake_openai.endpoint(timeout_s=0.3, max_retries=1))
    (result,) = model.chat_many([ask("slow")])
    assert isinstance(result, ChatResponse)
    assert result.text == "echo: slow"
    assert [r.action for r in fake_openai.chat_requests()] == ["hang", "ok"]


def test_timeout_failure_names_the_timeout(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["hang"]
    fake_openai.hang_s = 3.0
    model = open_chat_model(fake_openai.endpoint(timeout_s=0.3, max_retries=0))
    (result,) = model.chat_many([ask("slow")])
    assert isinstance(result, LLMFailure)
    assert "timeout" in result.reason


def test_other_4xx_fail_at_once(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["not_found", "bad_request"]
    model = open_chat_model(fake_openai.endpoint(max_retries=5, concurrency=1))
    first, second, third = model.chat_many([ask("a"), ask("b"), ask("c")])
    assert isinstance(first, LLMFailure)
    assert first.reason.startswith("HTTP 404")
    assert "not found" in first.reason
    assert isinstance(second, LLMFailure)
    assert second.reason.startswith("HTTP 400")
    assert isinstance(third, ChatResponse)
    assert fake_openai.chat_count == 3
    assert model.stats["retries"] == 0


@pytest.mark.usefixtures("fast_backoff")
def test_unreachable_server_fails_cleanly() -> None:
    server = FakeOpenAI().start()
    endpoint = server.endpoint(max_retries=1, timeout_s=0.5)
    server.stop()  # nothing listens there any more
    model = open_chat_model(endpoint)
    results = model.chat_many([ask("anyone?"), ask("hello?")])
    assert all(isinstance(r, LLMFailure) and "connection error" in r.reason for r in results)


def test_odd_replies(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["no_choices", "no_usage"]
    model = open_chat_model(fake_openai.endpoint(concurrency=1))
    first, second = model.chat_many([ask("a"), ask("four words long prompt")])
    assert isinstance(first, LLMFailure)
    assert "no choices" in first.reason
    assert fake_openai.chat_count == 2  # a well-formed reply without choices is not retried
    assert isinstance(second, ChatResponse)
    assert second.text == "echo: four words long prompt"
    assert second.prompt_tokens > 0  # estimated when the server reports no usage
    assert second.completion_tokens > 0


def test_response_format_dropped_when_refused(fake_openai: FakeOpenAI) -> None:
    fake_openai.plan = lambda index, body: "reject_response_format"
    model = open_chat_model(fake_openai.endpoint(concurrency=1))
    first, second = model.chat_many([ask("json please", json_mode=True), ask("again", json_mode=True)])
    assert isinstance(first, ChatResponse)
    assert isinstance(second, ChatResponse)
    formats = [r.body.get("response_format") for r in fake_openai.chat_requests()]
    assert formats == [{"type": "json_object"}, None, None]  # refused once, then not offered again


def test_api_key_sent_but_never_logged(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-test-very-secret-value"
    monkeypatch.setenv("RAGTUNE_TEST_FAKE_OPENAI_KEY", secret)
    declare_endpoint(monkeypatch, str(fake_openai.endpoint().base_url), "RAGTUNE_TEST_FAKE_OPENAI_KEY")
    fake_openai.script = ["not_found"]
    model = open_chat_model(fake_openai.endpoint())
    with caplog.at_level(logging.DEBUG):
        results = model.chat_many([ask("a"), ask("b")])
    assert any(isinstance(r, LLMFailure) for r in results)
    assert secret not in caplog.text
    assert secret not in repr(model)
    assert all(secret not in json.dumps(r.model_dump()) for r in results)


# -- structured output ---------------------------------------------------------------------------

REPAIR_MARKER = "That reply is not valid"


def repair_aware(first: str, second: str) -> Any:
    def respond(body: dict[str, Any]) -> str:
        return second if REPAIR_MARKER in last_user_message(body) else first

    return respond


def test_structured_success_without_repair(fake_openai: FakeOpenAI) -> None:
    model = open_chat_model(fake_openai.endpoint())
    results = model.structured_many([ask("a question about sleep"), ask("one about mood")], Question)
    assert all(isinstance(r, Question) for r in results)
    body = fake_openai.chat_requests()[0].body
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["question", "difficulty"]
    assert "JSON object" in last_user_message(body)  # the prompt never said JSON, so a hint was added
    assert model.stats["repairs"] == 0


def test_structured_prompt_left_alone_when_it_asks_for_json(fake_openai: FakeOpenAI) -> None:
    model = open_chat_model(fake_openai.endpoint())
    model.structured_many([ask("Return JSON with question and difficulty.")], Question)
    assert (
        last_user_message(fake_openai.chat_requests()[0].body) == "Return JSON with question and difficulty."
    )


def test_structured_repair_retry_succeeds(fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = repair_aware(
        "Here you go: {question: oops", '```json\n{"question": "What helps sleep?", "difficulty": 2}\n```'
    )
    model = open_chat_model(fake_openai.endpoint())
    (result,) = model.structured_many([ask("Write JSON.")], Question)
    assert result == Question(question="What helps sleep?", difficulty=2)
    _, repair = fake_openai.chat_requests()
    messages = repair.body["messages"]
    assert messages[-2] == {"role": "assistant", "content": "Here you go: {question: oops"}
    assert "no complete JSON object" in messages[-1]["content"]
    assert model.stats["repairs"] == 1


def test_structured_repair_carries_the_validation_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = repair_aware(
        '{"question": "Q?", "difficulty": "hard"}', '{"question": "Q?", "difficulty": 3}'
    )
    model = open_chat_model(fake_openai.endpoint())
    (result,) = model.structured_many([ask("Write JSON.")], Question)
    assert result == Question(question="Q?", difficulty=3)
    repair = fake_openai.chat_requests()[1]
    assert "difficulty" in last_user_message(repair.body)


def test_structured_gives_up_after_one_repair(fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = lambda body: "I would rather write prose."
    model = open_chat_model(fake_openai.endpoint())
    results = model.structured_many([ask("Write JSON."), ask("Write JSON too.")], Question)
    for result in results:
        assert isinstance(result, LLMFailure)
        assert result.reason.startswith("malformed output: ")
        assert result.attempts == 2
    assert fake_openai.chat_count == 4  # one try and one repair each, no more
    assert model.stats["repairs"] == 2
    assert model.stats["malformed"] == 2


def test_structured_gives_up_with_both_replies_on_the_record(fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = repair_aware("I would rather write prose.", "Still prose.")
    model = open_chat_model(fake_openai.endpoint())
    (result,) = model.structured_many([ask("Write JSON.")], Question)
    assert isinstance(result, LLMFailure)
    assert result.raw == f"I would rather write prose.{REPAIR_SEPARATOR}Still prose."


def _lenient_question(text: str) -> Question | None:
    """A reader for the prose form 'Q: <question> (difficulty N)', None for anything else."""
    match = re.fullmatch(r"Q: (.+) \(difficulty (\d)\)", text.strip())
    return Question(question=match.group(1), difficulty=int(match.group(2))) if match else None


def test_a_lenient_reader_saves_the_repair_request(fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = repair_aware(
        "Q: What helps sleep? (difficulty 2)", '{"question": "x", "difficulty": 1}'
    )
    model = open_chat_model(fake_openai.endpoint())
    (result,) = model.structured_many([ask("Write JSON.")], Question, lenient=_lenient_question)
    assert result == Question(question="What helps sleep?", difficulty=2)
    assert fake_openai.chat_count == 1 and model.stats["repairs"] == 0


def test_a_lenient_reader_that_finds_nothing_still_gets_one_repair(fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = repair_aware("no idea", "Q: What helps mood? (difficulty 3)")
    model = open_chat_model(fake_openai.endpoint())
    (result,) = model.structured_many([ask("Write JSON.")], Question, lenient=_lenient_question)
    assert result == Question(question="What helps mood?", difficulty=3)  # the repair read leniently
    assert fake_openai.chat_count == 2 and model.stats["repairs"] == 1


def test_structured_transport_failure_is_kept(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = ["not_found"]
    model = open_chat_model(fake_openai.endpoint(concurrency=1))
    first, second = model.structured_many([ask("Write JSON."), ask("Write JSON again.")], Question)
    assert isinstance(first, LLMFailure)
    assert first.reason.startswith("HTTP 404")
    assert isinstance(second, Question)


# -- cache ---------------------------------------------------------------------------------------


def test_second_run_is_served_from_cache(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    requests = [ask(f"cached {i}") for i in range(12)]
    endpoint = fake_openai.endpoint(price_prompt_per_m=1.0, price_completion_per_m=1.0)
    first_run = open_chat_model(endpoint, cache=llm_cache(tmp_path))
    first = first_run.chat_many(requests)
    assert fake_openai.chat_count == 12
    assert not any(isinstance(r, ChatResponse) and r.cached for r in first)

    ledger = TokenLedger(stage="rerun", endpoint=endpoint)
    second_run = open_chat_model(endpoint, cache=llm_cache(tmp_path), ledger=ledger)
    second = second_run.chat_many(requests)
    assert fake_openai.chat_count == 12  # zero new requests
    assert all(isinstance(r, ChatResponse) and r.cached for r in second)
    assert [r.text for r in second if isinstance(r, ChatResponse)] == [
        r.text for r in first if isinstance(r, ChatResponse)
    ]
    assert second_run.stats["cache_hits"] == 12
    assert second_run.stats["cache_misses"] == 0
    assert second_run.stats["calls"] == 0
    assert ledger.total_tokens == 0
    assert ledger.cost_usd == 0.0
    assert ledger.cached_calls == 12


def test_rounds_and_busy_time_count_only_runs_that_sent_requests(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.latency_s = 0.05
    model = open_chat_model(fake_openai.endpoint(concurrency=4), cache=llm_cache(tmp_path))
    model.chat_many([ask(f"round one {i}") for i in range(4)])
    model.chat_many([ask(f"round two {i}") for i in range(4)])
    assert model.stats["rounds"] == 2
    # two rounds, each at least one server latency: the wait a rerun cannot shorten
    assert model.stats["busy_ms"] >= 2 * 50
    busy = model.stats["busy_ms"]

    model.chat_many([ask(f"round one {i}") for i in range(4)])  # all cached: no round trip
    assert model.stats["rounds"] == 2
    assert model.stats["busy_ms"] == busy


def test_cache_key_covers_the_request(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    model = open_chat_model(fake_openai.endpoint(), cache=llm_cache(tmp_path))
    variants = [
        ask("q"),
        ask("q", temperature=0.5),
        ask("q", max_tokens=10),
        ask("q", seed=7),
        ask("q", prefill="{"),
        ask("q", json_mode=True),
    ]
    model.chat_many(variants)
    assert fake_openai.chat_count == len(variants)
    other = open_chat_model(fake_openai.endpoint(model="other-model"), cache=llm_cache(tmp_path))
    other.chat_many([ask("q")])
    assert fake_openai.chat_count == len(variants) + 1


def test_each_response_is_cached_as_it_arrives(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """With one request in flight, every request finds all earlier answers already on disk."""
    cache_dir = tmp_path / "cache" / "llm"
    entries_seen: list[int] = []

    def respond(body: dict[str, Any]) -> str:
        entries_seen.append(sum(1 for p in cache_dir.rglob("*") if p.is_file()))
        return "ok"

    fake_openai.responder = respond
    model = open_chat_model(fake_openai.endpoint(concurrency=1), cache=llm_cache(tmp_path))
    model.chat_many([ask(f"r{i}") for i in range(5)])
    assert entries_seen == [0, 1, 2, 3, 4]


def test_failures_are_not_cached_and_rerun_only_repeats_them(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.plan = lambda index, body: (
        "not_found" if last_user_message(body).endswith(("1", "3")) else None
    )
    requests = [ask(f"doc {i}") for i in range(5)]
    first = open_chat_model(fake_openai.endpoint(), cache=llm_cache(tmp_path)).chat_many(requests)
    assert [isinstance(r, LLMFailure) for r in first] == [False, True, False, True, False]
    fake_openai.plan = None
    fake_openai.reset()
    second = open_chat_model(fake_openai.endpoint(), cache=llm_cache(tmp_path)).chat_many(requests)
    assert sorted(last_user_message(r.body) for r in fake_openai.chat_requests()) == ["doc 1", "doc 3"]
    assert [r.cached for r in second if isinstance(r, ChatResponse)] == [True, False, True, False, True]


def test_unreadable_cache_entry_is_a_miss(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    model = open_chat_model(fake_openai.endpoint(), cache=llm_cache(tmp_path))
    model.chat_many([ask("x")])
    for path in (tmp_path / "cache" / "llm").rglob("*"):
        if path.is_file():
            path.write_text("{corrupt")
    again = open_chat_model(fake_openai.endpoint(), cache=llm_cache(tmp_path))
    (result,) = again.chat_many([ask("x")])
    assert isinstance(result, ChatResponse)
    assert not result.cached
    assert fake_openai.chat_count == 2


# -- budget --------------------------------------------------------------------------------------


def test_budget_stops_new_requests(fake_openai: FakeOpenAI) -> None:
    # each request: 2 prompt words + 3 reply words ("echo: word N") = 5 tokens
    endpoint = fake_openai.endpoint(concurrency=1, budget_tokens=12)
    model = open_chat_model(endpoint)
    results = model.chat_many([ask(f"word {i}") for i in range(10)])
    answered = [r for r in results if isinstance(r, ChatResponse)]
    stopped = [r for r in results if isinstance(r, LLMFailure)]
    assert len(answered) == 3  # 5, 10, 15 tokens: the third crosses the budget
    assert all(r.reason == BUDGET_EXHAUSTED for r in stopped)
    assert isinstance(results[0], ChatResponse)
    assert isinstance(results[-1], LLMFailure)
    assert fake_openai.chat_count == 3
    assert model.stats["budget_skipped"] == 7
    assert model.ledger.exhausted


def test_budget_still_serves_cached(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    endpoint = fake_openai.endpoint(
        price_prompt_per_m=1000.0, price_completion_per_m=1000.0, budget_usd=0.001
    )
    requests = [ask(f"p {i}") for i in range(6)]
    unlimited = endpoint.model_copy(update={"budget_usd": None})
    open_chat_model(unlimited, cache=llm_cache(tmp_path)).chat_many(requests[:2])
    spent = TokenLedger(stage="synth", endpoint=endpoint)
    spent.add(10, 0)  # $0.01: already over budget
    model = open_chat_model(endpoint, cache=llm_cache(tmp_path), ledger=spent)
    results = model.chat_many(requests)
    assert [isinstance(r, ChatResponse) and r.cached for r in results[:2]] == [True, True]
    assert all(isinstance(r, LLMFailure) and r.reason == BUDGET_EXHAUSTED for r in results[2:])
    assert fake_openai.chat_count == 2  # nothing new sent
