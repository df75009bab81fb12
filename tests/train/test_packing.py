"""Packed batches: no padding, labels kept, and no attention across the examples packed together."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ragtune.core.models import resolve_causal_lm_path
from ragtune.train.data import IGNORE_INDEX, encode_conversation, make_collator, padding_share

USER = {"role": "user", "content": "What is lithium?"}


def answer(text: str) -> list[dict[str, str]]:
    return [USER, {"role": "assistant", "content": text}]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_causal_lm_path("smollm2"))
    tok.pad_token = tok.pad_token or tok.eos_token
    return tok


@pytest.fixture(scope="module")
def examples(tokenizer: Any) -> list[dict[str, list[int]]]:
    texts = ["Yes.", "A mood stabilizer used for bipolar disorder.", "It is a salt.", "Lithium " * 20]
    return [encode_conversation(tokenizer, answer(t), 128) for t in texts]


def tiny_llama(attn: str) -> Any:
    """A small random Llama (SmolLM2's architecture): fast, and deterministic under a seed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation=attn,
    )
    return LlamaForCausalLM(config).eval()


def test_packed_batch_has_no_padding_and_keeps_the_labels(examples: list[dict[str, list[int]]]) -> None:
    batch = make_collator(None, packing=True)(examples)
    lengths = [len(e["input_ids"]) for e in examples]
    assert batch["input_ids"].shape == (1, sum(lengths))  # every token is an example's token
    assert "attention_mask" not in batch  # attention boundaries come from the position ids
    assert batch["use_cache"] is False  # a KV cache would switch the boundary detection off
    start = 0
    for example, length in zip(examples, lengths, strict=True):
        assert batch["input_ids"][0, start : start + length].tolist() == example["input_ids"]
        assert batch["position_ids"][0, start : start + length].tolist() == list(range(length))
        # the first label is the boundary (-100); it was a prompt token, already ignored
        assert batch["labels"][0, start : start + length].tolist() == [IGNORE_INDEX, *example["labels"][1:]]
        assert example["labels"][0] == IGNORE_INDEX
        start += length
    labelled = sum(label != IGNORE_INDEX for e in examples for label in e["labels"])
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == labelled  # loss on the same answer tokens


def test_padding_share() -> None:
    assert padding_share([10, 30, 20, 20], 2, packing=False) == pytest.approx(1 - 80 / 100)
    assert padding_share([10, 30, 20, 20], 2, packing=True) == 0.0
    assert padding_share([5, 5], 4, packing=False) == 0.0


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_examples_do_not_attend_to_each_other(attn: str, examples: list[dict[str, list[int]]]) -> None:
    model = tiny_llama(attn)
    packed = make_collator(None, packing=True)(examples)
    with torch.no_grad():
        logits = model(**packed).logits[0]
        start = 0
        for example in examples:
            alone = model(input_ids=torch.tensor([example["input_ids"]])).logits[0]
            part = logits[start : start + len(alone)]
            assert torch.allclose(part, alone, atol=1e-4), "an example saw another one's tokens"
            start += len(alone)
        # the control: without the restarts the later examples do see the earlier ones
        flat = model(input_ids=packed["input_ids"], use_cache=False).logits[0]
        tail = model(input_ids=torch.tensor([examples[-1]["input_ids"]])).logits[0]
        assert not torch.allclose(flat[-len(tail) :], tail, atol=1e-4)


def test_packed_loss_equals_the_padded_loss(tokenizer: Any, examples: list[dict[str, list[int]]]) -> None:
    """Same examples, same answer tokens: the mean loss is the same, only the padding is gone."""
    tokenizer.padding_side = "right"
    model = tiny_llama("sdpa")
    packed = make_collator(tokenizer, packing=True)(examples)
    padded = make_collator(tokenizer, packing=False)(examples)
    assert padded["input_ids"].numel() > packed["input_ids"].numel()
    with torch.no_grad():
        packed_loss = model(**packed).loss
        padded_loss = model(**padded).loss
        per_example = [
            model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss
            for e in examples
        ]
    counts = [sum(label != IGNORE_INDEX for label in e["labels"][1:]) for e in examples]
    weighted = sum(loss * n for loss, n in zip(per_example, counts, strict=True)) / sum(counts)
    assert packed_loss.item() == pytest.approx(padded_loss.item(), abs=1e-4)
    assert packed_loss.item() == pytest.approx(weighted.item(), abs=1e-4)
