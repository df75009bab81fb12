"""Leakage between the training data and the eval questions, measured rather than assumed.

An eval question leaks when its answer could have been memorised in training: a 13-gram of the
question appears in a training question or answer, or its embedding is a near-duplicate
(cosine ≥ ``evaluate.leakage_cosine``, 0.95 by default) of a training question or answer. The
share of leaking eval questions is reported, and the evaluate stage fails above
``evaluate.max_leakage`` — a tuned model "winning" on questions it was trained on proves nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ragtune.core.records import InstructionItem
from ragtune.core.reports.evaluation import LEAKAGE_NGRAM, Leakage
from ragtune.evaluate.similarity import TextEncoder

_WORD = re.compile(r"\w+")
_EXAMPLES = 20


def ngrams(text: str, n: int = LEAKAGE_NGRAM) -> set[tuple[str, ...]]:
    """The word n-grams of ``text`` (lower-cased ``\\w+`` words)."""
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def measure_leakage(
    eval_items: Sequence[InstructionItem],
    train_items: Sequence[InstructionItem],
    encoder: TextEncoder | None,
    *,
    cosine_threshold: float,
    max_share: float,
) -> Leakage:
    """Compare every eval question with every training question and answer (see the module docstring)."""
    train_texts = [text for item in train_items for text in (item.question, item.answer)]
    seen: set[tuple[str, ...]] = set()
    for text in train_texts:
        seen |= ngrams(text)
    by_ngram = [bool(ngrams(item.question) & seen) for item in eval_items]
    by_embedding = [False] * len(eval_items)
    if encoder is not None and eval_items and train_texts:
        questions = _unit(np.asarray(encoder.encode([i.question for i in eval_items]), dtype=np.float64))
        train = _unit(np.asarray(encoder.encode(train_texts), dtype=np.float64))
        by_embedding = [bool(v) for v in (questions @ train.T).max(axis=1) >= cosine_threshold]
    leaking = [a or b for a, b in zip(by_ngram, by_embedding, strict=True)]
    n = len(eval_items)
    return Leakage(
        n_eval=n,
        n_train=len(train_items),
        cosine_threshold=cosine_threshold,
        ngram_hits=sum(by_ngram),
        embedding_hits=sum(by_embedding),
        leaked=sum(leaking),
        share=sum(leaking) / n if n else 0.0,
        max_share=max_share,
        item_ids=[item.item_id for item, hit in zip(eval_items, leaking, strict=True) if hit][:_EXAMPLES],
    )
