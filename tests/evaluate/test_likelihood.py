"""Multiple choice by likelihood: the arithmetic against a model whose probabilities are known."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from ragtune.evaluate.likelihood import Choice, MCQuestion, choices, option_scores

WORDS = ["<unk>", "<pad>", "<s>", "</s>", "user", "assistant", ":", "is", "panic", "common", "rare", "very"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def word_tokenizer() -> Any:
    """A word-level tokenizer over :data:`WORDS` with a plain chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    made = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    made.chat_template = CHAT_TEMPLATE
    return made


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return word_tokenizer()


class Bigram(torch.nn.Module):
    """Next-token logits depend only on the current token: a table we can compute with by hand."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(
            torch.randn(len(WORDS), len(WORDS), generator=torch.Generator().manual_seed(seed))
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        return SimpleNamespace(logits=self.table[input_ids])


def by_hand(model: Bigram, tokenizer: Any, prompt: list[dict[str, str]], option: str) -> float:
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    continuation = tokenizer(option, add_special_tokens=False)["input_ids"]
    logprobs = torch.log_softmax(model.table.detach(), dim=-1)
    previous = [ids[-1], *continuation[:-1]]
    return float(sum(logprobs[p, t] for p, t in zip(previous, continuation, strict=True)) / len(continuation))


PROMPT = [{"role": "user", "content": "panic is"}]
QUESTIONS = [
    MCQuestion(PROMPT, ["common", "rare", "very rare"]),
    MCQuestion([{"role": "user", "content": "is panic common"}], ["very common", "rare"]),
]


def test_option_scores_are_the_mean_log_probability_of_the_continuation(tokenizer: Any) -> None:
    model = Bigram()
    scores = option_scores(model, tokenizer, QUESTIONS, batch_size=8)
    for question, row in zip(QUESTIONS, scores, strict=True):
        assert len(row) == len(question.options)
        for option, score in zip(question.options, row, strict=True):
            assert score == pytest.approx(by_hand(model, tokenizer, question.prompt, option), abs=1e-5)


def test_batching_and_padding_do_not_change_the_scores(tokenizer: Any) -> None:
    model = Bigram(seed=3)
    one = option_scores(model, tokenizer, QUESTIONS, batch_size=1)
    many = option_scores(model, tokenizer, QUESTIONS, batch_size=5)
    for a, b in zip(one, many, strict=True):
        assert a == pytest.approx(b, abs=1e-6)


def test_choices_need_the_true_option_strictly_above_every_distractor() -> None:
    picked = choices([[-1.0, -2.0, -1.5], [-2.0, -1.0], [-1.0, -1.0]])
    assert picked == [Choice(1.0, 0.5), Choice(0.0, -1.0), Choice(0.0, 0.0)]
