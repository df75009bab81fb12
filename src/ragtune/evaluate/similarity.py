"""Judge-free similarity of an answer to its reference: ROUGE-L and embedding cosine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import ConfigError


class TextEncoder(Protocol):
    """What cosine similarity needs of an embedder (``ragtune.core.embedding.Embedder`` fits)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def rouge_l(references: Sequence[str], candidates: Sequence[str]) -> list[float]:
    """ROUGE-L F-measure of each candidate against its reference (stemmed, ``rouge-score``)."""
    from rouge_score import rouge_scorer

    if len(references) != len(candidates):
        raise ValueError("references and candidates differ in length")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [
        float(scorer.score(ref, cand)["rougeL"].fmeasure)
        for ref, cand in zip(references, candidates, strict=True)
    ]


def cosine_similarities(
    encoder: TextEncoder, references: Sequence[str], candidates: Sequence[str]
) -> list[float]:
    """Cosine similarity of each candidate's embedding to its reference's."""
    if len(references) != len(candidates):
        raise ValueError("references and candidates differ in length")
    if not references:
        return []
    vectors = np.asarray(encoder.encode([*references, *candidates]), dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    refs, cands = vectors[: len(references)], vectors[len(references) :]
    return [float(v) for v in np.einsum("ij,ij->i", refs, cands)]


def load_encoder(config: RagtuneConfig) -> TextEncoder:
    """The run's embedder (``index.embedder``), so cosine uses the same model as retrieval."""
    try:
        from ragtune.core.embedding import load_embedder
    except ImportError as err:
        raise ConfigError(
            f"evaluate needs ragtune.core.embedding for answer-reference cosine similarity ({err})"
        ) from None
    return load_embedder(config.index.embedder)
