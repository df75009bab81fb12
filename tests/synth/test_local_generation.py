"""The local backend's generation loop: stopping rules, the shared prompt prefix, closing a cut-off value."""

from __future__ import annotations

import pytest

from ragtune.core.llm import ChatRequest
from ragtune.core.llm.jsonparse import force_close_string_value, parse_json_object
from ragtune.core.llm.local_backend import repeats_itself, resolve_threads, shared_prefix_length


def test_a_loop_is_detected_but_ordinary_repeated_phrases_are_not() -> None:
    sentence = list(range(100, 115))  # 15 tokens
    assert repeats_itself(sentence + sentence[:12], span=12)
    assert not repeats_itself(sentence + sentence[:11], span=12)
    assert not repeats_itself([1, 2, 3, 1, 2, 3, *range(20, 40)], span=12)  # "of the ... of the"
    assert not repeats_itself([7] * 10, span=12)  # too short to judge


def test_shared_prefix_leaves_every_row_a_token_of_its_own() -> None:
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # identical rows: the last token stays
    assert shared_prefix_length([[1], [1, 2]]) == 0
    assert shared_prefix_length([[4, 2], [5, 2]]) == 0


def test_threads_default_to_the_available_cores() -> None:
    assert resolve_threads(3) == 3
    assert resolve_threads(None) >= 1


@pytest.mark.parametrize(
    "cut", ["Panic attacks peak within", "ends with a backslash \\", 'a quote \\" inside']
)
def test_a_value_cut_off_by_the_token_cap_still_parses(cut: str) -> None:
    prefill = '{"answer": "'
    value = parse_json_object(prefill + force_close_string_value(prefill, cut))
    assert value is not None and value["answer"].startswith(cut[:7])
    # a value the model closed itself is cut where it closed
    assert force_close_string_value(prefill, 'Done." and more') == 'Done."}'


@pytest.mark.slow
def test_the_shared_prefix_and_early_exit_do_not_change_greedy_replies() -> None:
    from ragtune.core.config import LLMEndpoint
    from ragtune.core.llm.local_backend import LocalChat

    instructions = 'Answer in one short sentence. Reply with a JSON object whose only key is "answer".\n\n'
    questions = ["What is insomnia?", "What is a panic attack? Explain briefly.", "Define mania."]
    requests = [
        ChatRequest(
            messages=[{"role": "user", "content": instructions + q}],
            prefill='{"answer": "',
            json_mode=True,
            temperature=0.0,
            max_tokens=24,
        )
        for q in questions
    ]
    chat = LocalChat(LLMEndpoint(model="smollm2", temperature=0.0, max_tokens=24), threads=1)
    together = chat.generate_batch(requests)
    alone = [chat.generate_batch([r])[0] for r in requests]
    assert [r.text for r in together] == [r.text for r in alone]
    assert all(parse_json_object(r.text) is not None for r in together)
    assert [r.prompt_tokens for r in together] == [r.prompt_tokens for r in alone]
