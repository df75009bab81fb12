"""Leakage between the training data and the eval items, measured rather than assumed.

An eval item leaks when what it asks or what its reference says could have been learned in
training. Three ways are measured, each by a 13-gram or an embedding near-duplicate (cosine ≥
``evaluate.leakage_cosine``, 0.95 by default):

* its **question** against the training questions and answers (``ngram_hits``, ``embedding_hits``);
* its **reference answer** against the training answers (``answer_hits``): both may quote the
  same text;
* its **contexts** (its source chunk and the chunks its reference was written from) against the
  training answers' contexts and the training answers themselves (``context_hits``): a training
  answer that rested on, or quotes, the text an eval item is about teaches that item.

``synth.holdout`` keeps the two sides' retrieval apart, so context hits are what the corpus itself
repeats. The share of leaking eval items is reported, and the evaluate stage fails above
``evaluate.max_leakage`` — a tuned model "winning" on what it was trained on proves nothing.
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


def _ngram_pool(texts: Sequence[str]) -> set[tuple[str, ...]]:
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        seen |= ngrams(text)
    return seen


def _near(
    encoder: TextEncoder | None, texts: Sequence[str], pool: Sequence[str], threshold: float
) -> list[bool]:
    """Whether each of ``texts`` has an embedding near-duplicate in ``pool``."""
    if encoder is None or not texts or not pool:
        return [False] * len(texts)
    mine = _unit(np.asarray(encoder.encode(list(texts)), dtype=np.float64))
    theirs = _unit(np.asarray(encoder.encode(list(pool)), dtype=np.float64))
    return [bool(v) for v in (mine @ theirs.T).max(axis=1) >= threshold]


def _context_hits(
    eval_items: Sequence[InstructionItem], train_items: Sequence[InstructionItem]
) -> list[bool]:
    """An eval item's source or context chunk behind a training answer, or quoted by one."""
    behind_training = {cid for item in train_items for cid in item.provenance.context_chunk_ids}
    quoted = _ngram_pool([item.answer for item in train_items])
    hits = []
    for item in eval_items:
        ids = {item.provenance.source_chunk_id, *item.provenance.context_chunk_ids}
        texts = [chunk.text for chunk in item.context]
        hits.append(bool(ids & behind_training) or any(ngrams(text) & quoted for text in texts))
    return hits


def measure_leakage(
    eval_items: Sequence[InstructionItem],
    train_items: Sequence[InstructionItem],
    encoder: TextEncoder | None,
    *,
    cosine_threshold: float,
    max_share: float,
) -> Leakage:
    """Compare every eval item with the training data (see the module docstring)."""
    train_answers = [item.answer for item in train_items]
    train_texts = [text for item in train_items for text in (item.question, item.answer)]
    seen, answered = _ngram_pool(train_texts), _ngram_pool(train_answers)
    by_ngram = [bool(ngrams(item.question) & seen) for item in eval_items]
    by_embedding = _near(encoder, [i.question for i in eval_items], train_texts, cosine_threshold)
    answer_ngram = [bool(ngrams(item.answer) & answered) for item in eval_items]
    answer_near = _near(encoder, [i.answer for i in eval_items], train_answers, cosine_threshold)
    by_answer = [a or b for a, b in zip(answer_ngram, answer_near, strict=True)]
    by_context = _context_hits(eval_items, train_items)
    leaking = [any(hit) for hit in zip(by_ngram, by_embedding, by_answer, by_context, strict=True)]
    n = len(eval_items)
    return Leakage(
        n_eval=n,
        n_train=len(train_items),
        cosine_threshold=cosine_threshold,
        ngram_hits=sum(by_ngram),
        embedding_hits=sum(by_embedding),
        answer_hits=sum(by_answer),
        context_hits=sum(by_context),
        leaked=sum(leaking),
        share=sum(leaking) / n if n else 0.0,
        max_share=max_share,
        item_ids=[item.item_id for item, hit in zip(eval_items, leaking, strict=True) if hit][:_EXAMPLES],
    )
