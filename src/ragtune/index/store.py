"""Vector stores: one interface, an embedded FAISS index and a Weaviate collection.

Both hold our own unit-length vectors keyed by ``chunk_id`` and score by cosine similarity.
Upserts are idempotent by ``chunk_id`` (re-importing a chunk replaces it, never duplicates it),
and :meth:`VectorStore.prune` deletes what a rebuild no longer holds (the chunks a changed
document lost), so retrieval never returns text the corpus no longer has.
A store saves itself into a folder as ``store.json`` (what it is and how to reopen it) plus, for
FAISS, the index and its id list; for Weaviate the folder only points at the collection.
"""

from __future__ import annotations

import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

import numpy as np

from ragtune.core.config import VectorStoreConfig
from ragtune.core.endpoints import credential_for
from ragtune.core.errors import ConfigError, InputError, RagtuneError
from ragtune.core.fsutil import atomic_write_bytes, atomic_write_text
from ragtune.core.records import Chunk

log = logging.getLogger(__name__)

STORE_FILE = "store.json"
FAISS_FILE = "faiss.index"
IDS_FILE = "ids.json"
PRUNE_BATCH = 1000  # ids per delete_many call, well under Weaviate's default query maximum

Hit = tuple[str, float]
"""A search result: ``(chunk_id, score)``, higher is closer."""


class VectorStoreError(RagtuneError):
    """A vector store cannot be opened, written or queried."""


def _as_matrix(
    vectors: np.ndarray | Sequence[Sequence[float]], dim: int, rows: int | None = None
) -> np.ndarray:
    matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise VectorStoreError(f"expected vectors of dimension {dim}, got shape {matrix.shape}")
    if rows is not None and matrix.shape[0] != rows:
        raise VectorStoreError(f"got {matrix.shape[0]} vectors for {rows} chunks")
    return matrix


class VectorStore(ABC):
    """Chunk vectors searchable by cosine similarity."""

    backend: ClassVar[str]

    def __init__(self, embedder: str, dim: int) -> None:
        self.embedder = embedder
        self.dim = dim

    @abstractmethod
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Add or replace the vectors of ``chunks`` (row ``i`` belongs to ``chunks[i]``)."""

    @abstractmethod
    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` nearest chunks to ``vector``, best first."""

    @abstractmethod
    def prune(self, keep: Collection[str], doc_ids: Collection[str]) -> int:
        """Delete the chunks of the documents ``doc_ids`` whose id is not in ``keep``; returns how many.

        A shared store (a Weaviate collection other corpora may use) touches only those documents;
        a store holding one build alone (FAISS) drops every chunk not in ``keep``.
        """

    def search_many(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        return [self.search(row, k) for row in _as_matrix(vectors, self.dim)]

    def hybrid_search(self, query: str, vector: np.ndarray, k: int, alpha: float = 0.5) -> list[Hit]:
        """Keyword + vector search (``alpha`` 1 is pure vector, 0 pure keyword)."""
        raise VectorStoreError(f"the {self.backend} store has no keyword index; hybrid search needs Weaviate")

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What ``store.json`` records beyond backend, embedder and dim."""

    def save(self, directory: Path, **extra: Any) -> None:
        """Write ``store.json`` (plus backend files) into ``directory``; ``extra`` is recorded too."""
        directory.mkdir(parents=True, exist_ok=True)
        info = {
            "backend": self.backend,
            "embedder": self.embedder,
            "dim": self.dim,
            **self.describe(),
            **extra,
        }
        atomic_write_text(directory / STORE_FILE, json.dumps(info, indent=2) + "\n")

    def close(self) -> None:  # noqa: B027 - optional hook: in-process stores hold no connection
        """Release connections (nothing to do for an in-process store)."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FaissStore(VectorStore):
    """An exact inner-product FAISS index (``IndexFlatIP``) over unit vectors: cosine similarity."""

    backend = "faiss"

    def __init__(self, embedder: str, dim: int, index: Any = None, ids: list[str] | None = None) -> None:
        import faiss

        super().__init__(embedder, dim)
        self.index = index if index is not None else faiss.IndexFlatIP(dim)
        self.ids: list[str] = list(ids or [])
        if self.index.ntotal != len(self.ids):
            raise VectorStoreError(f"FAISS index holds {self.index.ntotal} vectors but {len(self.ids)} ids")
        self._rows = {chunk_id: row for row, chunk_id in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        matrix = _as_matrix(vectors, self.dim, len(chunks))
        latest: dict[str, np.ndarray] = {}
        for chunk, vector in zip(chunks, matrix, strict=True):
            latest[chunk.chunk_id] = vector  # a repeated id in one call: the last vector wins
        replaced = {cid: vec for cid, vec in latest.items() if cid in self._rows}
        added = {cid: vec for cid, vec in latest.items() if cid not in self._rows}
        if replaced:
            current = self.index.reconstruct_n(0, self.index.ntotal)
            rows = [self._rows[cid] for cid in replaced]
            new_values = np.stack(list(replaced.values()))
            if not np.array_equal(current[rows], new_values):
                current[rows] = new_values
                self.index.reset()
                self.index.add(current)
        if added:
            self.index.add(np.stack(list(added.values())))
            for cid in added:
                self._rows[cid] = len(self.ids)
                self.ids.append(cid)

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        return self.search_many(_as_matrix(vector, self.dim), k)[0]

    def prune(self, keep: Collection[str], doc_ids: Collection[str]) -> int:
        keep = set(keep)
        kept_rows = [row for row, chunk_id in enumerate(self.ids) if chunk_id in keep]
        removed = len(self.ids) - len(kept_rows)
        if removed:
            vectors = self.index.reconstruct_n(0, self.index.ntotal)[kept_rows]
            self.index.reset()
            if kept_rows:
                self.index.add(np.ascontiguousarray(vectors))
            self.ids = [self.ids[row] for row in kept_rows]
            self._rows = {chunk_id: row for row, chunk_id in enumerate(self.ids)}
        return removed

    def search_many(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        matrix = _as_matrix(vectors, self.dim)
        if k <= 0 or not self.ids:
            return [[] for _ in range(matrix.shape[0])]
        scores, labels = self.index.search(matrix, min(k, len(self.ids)))
        return [
            [
                (self.ids[int(label)], float(score))
                for score, label in zip(row_scores, row_labels, strict=True)
                if label >= 0
            ]
            for row_scores, row_labels in zip(scores, labels, strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        return {"count": len(self.ids), "metric": "cosine", "index_file": FAISS_FILE, "ids_file": IDS_FILE}

    def save(self, directory: Path, **extra: Any) -> None:
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(directory / FAISS_FILE, faiss.serialize_index(self.index).tobytes())
        atomic_write_text(directory / IDS_FILE, json.dumps(self.ids) + "\n")
        super().save(directory, **extra)

    @classmethod
    def load(cls, directory: Path, info: dict[str, Any]) -> FaissStore:
        import faiss

        index_path, ids_path = directory / FAISS_FILE, directory / IDS_FILE
        for path in (index_path, ids_path):
            if not path.is_file():
                raise InputError(f"{path}: missing (the FAISS index folder is incomplete)")
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError as err:
            raise InputError(f"{index_path}: not a FAISS index ({str(err).splitlines()[0]})") from None
        ids = json.loads(ids_path.read_text(encoding="utf-8"))
        if index.d != info.get("dim", index.d):
            raise InputError(
                f"{index_path}: dimension {index.d} differs from {directory / STORE_FILE} ({info['dim']})"
            )
        return cls(str(info.get("embedder", "")), int(index.d), index=index, ids=ids)


def collection_name(prefix: str, embedder: str, dim: int) -> str:
    """A valid Weaviate collection name for a corpus prefix and an embedder, e.g.
    ``RagtuneAllMiniLML6V2D384``: words capitalized, everything else dropped."""

    def camel(text: str) -> str:
        return "".join(word[:1].upper() + word[1:] for word in re.split(r"[^0-9A-Za-z]+", text) if word)

    name = f"{camel(prefix)}{camel(embedder)}D{dim}"
    return name if name[:1].isalpha() else f"C{name}"


class WeaviateStore(VectorStore):
    """A Weaviate collection holding our own vectors (``self_provided``), one per corpus+embedder.

    Objects carry ``chunk_id``, ``doc_id``, ``section_path`` and ``text``; their UUID is
    ``generate_uuid5(chunk_id)``, so importing a chunk again overwrites the same object.
    """

    backend = "weaviate"
    TEXT_PROPERTIES: ClassVar[list[str]] = ["text", "section_path"]

    def __init__(
        self,
        client: Any,
        name: str,
        embedder: str,
        dim: int,
        url: str = "",
        grpc_port: int = 50051,
        batch_size: int = 100,
    ) -> None:
        super().__init__(embedder, dim)
        self.client = client
        self.name = name
        self.url = url
        self.grpc_port = grpc_port
        self.batch_size = batch_size
        self._collection: Any = None

    @classmethod
    def connect(
        cls,
        config: VectorStoreConfig,
        embedder: str,
        dim: int,
        url: str | None = None,
        name: str | None = None,
    ) -> WeaviateStore:
        """Connect to ``url`` (default ``config.weaviate_url``); the API key comes from the env var
        ``config.weaviate_api_key_env`` when it is set."""
        import weaviate
        from weaviate.classes.init import Auth
        from weaviate.exceptions import WeaviateBaseError

        url = url or config.weaviate_url
        if not url:
            raise ConfigError("index.store.weaviate_url: required for the weaviate backend")
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ConfigError(f"index.store.weaviate_url: expected http(s)://host[:port], got {url!r}")
        secure = parsed.scheme == "https"
        api_key = credential_for(url if "://" in url else f"http://{url}", config.weaviate_api_key_env)
        try:
            client = weaviate.connect_to_custom(
                http_host=parsed.hostname,
                http_port=parsed.port or (443 if secure else 80),
                http_secure=secure,
                grpc_host=parsed.hostname,
                grpc_port=config.weaviate_grpc_port,
                grpc_secure=secure,
                auth_credentials=Auth.api_key(api_key) if api_key else None,
            )
        except WeaviateBaseError as err:
            raise VectorStoreError(
                f"cannot connect to Weaviate at {url} (gRPC port {config.weaviate_grpc_port}): {_first_line(err)}"
            ) from None
        return cls(
            client,
            name or collection_name(config.collection_prefix, embedder, dim),
            embedder,
            dim,
            url,
            config.weaviate_grpc_port,
        )

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        from weaviate.exceptions import WeaviateBaseError

        try:
            return func(*args, **kwargs)
        except WeaviateBaseError as err:
            raise VectorStoreError(
                f"Weaviate {self.url or ''} collection {self.name}: {what} failed: {_first_line(err)}"
            ) from None

    def ensure_collection(self) -> Any:
        """The collection, created (self-provided vectors, cosine HNSW) if it does not exist yet."""
        if self._collection is not None:
            return self._collection
        from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances

        if not self._call("existence check", self.client.collections.exists, self.name):
            log.info("creating Weaviate collection %s (dim %d)", self.name, self.dim)
            self._call(
                "create",
                self.client.collections.create,
                self.name,
                properties=[
                    Property(
                        name="chunk_id",
                        data_type=DataType.TEXT,
                        tokenization=Tokenization.FIELD,
                        index_searchable=False,
                    ),
                    Property(
                        name="doc_id",
                        data_type=DataType.TEXT,
                        tokenization=Tokenization.FIELD,
                        index_searchable=False,
                    ),
                    Property(name="section_path", data_type=DataType.TEXT_ARRAY),
                    Property(name="text", data_type=DataType.TEXT),
                ],
                vector_config=Configure.Vectors.self_provided(
                    vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
                ),
            )
        self._collection = self.client.collections.use(self.name)
        return self._collection

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        from weaviate.util import generate_uuid5

        matrix = _as_matrix(vectors, self.dim, len(chunks))
        collection = self.ensure_collection()

        def run_batch() -> None:
            with collection.batch.fixed_size(batch_size=self.batch_size) as batch:
                for chunk, vector in zip(chunks, matrix, strict=True):
                    batch.add_object(
                        properties={
                            "chunk_id": chunk.chunk_id,
                            "doc_id": chunk.doc_id,
                            "section_path": list(chunk.section_path),
                            "text": chunk.text,
                        },
                        vector=vector.tolist(),
                        uuid=generate_uuid5(chunk.chunk_id),
                    )

        self._call("batch import", run_batch)
        failed = list(collection.batch.failed_objects or [])
        if failed:
            raise VectorStoreError(
                f"Weaviate collection {self.name}: {len(failed)} of {len(chunks)} objects failed to import (first: {failed[0].message})"
            )

    def prune(self, keep: Collection[str], doc_ids: Collection[str]) -> int:
        from weaviate.classes.query import Filter

        keep, doc_ids = set(keep), set(doc_ids)
        collection = self.ensure_collection()

        def stale_uuids() -> list[Any]:
            return [
                obj.uuid
                for obj in collection.iterator(return_properties=["chunk_id", "doc_id"])
                if obj.properties.get("doc_id") in doc_ids and obj.properties.get("chunk_id") not in keep
            ]

        stale = self._call("listing objects", stale_uuids)
        for start in range(0, len(stale), PRUNE_BATCH):
            batch = stale[start : start + PRUNE_BATCH]
            result = self._call(
                "deleting stale chunks", collection.data.delete_many, where=Filter.by_id().contains_any(batch)
            )
            if getattr(result, "failed", 0):
                raise VectorStoreError(
                    f"Weaviate collection {self.name}: {result.failed} of {len(batch)} stale chunks not deleted"
                )
        if stale:
            log.info("Weaviate collection %s: deleted %d stale chunk(s)", self.name, len(stale))
        return len(stale)

    @staticmethod
    def _hits(response: Any, score_of: Literal["distance", "score"]) -> list[Hit]:
        hits: list[Hit] = []
        for obj in response.objects:
            chunk_id = obj.properties.get("chunk_id")
            if not chunk_id:
                continue
            if score_of == "distance":
                distance = obj.metadata.distance
                score = 1.0 - float(distance) if distance is not None else 0.0  # cosine distance = 1 - cos
            else:
                score = float(obj.metadata.score or 0.0)
            hits.append((str(chunk_id), score))
        return hits

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        from weaviate.classes.query import MetadataQuery

        query = _as_matrix(vector, self.dim)[0]
        if k <= 0:
            return []
        response = self._call(
            "near_vector search",
            self.ensure_collection().query.near_vector,
            near_vector=query.tolist(),
            limit=k,
            return_metadata=MetadataQuery(distance=True),
            return_properties=["chunk_id"],
        )
        return self._hits(response, "distance")

    def hybrid_search(self, query: str, vector: np.ndarray, k: int, alpha: float = 0.5) -> list[Hit]:
        from weaviate.classes.query import MetadataQuery

        query_vector = _as_matrix(vector, self.dim)[0]
        if k <= 0:
            return []
        response = self._call(
            "hybrid search",
            self.ensure_collection().query.hybrid,
            query=query,
            vector=query_vector.tolist(),
            alpha=alpha,
            limit=k,
            query_properties=self.TEXT_PROPERTIES,
            return_metadata=MetadataQuery(score=True),
            return_properties=["chunk_id"],
        )
        return self._hits(response, "score")

    def describe(self) -> dict[str, Any]:
        # Secrets never go here: only where the server is and which collection holds the vectors.
        return {"url": self.url, "grpc_port": self.grpc_port, "collection": self.name}

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def resolve_backend(config: VectorStoreConfig) -> Literal["faiss", "weaviate"]:
    """``auto`` means Weaviate when ``weaviate_url`` is set, else the embedded FAISS index."""
    if config.backend == "auto":
        return "weaviate" if config.weaviate_url else "faiss"
    return config.backend


def create_store(config: VectorStoreConfig, embedder: str, dim: int) -> VectorStore:
    """A store for new vectors: an empty FAISS index, or the (created if missing) Weaviate collection."""
    if resolve_backend(config) == "weaviate":
        store = WeaviateStore.connect(config, embedder, dim)
        try:
            store.ensure_collection()
        except BaseException:
            store.close()
            raise
        return store
    return FaissStore(embedder, dim)


def read_store_info(directory: Path) -> dict[str, Any]:
    path = directory / STORE_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{path}: not found (is {directory} an index folder written by the index stage?)"
        ) from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err.msg})") from None
    if not isinstance(info, dict) or info.get("backend") not in {"faiss", "weaviate"}:
        raise InputError(f"{path}: no known 'backend' recorded")
    return info


def open_store(directory: Path, config: VectorStoreConfig | None = None) -> VectorStore:
    """Reopen a saved store. For Weaviate, a configured ``weaviate_url`` wins over the recorded
    one (the same server is often reached by another name from inside a cluster)."""
    info = read_store_info(directory)
    if info["backend"] == "faiss":
        return FaissStore.load(directory, info)
    config = config or VectorStoreConfig()
    url: str | None = config.weaviate_url or info.get("url")
    grpc_port = (
        config.weaviate_grpc_port
        if config.weaviate_url
        else int(info.get("grpc_port", config.weaviate_grpc_port))
    )
    store = WeaviateStore.connect(
        config.model_copy(update={"weaviate_grpc_port": grpc_port}),
        str(info.get("embedder", "")),
        int(info["dim"]),
        url=url,
        name=str(info["collection"]),
    )
    try:
        if not store._call("existence check", store.client.collections.exists, store.name):
            raise VectorStoreError(
                f"Weaviate at {url}: collection {store.name} named in {directory / STORE_FILE} does not exist"
            )
    except BaseException:
        store.close()
        raise
    return store
