"""The Weaviate adapter, against a stand-in for the client's collection API (no network), and
against a real server when ``RAGTUNE_TEST_WEAVIATE_URL`` is set."""

from __future__ import annotations

import json
import os
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import weaviate
from weaviate.auth import _APIKey
from weaviate.classes.config import VectorDistances, Vectorizers
from weaviate.util import generate_uuid5

from ragtune.core.config import VectorStoreConfig
from ragtune.core.embedding import SentenceTransformerEmbedder
from ragtune.core.records import Chunk, read_jsonl
from ragtune.index import load_retriever, run_index
from ragtune.index.store import VectorStoreError, WeaviateStore, create_store, open_store
from tests.conftest import declare_endpoint
from tests.index.corpus import TOPICS, make_config, topic_chunks, topics_document, write_documents
from tests.index.weaviate_fake import FakeClient, connect_to_custom_for

COLLECTION = "RagtuneAllMiniLML6V2D384"


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    """Replace the client's network layer: every connect returns this one in-memory client."""
    client = FakeClient()
    monkeypatch.setattr(weaviate, "connect_to_custom", connect_to_custom_for(client))
    return client


@pytest.fixture(scope="module")
def topic_vectors(embedder: SentenceTransformerEmbedder) -> tuple[list[Chunk], np.ndarray]:
    chunks = topic_chunks()
    return chunks, embedder.encode([c.text for c in chunks])


def test_connect_creates_the_collection_with_self_provided_vectors(
    fake_client: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_WEAVIATE_KEY", "wv-secret")
    declare_endpoint(monkeypatch, "https://weaviate.example:8443", "TEST_WEAVIATE_KEY")
    config = VectorStoreConfig(
        weaviate_url="https://weaviate.example:8443",
        weaviate_grpc_port=50052,
        weaviate_api_key_env="TEST_WEAVIATE_KEY",
    )
    store = create_store(config, "all-MiniLM-L6-v2", 384)
    assert isinstance(store, WeaviateStore) and store.name == COLLECTION

    kwargs = fake_client.connect_kwargs
    assert (kwargs["http_host"], kwargs["http_port"], kwargs["http_secure"]) == (
        "weaviate.example",
        8443,
        True,
    )
    assert (kwargs["grpc_host"], kwargs["grpc_port"], kwargs["grpc_secure"]) == (
        "weaviate.example",
        50052,
        True,
    )
    assert (
        isinstance(kwargs["auth_credentials"], _APIKey) and kwargs["auth_credentials"].api_key == "wv-secret"
    )

    [(name, create_kwargs)] = fake_client.collections.created
    assert name == COLLECTION
    assert [p.name for p in create_kwargs["properties"]] == ["chunk_id", "doc_id", "section_path", "text"]
    vector_config = create_kwargs["vector_config"]
    assert vector_config.vectorizer.vectorizer == Vectorizers.NONE
    assert vector_config.vectorIndexConfig.distance == VectorDistances.COSINE

    # A second store for the same corpus and embedder reuses the collection.
    create_store(config, "all-MiniLM-L6-v2", 384)
    assert len(fake_client.collections.created) == 1


def test_no_key_means_no_credentials(fake_client: FakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEAVIATE_API_KEY", raising=False)
    WeaviateStore.connect(VectorStoreConfig(weaviate_url="http://weaviate:8080"), "m", 4)
    kwargs = fake_client.connect_kwargs
    assert kwargs["auth_credentials"] is None
    assert (kwargs["http_host"], kwargs["http_port"], kwargs["http_secure"], kwargs["grpc_port"]) == (
        "weaviate",
        8080,
        False,
        50051,
    )


def test_upsert_imports_our_vectors_idempotently(
    fake_client: FakeClient, topic_vectors: tuple[list[Chunk], np.ndarray]
) -> None:
    chunks, vectors = topic_vectors
    store = create_store(VectorStoreConfig(weaviate_url="http://weaviate:8080"), "all-MiniLM-L6-v2", 384)
    store.upsert(chunks, vectors)
    collection = fake_client.collections.by_name[COLLECTION]

    assert len(collection.added) == len(chunks)
    for chunk, vector, added in zip(chunks, vectors, collection.added, strict=True):
        assert added["uuid"] == generate_uuid5(chunk.chunk_id)
        assert added["properties"] == {
            "chunk_id": chunk.chunk_id,
            "doc_id": chunk.doc_id,
            "section_path": chunk.section_path,
            "text": chunk.text,
        }
        np.testing.assert_array_equal(np.asarray(added["vector"], dtype=np.float32), vector)

    store.upsert(chunks, vectors)  # re-import: same uuids, so the same objects
    assert len(collection.added) == 2 * len(chunks)
    assert len(collection.objects) == len(chunks)


def test_failed_objects_are_an_error(
    fake_client: FakeClient, topic_vectors: tuple[list[Chunk], np.ndarray]
) -> None:
    chunks, vectors = topic_vectors
    store = create_store(VectorStoreConfig(weaviate_url="http://weaviate:8080"), "all-MiniLM-L6-v2", 384)
    collection = fake_client.collections.by_name[COLLECTION]
    collection.batch.failed_objects = [SimpleNamespace(message="vector lengths don't match")]
    with pytest.raises(VectorStoreError, match=r"1 of 15 objects failed to import \(first: vector lengths"):
        store.upsert(chunks, vectors)


def test_near_vector_and_hybrid_map_results_to_chunk_ids(
    fake_client: FakeClient,
    topic_vectors: tuple[list[Chunk], np.ndarray],
    embedder: SentenceTransformerEmbedder,
) -> None:
    chunks, vectors = topic_vectors
    store = WeaviateStore.connect(
        VectorStoreConfig(weaviate_url="http://weaviate:8080"), "all-MiniLM-L6-v2", 384
    )
    store.upsert(chunks, vectors)
    query = embedder.encode([TOPICS[9][2]])[0]  # refeeding paraphrase

    hits = store.search(query, k=3)
    name, call = store.ensure_collection().query.calls[-1]
    assert name == "near_vector" and call["limit"] == 3
    np.testing.assert_array_equal(np.asarray(call["near_vector"], dtype=np.float32), query)
    assert call["return_properties"] == ["chunk_id"] and call["return_metadata"].distance
    assert len(hits) == 3 and hits[0][0] == chunks[9].chunk_id
    assert hits[0][1] == pytest.approx(float(vectors[9] @ query), abs=1e-5)  # score = 1 - cosine distance

    hybrid = store.hybrid_search("refeeding phosphate", query, k=2, alpha=0.25)
    name, call = store.ensure_collection().query.calls[-1]
    assert (
        name == "hybrid"
        and call["query"] == "refeeding phosphate"
        and call["alpha"] == 0.25
        and call["limit"] == 2
    )
    np.testing.assert_array_equal(np.asarray(call["vector"], dtype=np.float32), query)
    assert call["query_properties"] == ["text", "section_path"]
    assert next(cid for cid, _ in hybrid) == chunks[9].chunk_id

    store.ensure_collection().query.fail = True
    with pytest.raises(VectorStoreError, match="near_vector search failed"):
        store.search(query, k=3)


def test_build_index_and_retriever_over_weaviate(
    fake_client: FakeClient,
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEAVIATE_API_KEY", "wv-very-secret")
    declare_endpoint(monkeypatch, "http://weaviate:8080", "WEAVIATE_API_KEY")
    config = make_config(
        tmp_path,
        **{
            "index.store.weaviate_url": "http://weaviate:8080",
            "index.chunk_tokens": 64,
            "index.chunk_overlap": 8,
        },
    )
    documents = write_documents(tmp_path / "documents.jsonl", [topics_document()])
    report = run_index(config, documents, tmp_path / "out", embedder=embedder)
    assert (
        report.store_backend == "weaviate"
        and report.store_location == f"http://weaviate:8080 collection {COLLECTION}"
    )
    assert fake_client.closed == 1  # run_index closes its connection

    index_dir = tmp_path / "out" / "index"
    assert sorted(p.name for p in index_dir.iterdir()) == ["store.json"]
    pointer = json.loads((index_dir / "store.json").read_text())
    assert (
        pointer["backend"] == "weaviate"
        and pointer["url"] == "http://weaviate:8080"
        and pointer["collection"] == COLLECTION
    )
    assert fake_client.connect_kwargs["auth_credentials"].api_key == "wv-very-secret"
    for written in (index_dir / "store.json", tmp_path / "out" / "index_report.json"):
        assert "wv-very-secret" not in written.read_text()

    # Another corpus shares the collection: its chunks are not ours, so the retriever skips them.
    foreign = [
        c.model_copy(update={"chunk_id": f"other-{i}", "doc_id": "other"})
        for i, c in enumerate(topic_chunks())
    ]
    store = open_store(index_dir, config.index.store)
    store.upsert(foreign, embedder.encode([c.text for c in foreign]))

    with load_retriever(config, index_dir, embedder=embedder) as retriever:
        results = retriever.search(TOPICS[13][2], k=3)
        assert len(results) == 3 and all(r.chunk.doc_id == "topics-1" for r in results)
        assert results[0].chunk.section_path == ["Psychiatry notes", "Tardive dyskinesia"]
        hybrid = retriever.search(TOPICS[13][2], k=2, alpha=0.5)
        assert hybrid[0].chunk.section_path[-1] == "Tardive dyskinesia"
        assert [
            r[0].chunk.section_path[-1] for r in retriever.search_many([TOPICS[0][2], TOPICS[6][2]], k=3)
        ] == ["Lithium", "Alcohol withdrawal"]


def test_rebuild_after_a_document_changed_deletes_its_lost_chunks(
    fake_client: FakeClient, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    """Build, drop a section from the document, build again: the removed text is gone from the
    collection (not merely filtered by the retriever), and other corpora's chunks stay."""
    config = make_config(tmp_path, **{"index.store.weaviate_url": "http://weaviate:8080"})
    document = topics_document()
    first = run_index(
        config, write_documents(tmp_path / "d1.jsonl", [document]), tmp_path / "one", embedder=embedder
    )
    collection = fake_client.collections.by_name[COLLECTION]
    foreign = topic_chunks()[0].model_copy(update={"chunk_id": "other-0", "doc_id": "other"})
    with open_store(tmp_path / "one" / "index", config.index.store) as store:
        store.upsert([foreign], embedder.encode([foreign.text]))

    removed = next(s for s in document.sections if s.heading == "Tardive dyskinesia")
    changed = document.model_copy(update={"sections": [s for s in document.sections if s is not removed]})
    second = run_index(
        config, write_documents(tmp_path / "d2.jsonl", [changed]), tmp_path / "two", embedder=embedder
    )

    texts = [props["text"] for props, _ in collection.objects.values()]
    assert not any(removed.text[:40] in text for text in texts)
    assert second.stale_chunks_deleted == first.chunks - second.chunks > 0
    assert len(collection.objects) == second.chunks + 1  # ours, plus the other corpus's chunk
    with load_retriever(config, tmp_path / "two" / "index", embedder=embedder) as retriever:
        hits = retriever.search(removed.text, k=3)
    assert all("Tardive dyskinesia" not in r.chunk.section_path for r in hits)
    ids = {props["chunk_id"] for props, _ in collection.objects.values()}
    assert ids == {c.chunk_id for c in read_jsonl(tmp_path / "two" / "chunks.jsonl", Chunk)} | {"other-0"}


def test_missing_collection_is_reported(fake_client: FakeClient, tmp_path: Path) -> None:
    (tmp_path / "store.json").write_text(
        json.dumps(
            {
                "backend": "weaviate",
                "url": "http://weaviate:8080",
                "collection": "Gone",
                "dim": 4,
                "embedder": "m",
            }
        )
    )
    with pytest.raises(VectorStoreError, match=r"collection Gone .* does not exist"):
        open_store(tmp_path)
    assert fake_client.closed == 1


WEAVIATE_URL = os.environ.get("RAGTUNE_TEST_WEAVIATE_URL")


needs_weaviate = pytest.mark.skipif(
    not WEAVIATE_URL, reason="needs a Weaviate server at RAGTUNE_TEST_WEAVIATE_URL"
)


@pytest.fixture
def real_store(embedder: SentenceTransformerEmbedder) -> Iterator[WeaviateStore]:
    """A fresh collection on the real server, deleted afterwards."""
    config = VectorStoreConfig(
        weaviate_url=WEAVIATE_URL,
        weaviate_grpc_port=int(os.environ.get("RAGTUNE_TEST_WEAVIATE_GRPC_PORT", "50051")),
        collection_prefix=f"RagtuneTest{uuidlib.uuid4().hex[:8]}",
    )
    store = create_store(config, embedder.name, embedder.dim)
    assert isinstance(store, WeaviateStore)
    try:
        yield store
    finally:
        store.client.collections.delete(store.name)
        store.close()


@pytest.mark.weaviate
@needs_weaviate
def test_real_weaviate_round_trip(
    topic_vectors: tuple[list[Chunk], np.ndarray],
    embedder: SentenceTransformerEmbedder,
    real_store: WeaviateStore,
) -> None:
    chunks, vectors = topic_vectors
    store = real_store
    store.upsert(chunks, vectors)
    store.upsert(chunks, vectors)  # idempotent by chunk_id
    total = store.ensure_collection().aggregate.over_all(total_count=True).total_count
    assert total == len(chunks)
    query = embedder.encode([TOPICS[1][2]])[0]
    assert chunks[1].chunk_id in [cid for cid, _ in store.search(query, k=3)]
    assert chunks[1].chunk_id in [
        cid for cid, _ in store.hybrid_search("neutrophil count antipsychotic", query, k=3, alpha=0.5)
    ]


@pytest.mark.weaviate
@needs_weaviate
def test_real_weaviate_prune_deletes_a_changed_documents_lost_chunks(
    topic_vectors: tuple[list[Chunk], np.ndarray], real_store: WeaviateStore
) -> None:
    chunks, vectors = topic_vectors
    store = real_store
    foreign = chunks[0].model_copy(update={"chunk_id": "other-0", "doc_id": "other"})
    store.upsert([*chunks, foreign], np.vstack([vectors, vectors[:1]]))
    keep = {c.chunk_id for c in chunks[2:]}
    assert store.prune(keep, {chunks[0].doc_id}) == 2
    total = store.ensure_collection().aggregate.over_all(total_count=True).total_count
    assert total == len(chunks) - 2 + 1  # the other corpus's chunk stays
    found = [cid for cid, _ in store.search(vectors[1], k=len(chunks))]
    assert chunks[1].chunk_id not in found and "other-0" in found


def test_the_fake_rejects_what_the_real_client_would(fake_client: FakeClient) -> None:
    """A fake that accepted anything would let a misspelt keyword pass here and fail on a cluster."""
    collection = fake_client.collections.create("C")
    with pytest.raises(TypeError, match="near_vector"):
        collection.query.near_vector(vector=[0.1], limit=1)  # the real keyword is near_vector
    with pytest.raises(TypeError, match="fixed_size"), collection.batch.fixed_size(size=10):
        pass
    with pytest.raises(TypeError, match="connect_to_custom"):
        weaviate.connect_to_custom(http_host="h", http_port=80, http_secure=False)  # no gRPC settings
    with pytest.raises(TypeError, match="create"):
        fake_client.collections.create("D", vectoriser_config=None)
