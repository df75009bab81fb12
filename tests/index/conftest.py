"""Fixtures for the index tests: the packaged MiniLM and its tokenizer, each loaded once."""

from __future__ import annotations

import pytest

from ragtune.core.config import EmbedderConfig
from ragtune.core.embedding import SentenceTransformerEmbedder
from ragtune.index.chunking import WordPieceSpans, load_token_spans


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The packaged all-MiniLM-L6-v2, loaded once for the whole session."""
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=32)


@pytest.fixture(scope="session")
def spans() -> WordPieceSpans:
    return load_token_spans(EmbedderConfig())
