"""The generator under the server: each row of one batch stops at its own cap, and the per-token
callback (what streaming reads) sees exactly the tokens the reply is made of."""

from __future__ import annotations

from ragtune.core.llm.base import ChatRequest
from ragtune.core.llm.hf_chat import HFChat
from ragtune.core.modelload import load_tuned_model
from tests.serve.conftest import TinyModel


def test_rows_stop_at_their_own_caps_and_the_callback_sees_every_token(
    tiny_adapter: TinyModel,
) -> None:
    loaded = load_tuned_model(tiny_adapter.adapter_dir)
    chat = HFChat("tiny", lambda: loaded, batch_size=8, threads=1)
    chat.stop_repeats = False
    caps = [2, 5, 9]
    messages = [{"role": "user", "content": "what is panic disorder ?"}]
    requests = [ChatRequest(messages=messages, max_tokens=cap, temperature=0.0) for cap in caps]
    seen: dict[int, list[int]] = {}

    def on_token(row: int, tokens: list[int]) -> None:
        assert len(tokens) == len(seen.get(row, [])) + 1  # one call per new token, in order
        seen[row] = list(tokens)

    replies = chat.generate_batch(requests, on_token=on_token)
    for row, (reply, cap) in enumerate(zip(replies, caps, strict=True)):
        assert 1 <= reply.completion_tokens <= cap
        assert len(seen[row]) in (reply.completion_tokens, reply.completion_tokens + 1)  # + a stop token
    assert len(seen[2]) > caps[0], "the longer rows were cut at the first row's cap"
    # the same greedy prompt: a shorter cap's tokens are the start of a longer one's
    assert seen[0] == seen[2][: len(seen[0])] and seen[1] == seen[2][: len(seen[1])]
