"""The embedded FAISS store: retrieval by paraphrase, idempotent upserts, save/load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragtune.core.config import VectorStoreConfig
from ragtune.core.embedding import SentenceTransformerEmbedder
from ragtune.core.errors import InputError
from ragtune.core.records import Chunk
from ragtune.index.store import (
    FaissStore,
    VectorStoreError,
    collection_name,
    create_store,
    open_store,
    resolve_backend,
)
from tests.index.corpus import TOPICS, topic_chunks


@pytest.fixture(scope="module")
def topic_vectors(embedder: SentenceTransformerEmbedder) -> tuple[list[Chunk], np.ndarray]:
    chunks = topic_chunks()
    return chunks, embedder.encode([c.text for c in chunks])


@pytest.fixture
def store(topic_vectors: tuple[list[Chunk], np.ndarray], embedder: SentenceTransformerEmbedder) -> FaissStore:
    chunks, vectors = topic_vectors
    faiss_store = FaissStore(embedder.name, embedder.dim)
    faiss_store.upsert(chunks, vectors)
    return faiss_store


def test_paraphrased_question_finds_its_chunk_in_top_3(
    store: FaissStore, embedder: SentenceTransformerEmbedder
) -> None:
    chunks = topic_chunks()
    questions = [question for _, _, question in TOPICS]
    results = store.search_many(embedder.encode(questions), k=3)
    for chunk, question, hits in zip(chunks, questions, results, strict=True):
        assert chunk.chunk_id in [cid for cid, _ in hits], (
            f"{question!r} did not retrieve {chunk.section_path[-1]!r}"
        )
        scores = [score for _, score in hits]
        assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    # search and search_many agree.
    assert store.search(embedder.encode([questions[0]])[0], k=3) == results[0]


def test_upsert_is_idempotent_by_chunk_id(
    store: FaissStore, topic_vectors: tuple[list[Chunk], np.ndarray]
) -> None:
    chunks, vectors = topic_vectors
    store.upsert(chunks, vectors)
    assert len(store) == len(chunks) == len(set(store.ids))

    # Re-importing one chunk with a new vector replaces it in place.
    replacement = -vectors[3]
    store.upsert([chunks[3]], replacement[None, :])
    assert len(store) == len(chunks)
    top_id, top_score = store.search(replacement, k=1)[0]
    assert top_id == chunks[3].chunk_id and top_score == pytest.approx(1.0, abs=1e-5)
    assert store.search(vectors[3], k=len(chunks))[-1][0] == chunks[3].chunk_id


def test_save_and_load_round_trip(
    store: FaissStore, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    query = embedder.encode(["sudden confusion in an elderly inpatient"])[0]
    before = store.search(query, k=5)
    store.save(tmp_path / "index", chunks="../chunks.jsonl")

    info = json.loads((tmp_path / "index" / "store.json").read_text())
    assert info["backend"] == "faiss" and info["dim"] == 384 and info["count"] == len(store)
    assert info["embedder"] == "all-MiniLM-L6-v2" and info["chunks"] == "../chunks.jsonl"

    loaded = open_store(tmp_path / "index")
    assert isinstance(loaded, FaissStore)
    assert loaded.ids == store.ids and loaded.embedder == store.embedder
    after = loaded.search(query, k=5)
    assert [cid for cid, _ in after] == [cid for cid, _ in before]
    np.testing.assert_allclose([s for _, s in after], [s for _, s in before], rtol=1e-6)


def test_edge_cases(embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    empty = FaissStore(embedder.name, 384)
    assert empty.search(np.ones(384, dtype=np.float32), k=5) == []
    with pytest.raises(VectorStoreError, match="dimension 384"):
        empty.search(np.ones(12, dtype=np.float32), k=5)
    with pytest.raises(VectorStoreError, match="2 vectors for 1 chunks"):
        empty.upsert(topic_chunks()[:1], np.ones((2, 384), dtype=np.float32))
    with pytest.raises(InputError, match=r"store\.json"):
        open_store(tmp_path / "nothing-here")
    with pytest.raises(VectorStoreError, match="hybrid search needs Weaviate"):
        empty.hybrid_search("query", np.ones(384, dtype=np.float32), k=3)


def test_backend_choice_and_collection_names() -> None:
    assert resolve_backend(VectorStoreConfig()) == "faiss"
    assert resolve_backend(VectorStoreConfig(weaviate_url="http://weaviate:8080")) == "weaviate"
    assert resolve_backend(VectorStoreConfig(backend="faiss", weaviate_url="http://weaviate:8080")) == "faiss"
    assert isinstance(create_store(VectorStoreConfig(), "m", 8), FaissStore)
    assert collection_name("Ragtune", "all-MiniLM-L6-v2", 384) == "RagtuneAllMiniLML6V2D384"
    assert (
        collection_name("ragtune-psych", "openai/text-embedding-3-small", 1536)
        == "RagtunePsychOpenaiTextEmbedding3SmallD1536"
    )
    assert collection_name("", "3d-model", 8) == "C3dModelD8"
