"""Multiple choice scored by likelihood: which of a statement and its distractors does a model prefer?

As evaluation harnesses score multiple-choice tasks, each option is the continuation of one prompt,
and the model's choice is the option with the highest *length-normalised* log-likelihood (the mean
log-probability of its tokens, so a longer option is not penalised for its length). The prompt is
the item's question in the training chat template (what the tuned model saw), closed-book: no
retrieved context. No generation, no judge: deterministic for given weights.

A question's ``options[0]`` is the true one. :func:`choices` gives, per question, the accuracy bit
(the true option strictly above every distractor) and the margin (true − best distractor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from tqdm import tqdm

Messages = list[dict[str, str]]


class MCQuestion(NamedTuple):
    """One multiple-choice question: a chat prompt and its options, the true one first."""

    prompt: Messages
    options: list[str]


class Choice(NamedTuple):
    """How a model answered one :class:`MCQuestion`."""

    correct: float
    margin: float


def _prompt_ids(tokenizer: Any, prompt: Messages) -> list[int]:
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _sequences(tokenizer: Any, questions: Sequence[MCQuestion]) -> list[tuple[list[int], int]]:
    """``(prompt + option token ids, start of the option)`` for every option of every question."""
    sequences = []
    for question in questions:
        prompt = _prompt_ids(tokenizer, question.prompt)
        for option in question.options:
            continuation = list(tokenizer(option, add_special_tokens=False)["input_ids"]) or [
                tokenizer.eos_token_id
            ]
            sequences.append((prompt + continuation, len(prompt)))
    return sequences


def _batch_scores(model: Any, batch: Sequence[tuple[list[int], int]], pad_id: int) -> list[float]:
    """Mean log-probability of each sequence's continuation tokens (one padded forward pass)."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, _) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
    scores = []
    for row, (ids, start) in enumerate(batch):
        # The token at position t is predicted by the logits at t - 1.
        predicted = torch.log_softmax(logits[row, start - 1 : len(ids) - 1], dim=-1)
        targets = torch.tensor(ids[start:], device=predicted.device)
        scores.append(float(predicted.gather(1, targets[:, None]).mean()))
    return scores


def option_scores(
    model: Any,
    tokenizer: Any,
    questions: Sequence[MCQuestion],
    *,
    batch_size: int = 8,
    desc: str = "likelihood",
) -> list[list[float]]:
    """Length-normalised log-likelihood of every option of every question, in order.

    Sequences are batched by length (right-padded, so positions need no shifting) to waste little
    compute on padding.
    """
    sequences = _sequences(tokenizer, questions)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    flat = [0.0] * len(sequences)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        chosen = order[start : start + batch_size]
        for index, score in zip(
            chosen, _batch_scores(model, [sequences[i] for i in chosen], pad_id), strict=True
        ):
            flat[index] = score
    nested, position = [], 0
    for question in questions:
        nested.append(flat[position : position + len(question.options)])
        position += len(question.options)
    return nested


def choices(scores: Sequence[Sequence[float]]) -> list[Choice]:
    """Accuracy bit and margin per question from its option scores (the true option first)."""
    picked = []
    for row in scores:
        best_distractor = max(row[1:])
        picked.append(Choice(correct=float(row[0] > best_distractor), margin=row[0] - best_distractor))
    return picked
