"""Loss masking and padding with the real SmolLM2 tokenizer (no model weights are loaded)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ragtune.core.models import resolve_causal_lm_path
from ragtune.train.data import IGNORE_INDEX, SkipItem, encode_conversation, encode_items, make_collator
from tests.train.helpers import make_item

SYSTEM = {"role": "system", "content": "Answer from the psychiatry guideline."}
USER = {"role": "user", "content": "What is lithium?"}
ANSWER = "According to the guideline, lithium is a mood stabilizer."


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_causal_lm_path("smollm2"))
    tok.pad_token = tok.pad_token or tok.eos_token
    return tok


def _labelled(example: dict[str, list[int]]) -> list[int]:
    return [label for label in example["labels"] if label != IGNORE_INDEX]


def test_labels_are_ignored_exactly_outside_the_answer(tokenizer: Any) -> None:
    messages = [SYSTEM, USER, {"role": "assistant", "content": ANSWER}]
    example = encode_conversation(tokenizer, messages, max_seq_len=128)
    ids, labels = example["input_ids"], example["labels"]
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])

    assert tokenizer.decode(ids[:start]) == prompt  # system, user and the assistant header
    assert labels[:start] == [IGNORE_INDEX] * start
    assert labels[start:] == ids[start:]  # every token after the prompt is learned ...
    assert tokenizer.decode(ids[start:]) == ANSWER + "<|im_end|>\n"  # ... the answer and its end of turn
    assert example["attention_mask"] == [1] * len(ids)


def test_every_assistant_turn_is_learned_and_nothing_else(tokenizer: Any) -> None:
    messages = [
        USER,
        {"role": "assistant", "content": "A mood stabilizer."},
        {"role": "user", "content": "For which disorder?"},
        {"role": "assistant", "content": "Bipolar disorder."},
    ]
    example = encode_conversation(tokenizer, messages, max_seq_len=256)
    learned = tokenizer.decode(_labelled(example))
    assert learned == "A mood stabilizer.<|im_end|>\nBipolar disorder.<|im_end|>\n"


def test_offsets_fallback_agrees_with_token_prefixes(tokenizer: Any) -> None:
    messages = [SYSTEM, USER, {"role": "assistant", "content": ANSWER}]
    by_prefix = encode_conversation(tokenizer, messages, 128, method="prefix")
    by_offsets = encode_conversation(tokenizer, messages, 128, method="offsets")
    assert by_offsets == by_prefix


def test_template_without_prefix_property_falls_back_to_the_answer_text(tokenizer: Any) -> None:
    # The generation prompt differs from how the finished turn renders, so neither the prompt's
    # tokens nor its text are a prefix of the conversation: only the answer text can be found.
    odd = tokenizer.__class__.from_pretrained(resolve_causal_lm_path("smollm2"))
    odd.chat_template = (
        "{% for m in messages %}{{ m['role'] | upper }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT (reply briefly):{% endif %}"
    )
    messages = [USER, {"role": "assistant", "content": ANSWER}]
    with pytest.raises(SkipItem, match="not a prefix"):
        encode_conversation(odd, messages, 128, method="prefix")
    example = encode_conversation(odd, messages, 128)
    assert odd.decode(_labelled(example)).strip() == ANSWER


def test_truncation_keeps_the_start_and_skips_items_without_answer_tokens(tokenizer: Any) -> None:
    messages = [SYSTEM, USER, {"role": "assistant", "content": ANSWER}]
    full = encode_conversation(tokenizer, messages, 128)
    prompt_len = full["labels"].index(next(label for label in full["labels"] if label != IGNORE_INDEX))
    cut = encode_conversation(tokenizer, messages, prompt_len + 3)
    assert cut["input_ids"] == full["input_ids"][: prompt_len + 3]
    assert len(_labelled(cut)) == 3
    with pytest.raises(SkipItem, match="max_seq_len"):
        encode_conversation(tokenizer, messages, prompt_len)


def test_unusable_items_are_recorded_with_their_reason(tokenizer: Any) -> None:
    good = make_item("lithium", "a mood stabilizer")
    bad = make_item("ECT", "a treatment").model_copy(update={"messages": [USER]})
    encoded = encode_items(tokenizer, [good, bad], 128, "train")
    assert len(encoded.examples) == 1
    assert [(s.split, s.item_id) for s in encoded.skipped] == [("train", bad.item_id)]
    assert "assistant" in encoded.skipped[0].reason


def test_collator_pads_each_batch_to_its_longest_sequence(tokenizer: Any) -> None:
    tokenizer.padding_side = "right"
    short = encode_conversation(tokenizer, [USER, {"role": "assistant", "content": "Yes."}], 128)
    long = encode_conversation(tokenizer, [SYSTEM, USER, {"role": "assistant", "content": ANSWER}], 128)
    batch = make_collator(tokenizer, packing=False)([short, long])
    width = len(long["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, width)
    n = len(short["input_ids"])
    assert batch["input_ids"][0, :n].tolist() == short["input_ids"]
    assert batch["labels"][0, :n].tolist() == short["labels"]
    assert torch.all(batch["labels"][0, n:] == IGNORE_INDEX)
    assert torch.all(batch["attention_mask"][0, n:] == 0)
    assert torch.all(batch["input_ids"][0, n:] == tokenizer.pad_token_id)
    assert batch["labels"][1].tolist() == long["labels"]
