"""The packaged SmolLM2 answering for real (loads the model: marked slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.core.cache import ContentCache
from ragtune.core.config import LLMEndpoint
from ragtune.core.llm import ChatRequest, ChatResponse, open_chat_model, parse_json_object
from ragtune.core.llm.local_backend import LocalChat
from ragtune.core.storage import LocalStorage

PREFILL = '{"question": "'


def test_batches_group_by_settings_and_length() -> None:
    model = LocalChat(LLMEndpoint(), batch_size=2)
    requests = [
        ChatRequest(messages=[{"role": "user", "content": "x" * n}], temperature=t, max_tokens=16)
        for n, t in [(50, 0.0), (10, 0.0), (30, 0.0), (20, 0.7), (40, 0.7)]
    ]
    assert model._plan_batches(requests) == [[1, 2], [0], [3, 4]]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_smollm2_answers_with_prefill(tmp_path: Path) -> None:
    cache = ContentCache(LocalStorage(tmp_path / "cache"), "llm")
    model = open_chat_model(LLMEndpoint(temperature=0.0, max_tokens=48), cache=cache, local_threads=1)
    requests = [
        ChatRequest(
            messages=[
                {
                    "role": "user",
                    "content": "Write one exam question about sleep and depression as JSON with the key question.",
                }
            ],
            prefill=PREFILL,
            json_mode=True,
            max_tokens=48,
            temperature=0.0,
        ),
        ChatRequest(
            messages=[{"role": "user", "content": "Ask a question about anxiety. Answer in JSON."}],
            prefill=PREFILL,
            max_tokens=48,
            temperature=0.0,
        ),
    ]
    results = model.chat_many(requests, desc="smollm2")
    for result in results:
        assert isinstance(result, ChatResponse), result
        assert result.text.startswith(PREFILL)
        assert len(result.text) > len(PREFILL)
        assert 0 < result.completion_tokens <= 48
        assert result.prompt_tokens > 10
    # JSON rows stop once the object closes; whether the weak model closes it is its business
    first = results[0]
    assert isinstance(first, ChatResponse)
    json_text = first.text
    parsed = parse_json_object(json_text)
    assert parsed is None or json_text.rstrip().endswith("}")

    again = model.chat_many(requests)  # deterministic at temperature 0, and cached
    assert all(isinstance(r, ChatResponse) and r.cached for r in again)
    assert model.stats["cache_hits"] >= 2
