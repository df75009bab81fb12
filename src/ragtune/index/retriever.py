"""Retrieval over a built index, for the stages after it.

``load_retriever(config, index_dir)`` reopens what :func:`~ragtune.index.stage.run_index` wrote:
the chunks, the vector store, and the embedder the index was built with (checked against the
config, since vectors of another model would be meaningless to it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from ragtune.core.artifacts import IndexDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.embedding import Embedder, load_embedder
from ragtune.core.errors import ConfigError, InputError
from ragtune.core.records import Chunk, read_jsonl
from ragtune.index.store import STORE_FILE, Hit, VectorStore, open_store, read_store_info

log = logging.getLogger(__name__)

_MAX_REFETCH = 3


class ScoredChunk(BaseModel):
    """A retrieved chunk and its similarity to the query (cosine, or the hybrid fusion score)."""

    model_config = ConfigDict(frozen=True)

    chunk: Chunk
    score: float


class Retriever:
    """Embeds queries and returns the nearest chunks, best first."""

    def __init__(self, chunks: Sequence[Chunk], embedder: Embedder, store: VectorStore) -> None:
        self.chunks = {chunk.chunk_id: chunk for chunk in chunks}
        self.embedder = embedder
        self.store = store

    def __len__(self) -> int:
        return len(self.chunks)

    def get(self, chunk_id: str) -> Chunk | None:
        return self.chunks.get(chunk_id)

    def _known(self, hits: list[Hit], k: int) -> list[ScoredChunk]:
        found = []
        for chunk_id, score in hits:
            chunk = self.chunks.get(chunk_id)
            if chunk is not None:
                found.append(ScoredChunk(chunk=chunk, score=score))
        return found[:k]

    def _search_vector(
        self, query: str, vector: np.ndarray, k: int, alpha: float | None, hits: list[Hit] | None = None
    ) -> list[ScoredChunk]:
        """Hits that are our chunks. A shared Weaviate collection can also hold chunks that are not
        in this index's chunks.jsonl (other runs, older versions); ask for more until k are ours."""
        limit = k
        for _ in range(_MAX_REFETCH + 1):
            if hits is None:
                hits = (
                    self.store.search(vector, limit)
                    if alpha is None
                    else self.store.hybrid_search(query, vector, limit, alpha)
                )
            found = self._known(hits, k)
            if len(found) >= k or len(hits) < limit:
                return found
            log.debug(
                "%d of %d hits are not in this index; asking for more", len(hits) - len(found), len(hits)
            )
            limit *= 4
            hits = None
        return found

    def search(self, query: str, k: int = 5, alpha: float | None = None) -> list[ScoredChunk]:
        """The ``k`` chunks nearest to ``query``. With ``alpha`` (Weaviate only), a hybrid
        keyword + vector search: 1 is pure vector, 0 pure keyword."""
        if k <= 0 or not self.chunks:
            return []
        vector = self.embedder.encode([query])[0]
        return self._search_vector(query, vector, k, alpha)

    def search_many(self, queries: Sequence[str], k: int = 5) -> list[list[ScoredChunk]]:
        """:meth:`search` for several queries, embedded together in one batch."""
        queries = list(queries)
        if k <= 0 or not self.chunks or not queries:
            return [[] for _ in queries]
        vectors = self.embedder.encode(queries)
        batched = self.store.search_many(vectors, k)
        return [
            self._search_vector(query, vector, k, None, hits)
            for query, vector, hits in zip(queries, vectors, batched, strict=True)
        ]

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _locate(index_dir: Path) -> Path:
    """Accept the ``index/`` folder itself or the index stage's whole output folder."""
    if (
        not (index_dir / STORE_FILE).is_file()
        and IndexDir(index_dir).store_dir.joinpath(STORE_FILE).is_file()
    ):
        return IndexDir(index_dir).store_dir
    return index_dir


def chunks_path_for(index_dir: Path) -> Path:
    """Where the chunks of an index live: the path recorded in ``store.json`` (relative to the
    index folder), else ``chunks.jsonl`` beside or inside the index folder."""
    index_dir = _locate(index_dir)
    recorded = read_store_info(index_dir).get("chunks")
    candidates = [index_dir / recorded] if recorded else []
    candidates += [IndexDir(index_dir.parent).chunks_path, IndexDir(index_dir).chunks_path]
    for path in candidates:
        if path.is_file():
            return path
    raise InputError(
        f"{index_dir}: no {IndexDir.CHUNKS} found (looked at {', '.join(str(p) for p in candidates)})"
    )


def load_retriever(config: RagtuneConfig, index_dir: Path, *, embedder: Embedder | None = None) -> Retriever:
    """Open the index in ``index_dir`` for searching.

    ``embedder`` lets a caller reuse an embedder it already holds; it must be the one the index
    was built with, as must the configured one otherwise.
    """
    index_dir = _locate(Path(index_dir))
    info = read_store_info(index_dir)
    chunks = read_jsonl(chunks_path_for(index_dir), Chunk)
    embedder = embedder or load_embedder(config.index.embedder)
    built_with = info.get("embedder")
    if built_with and built_with != embedder.name:
        raise ConfigError(
            f"index.embedder: the index in {index_dir} was built with {built_with!r}, but the embedder is {embedder.name!r}"
        )
    store = open_store(index_dir, config.index.store)
    log.info("retriever: %d chunks, %s store, embedder %s", len(chunks), store.backend, embedder.name)
    return Retriever(chunks, embedder, store)
