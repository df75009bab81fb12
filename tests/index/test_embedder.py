"""Embedders: the local MiniLM, an OpenAI-compatible endpoint (a real HTTP server on 127.0.0.1),
and the content cache in front of both."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from ragtune.core.cache import ContentCache
from ragtune.core.config import EmbedderConfig
from ragtune.core.embedding import (
    EmbeddingError,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    embed_cached,
    load_embedder,
)
from ragtune.core.storage import LocalStorage
from tests.conftest import declare_endpoint


def test_local_embedder_gives_unit_float32_rows(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.name == "all-MiniLM-L6-v2"
    assert embedder.dim == 384
    vectors = embedder.encode(
        [
            "Lithium needs level monitoring.",
            "Clozapine can lower neutrophils.",
            "Lithium needs level monitoring.",
        ]
    )
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert float(vectors[0] @ vectors[1]) < 0.9
    assert embedder.encode([]).shape == (0, 384)


def test_cache_embeds_only_new_texts(embedder: SentenceTransformerEmbedder, tmp_path: Any) -> None:
    cache = ContentCache(LocalStorage(tmp_path / "cache"), "embeddings")
    texts = [
        "Delirium fluctuates over the day.",
        "Anorexia needs careful refeeding.",
        "ECT treats severe depression.",
    ]
    first = embed_cached(embedder, texts, cache, progress=False)
    assert (cache.hits, cache.misses) == (0, 3)

    again = ContentCache(LocalStorage(tmp_path / "cache"), "embeddings")
    second = embed_cached(embedder, [*texts[:2], "A changed third text."], again, progress=False)
    assert (again.hits, again.misses) == (2, 1)
    np.testing.assert_array_equal(first[:2], second[:2])
    np.testing.assert_allclose(second[2], embedder.encode(["A changed third text."])[0], atol=1e-6)
    assert second.dtype == np.float32

    assert embed_cached(embedder, [], again, progress=False).shape == (0, 384)


@dataclass
class EmbeddingsServer:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)


def fake_vector(text: str, dim: int = 6) -> list[float]:
    """Deterministic, deliberately not unit-length."""
    seed = sum(ord(ch) for ch in text)
    return [float((seed * (i + 3)) % 17 + 1) for i in range(dim)]


@pytest.fixture
def embeddings_server() -> Iterator[EmbeddingsServer]:
    """A tiny OpenAI-compatible server answering POST /v1/embeddings (data in reverse order, as
    the API allows: clients must sort by index)."""
    state = EmbeddingsServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            state.authorizations.append(self.headers.get("Authorization"))
            if self.path != "/v1/embeddings":
                self._send(404, {"error": {"message": "not found"}})
            elif body["model"] == "flaky-model" and len(state.requests) <= 2:
                self._send(503 if len(state.requests) == 1 else 500, {"error": {"message": "busy"}})
            elif body["model"] == "down-model":
                self._send(502, {"error": {"message": "bad gateway"}})
            elif body["model"] == "missing-model":
                self._send(400, {"error": {"message": "model not found", "type": "invalid_request_error"}})
            else:
                inputs = body["input"]
                data = [
                    {"object": "embedding", "index": i, "embedding": fake_vector(text)}
                    for i, text in enumerate(inputs)
                ]
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": data[::-1],
                        "model": body["model"],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            if status >= 500:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_openai_embedder_batches_sorts_and_normalizes(
    embeddings_server: EmbeddingsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_EMBEDDINGS_KEY", "sk-test-123")
    declare_endpoint(monkeypatch, embeddings_server.url, "TEST_EMBEDDINGS_KEY")
    config = EmbedderConfig(
        backend="openai",
        model="text-embedder",
        base_url=embeddings_server.url,
        api_key_env="TEST_EMBEDDINGS_KEY",
        batch_size=2,
    )
    embedder = load_embedder(config)
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.name == "openai/text-embedder"

    texts = [f"text number {i}" for i in range(5)]
    vectors = embedder.encode(texts)
    assert [len(r["input"]) for r in embeddings_server.requests] == [2, 2, 1]
    assert all(r["model"] == "text-embedder" for r in embeddings_server.requests)
    assert set(embeddings_server.authorizations) == {"Bearer sk-test-123"}
    expected = np.asarray([fake_vector(t) for t in texts], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert embedder.dim == 6


def test_openai_embedder_through_the_cache(embeddings_server: EmbeddingsServer, tmp_path: Any) -> None:
    embedder = OpenAIEmbedder("text-embedder", embeddings_server.url, "UNSET_KEY_VARIABLE", batch_size=8)
    cache = ContentCache(LocalStorage(tmp_path), "embeddings")
    embed_cached(embedder, ["one", "two"], cache, progress=False)
    calls = len(embeddings_server.requests)
    repeat = embed_cached(embedder, ["one", "two"], cache, progress=False)
    assert len(embeddings_server.requests) == calls
    assert (cache.hits, cache.misses) == (2, 2)
    assert repeat.shape == (2, 6)


def test_openai_embedder_reports_http_errors(embeddings_server: EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder("missing-model", embeddings_server.url, "UNSET_KEY_VARIABLE")
    with pytest.raises(EmbeddingError, match="HTTP 400"):
        embedder.encode(["anything"])


def test_openai_embedder_honours_the_configured_retries(embeddings_server: EmbeddingsServer) -> None:
    """503 and 500 are retried (here after Retry-After: 0) up to index.embedder.max_retries; 400 is not."""
    flaky = load_embedder(
        EmbedderConfig(backend="openai", model="flaky-model", base_url=embeddings_server.url, max_retries=2)
    )
    assert flaky.encode(["one"]).shape == (1, 6)
    assert len(embeddings_server.requests) == 3

    down = load_embedder(
        EmbedderConfig(backend="openai", model="down-model", base_url=embeddings_server.url, max_retries=1)
    )
    with pytest.raises(EmbeddingError, match=r"HTTP 502 .*gave up after 2 attempt\(s\)"):
        down.encode(["one"])
    assert len(embeddings_server.requests) == 5

    with pytest.raises(EmbeddingError, match="HTTP 400"):
        OpenAIEmbedder("missing-model", embeddings_server.url, "UNSET_KEY_VARIABLE").encode(["one"])
    assert len(embeddings_server.requests) == 6  # a 4xx is final


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong-shape", "empty"])
def test_corrupt_embedding_cache_entry_is_a_miss(
    embeddings_server: EmbeddingsServer, tmp_path: Any, damage: str
) -> None:
    embedder = OpenAIEmbedder("text-embedder", embeddings_server.url, "UNSET_KEY_VARIABLE")
    storage = LocalStorage(tmp_path)
    first = embed_cached(embedder, ["one", "two"], ContentCache(storage, "embeddings"), progress=False)
    entry = next(p for p in sorted(storage.root.rglob("*")) if p.is_file())
    data = entry.read_bytes()
    entry.write_bytes(
        {
            "truncate": data[: len(data) // 2],
            "garbage": b"not a numpy file at all",
            "wrong-shape": data.replace(b"(6,)", b"(3,)")[: len(data) - 12],
            "empty": b"",
        }[damage]
    )
    cache = ContentCache(storage, "embeddings")
    again = embed_cached(embedder, ["one", "two"], cache, progress=False)
    assert (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_allclose(again, first, atol=1e-6)
    healed = ContentCache(storage, "embeddings")
    embed_cached(embedder, ["one", "two"], healed, progress=False)
    assert (healed.hits, healed.misses) == (2, 0)  # the entry was written again, whole
