"""``ragtune serve`` over real HTTP: the openai client against uvicorn on 127.0.0.1, a version from a real
MLflow server. Plain, streaming, 8 concurrent clients, malformed requests, and refusals at load."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from ragtune.core.config import build_config
from ragtune.core.errors import InputError
from ragtune.core.llm.base import ChatRequest, ChatResponse
from ragtune.evaluate.generators import contender_answerers
from ragtune.serve import build_server
from tests.conftest import free_port
from tests.serve.conftest import ALIAS, Registered, Running, serve_config

REPO = Path(__file__).resolve().parents[2]

QUESTION = [{"role": "user", "content": "what is panic disorder ?"}]


def _client(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.url, api_key="unused", max_retries=0, timeout=60)


def test_models_lists_the_served_version(running: Running, registered: Registered) -> None:
    models = _client(running).models.list()
    assert [m.id for m in models.data] == [registered.info.name]
    health = httpx.get(running.url.removesuffix("/v1") + "/health", timeout=10).json()
    assert health["version"] == registered.info.version


def test_plain_completion_answers_with_usage(running: Running) -> None:
    reply = _client(running).chat.completions.create(
        model=running.served.name, messages=QUESTION, max_tokens=5, temperature=0
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 5
    assert reply.usage.prompt_tokens > 0
    assert choice.finish_reason == ("length" if reply.usage.completion_tokens == 5 else "stop")
    assert reply.model == running.served.name


def test_streaming_sends_the_same_text_as_a_plain_reply(running: Running) -> None:
    client = _client(running)
    plain = client.chat.completions.create(
        model=running.served.name, messages=QUESTION, max_tokens=6, temperature=0
    )
    events = list(
        client.chat.completions.create(
            model=running.served.name,
            messages=QUESTION,
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    assert text == plain.choices[0].message.content
    finishes = [e.choices[0].finish_reason for e in events if e.choices and e.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert events[-1].usage is not None
    assert events[-1].usage.completion_tokens == plain.usage.completion_tokens  # type: ignore[union-attr]
    assert len([e for e in events if e.choices and e.choices[0].delta.content]) >= 2  # streamed, not one blob


def test_eight_concurrent_clients_are_batched(running: Running) -> None:
    engine = running.server.config.app.state.engine
    before = len(engine.batches)
    questions = [
        f"what is the treatment of {w} ?" for w in ("anxiety", "panic", "depression", "disorder")
    ] * 2

    async def ask_all() -> list[str]:
        client = openai.AsyncOpenAI(base_url=running.url, api_key="unused", max_retries=0, timeout=120)
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=running.served.name,
                    messages=[{"role": "user", "content": q}],
                    max_tokens=cap,
                    temperature=0,
                )
                for q, cap in zip(questions, caps, strict=True)
            )
        )
        await client.close()
        return [r.usage.completion_tokens if r.usage else -1 for r in replies]

    caps = [3, 4, 5, 6, 7, 8, 3, 4]  # one batch, each row stopping at its own cap
    used = asyncio.run(ask_all())
    assert all(1 <= n <= cap for n, cap in zip(used, caps, strict=True)), (used, caps)
    sizes = engine.batches[before:]
    assert sum(sizes) == 8
    assert max(sizes) > 1, f"every request decoded alone: {sizes}"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"model": "model-serve"}, 400, "messages: Field required"),
        ({"model": "model-serve", "messages": []}, 400, "messages: List should have at least 1 item"),
        ({"model": "model-serve", "messages": [{"role": "robot", "content": "hi"}]}, 400, "messages.0.role"),
        ({"model": "model-serve", "messages": QUESTION, "tools": []}, 400, "tools: unknown field"),
        ({"model": "model-serve", "messages": QUESTION, "max_tokens": 0}, 400, "max_tokens"),
        ({"model": "model-serve", "messages": QUESTION, "max_tokens": 65}, 400, "serve.max_tokens_limit"),
        ({"model": "model-serve", "messages": QUESTION, "n": 2}, 400, "only n=1"),
        ({"model": "model-serve", "messages": QUESTION, "stop": ["."]}, 400, "stop sequences"),
        ({"model": "gpt-4o", "messages": QUESTION}, 404, "'gpt-4o' is not served here"),
        (
            {"model": "model-serve", "messages": [{"role": "user", "content": "anxiety " * 300}]},
            400,
            "exceeds the model's context of 256 tokens",
        ),
    ],
)
def test_malformed_requests_get_a_4xx_with_the_reason(
    running: Running, body: dict[str, object], status: int, reason: str
) -> None:
    response = httpx.post(f"{running.url}/chat/completions", json=body, timeout=30)
    assert response.status_code == status
    assert reason in response.json()["error"]["message"]


def test_the_openai_client_sees_the_reason(running: Running) -> None:
    with pytest.raises(openai.BadRequestError, match="temperature"):
        _client(running).chat.completions.create(model=running.served.name, messages=QUESTION, temperature=5)


def test_invalid_json_is_a_400(running: Running) -> None:
    response = httpx.post(
        f"{running.url}/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


def test_an_adapter_on_another_base_is_refused_at_load(registered: Registered, tmp_path: Path) -> None:
    other = tmp_path / "other-base"
    shutil.copytree(Path(registered.info.tags["ragtune.base_model"]), other)
    config = serve_config(
        tmp_path / "runs", registered.server.url, registered.info.name, base_model=str(other)
    )
    with pytest.raises(InputError) as caught:
        build_server(config, alias=ALIAS, port=1)
    message = str(caught.value)
    assert "\n" not in message
    assert registered.info.tags["ragtune.base_model"] in message and str(other) in message


def test_a_missing_alias_names_model_and_alias(registered: Registered, tmp_path: Path) -> None:
    config = serve_config(tmp_path / "runs", registered.server.url, registered.info.name)
    with pytest.raises(InputError, match="'model-serve' has no version with alias 'nobody'"):
        build_server(config, alias="nobody", port=1)


def test_an_evaluation_contender_can_be_the_served_model(
    running: Running, registered: Registered, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The evaluate stage's contender answerer (openai backend, retries, concurrency) against ragtune serve."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server needs no key
    config = build_config(
        {
            "evaluate": {
                "max_new_tokens": 4,
                "contenders": [{"name": "deployed", "base_url": running.url, "model": registered.info.name}],
            }
        }
    )
    answerer = contender_answerers(config, cache=None)["deployed"]
    requests = [
        ChatRequest(messages=[{"role": "user", "content": q}], max_tokens=4, temperature=0.0)
        for q in ("what is panic disorder ?", "what is the treatment of anxiety ?", "what are the symptoms ?")
    ]
    replies = answerer.chat_many(requests)
    assert all(isinstance(r, ChatResponse) and 1 <= r.completion_tokens <= 4 for r in replies), replies


def test_the_cli_serves_until_stopped(registered: Registered, tmp_path: Path) -> None:
    """``ragtune serve`` itself, in a child process: loads at start, answers the openai client."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "RAGTUNE_REGISTRY__TRACKING_URI": registered.server.url,
        "RAGTUNE_REGISTRY__MODEL_NAME": registered.info.name,
        "RAGTUNE_RUN__ROOT": str(tmp_path / "runs"),
        "RAGTUNE_SERVE__THREADS": "1",
    }
    command = [sys.executable, "-m", "ragtune.cli", "serve", "--alias", ALIAS, "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0, timeout=30)
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                models = client.models.list()
                break
            except openai.APIConnectionError:
                assert time.monotonic() < deadline, "ragtune serve did not listen within 180 s"
                time.sleep(0.5)
        assert [m.id for m in models.data] == [registered.info.name]
        reply = client.chat.completions.create(
            model=registered.info.name, messages=QUESTION, max_tokens=3, temperature=0
        )
        assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 3
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode in (0, -signal.SIGTERM)
