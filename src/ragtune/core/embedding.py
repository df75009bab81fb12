"""Text embedders: one interface, a local sentence-transformers model and an OpenAI-compatible API.

Every embedder returns float32 rows of unit length, so an inner product is a cosine similarity.
:func:`embed_cached` puts a content-addressed cache in front of any embedder, keyed by the
embedder's name and a hash of the text, so a rerun embeds only new or changed chunks.
"""

from __future__ import annotations

import io
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from ragtune.core.cache import ContentCache, cache_key
from ragtune.core.config import EmbedderConfig, RagtuneConfig
from ragtune.core.endpoints import OPENAI_URL, credential_for, plain_http
from ragtune.core.errors import ConfigError, RagtuneError, StorageError
from ragtune.core.models import MINILM_NAMES, resolve_embedder_path
from ragtune.core.records import sha256_hex
from ragtune.core.retry import RetriesExhausted, Retryable, RetryPolicy, call_with_retries
from ragtune.core.storage import S3Storage, open_storage

log = logging.getLogger(__name__)


class EmbeddingError(RagtuneError):
    """An embedding backend failed or answered something unusable."""


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 copy with every row scaled to unit L2 norm (zero rows stay zero)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise EmbeddingError(f"expected a 2-d array of embeddings, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


class Embedder(ABC):
    """Maps texts to unit-length float32 vectors of a fixed dimension."""

    name: str
    batch_size: int = 64

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of every vector."""

    @abstractmethod
    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """Raw embeddings of one batch (any float dtype, any norm)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` as a ``(len(texts), dim)`` float32 array of unit rows."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            self._encode_batch(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)
        ]
        vectors = normalize_rows(np.concatenate(parts, axis=0))
        if vectors.shape[0] != len(texts):
            raise EmbeddingError(f"{self.name}: got {vectors.shape[0]} embeddings for {len(texts)} texts")
        return vectors


class SentenceTransformerEmbedder(Embedder):
    """A local sentence-transformers model on CPU (by default the packaged all-MiniLM-L6-v2)."""

    def __init__(self, model: str, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = "all-MiniLM-L6-v2" if model.lower() in MINILM_NAMES else model
        self.batch_size = batch_size
        path = resolve_embedder_path(model)
        try:
            self.model = SentenceTransformer(path, device="cpu")
        except OSError as err:
            raise ConfigError(f"index.embedder.model: cannot load {model!r} ({err})") from None
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise ConfigError(f"index.embedder.model: {model!r} does not report an embedding dimension")
        self._dim = int(dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        """Longest input (in tokens, special tokens included) the model reads before truncating."""
        return int(self.model.get_max_seq_length() or 512)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        )


class OpenAIEmbedder(Embedder):
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, vLLM, TEI, Ollama, LiteLLM ...)."""

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key_env: str,
        batch_size: int = 64,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        retry: RetryPolicy | None = None,
    ) -> None:
        from openai import DefaultHttpxClient, OpenAI

        self.name = f"openai/{model}"
        self.model = model
        self.batch_size = batch_size
        # Self-hosted servers often need no key, but the client insists on one.
        api_key = credential_for(base_url or OPENAI_URL, api_key_env) or "unset"
        # Retries are ours (index.embedder.max_retries, core.retry), not the SDK's fixed count.
        http_client = DefaultHttpxClient(verify=False) if plain_http(base_url) else None
        self.client = OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0, http_client=http_client
        )
        self.retry = retry or RetryPolicy(max_retries)
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._encode_batch(["dimension probe"]).shape[1])
        return self._dim

    def _request(self, texts: list[str]) -> Any:
        """One call: the response, :class:`Retryable` on a timeout, a lost connection, 429 or 5xx."""
        import openai

        where = f"embeddings endpoint {self.client.base_url}"
        try:
            return self.client.embeddings.create(model=self.model, input=texts, encoding_format="float")
        except openai.APIStatusError as err:
            problem = f"{where}: HTTP {err.status_code} for model {self.model!r}"
            if err.status_code == 429 or err.status_code >= 500:
                raise Retryable(problem, err.response.headers.get("retry-after")) from None
            raise EmbeddingError(problem) from None
        except openai.APIConnectionError as err:  # timeouts included
            raise Retryable(f"{where}: {type(err).__name__}: {err.message}") from None
        except openai.APIError as err:
            raise EmbeddingError(f"{where}: {type(err).__name__}: {err.message}") from None

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        try:
            response = call_with_retries(lambda: self._request(texts), self.retry, self.name)
        except RetriesExhausted as err:
            raise EmbeddingError(str(err)) from None
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise EmbeddingError(
                f"embeddings endpoint {self.client.base_url}: {len(rows)} embeddings for {len(texts)} inputs"
            )
        matrix = np.asarray([row.embedding for row in rows], dtype=np.float32)
        if self._dim is None:
            self._dim = int(matrix.shape[1])
        elif matrix.shape[1] != self._dim:
            raise EmbeddingError(
                f"embeddings endpoint {self.client.base_url}: dimension changed from {self._dim} to {matrix.shape[1]}"
            )
        return matrix


def load_embedder(config: EmbedderConfig) -> Embedder:
    """The embedder ``index.embedder`` describes."""
    if config.backend == "openai":
        return OpenAIEmbedder(
            config.model,
            config.base_url,
            config.api_key_env,
            config.batch_size,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
        )
    return SentenceTransformerEmbedder(config.model, config.batch_size)


def _to_npy(vector: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(vector, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _from_npy(data: bytes, dim: int) -> np.ndarray:
    """A cached vector; ``ValueError`` when the entry is truncated, corrupt or of another shape."""
    vector = np.load(io.BytesIO(data), allow_pickle=False)
    if vector.shape != (dim,) or vector.dtype != np.float32 or not np.all(np.isfinite(vector)):
        raise ValueError(f"expected {dim} finite float32 values, got {vector.dtype} {vector.shape}")
    return vector


def embedding_key(embedder_name: str, text: str) -> str:
    return cache_key("embedding", embedder_name, sha256_hex(text))


def embed_cached(
    embedder: Embedder, texts: Sequence[str], cache: ContentCache | None, progress: bool = True
) -> np.ndarray:
    """Embeddings of ``texts``, reading what ``cache`` has and embedding (then storing) the rest.

    ``cache.hits``/``cache.misses`` count one per text. A progress bar follows the texts embedded.
    """
    texts = list(texts)
    vectors: list[np.ndarray | None] = [None] * len(texts)
    missing: list[int] = []
    dim = embedder.dim if cache is not None and texts else 0
    for i, text in enumerate(texts):
        key = embedding_key(embedder.name, text)
        vectors[i] = cache.get_decoded(key, lambda data: _from_npy(data, dim)) if cache is not None else None
        if vectors[i] is None:
            missing.append(i)
    if missing:
        # Longest first, as sentence-transformers orders one call: batches of similar length pad least.
        missing.sort(key=lambda i: -len(texts[i]))
        step = max(1, embedder.batch_size)
        quiet = {} if progress else {"disable": True}  # leave tqdm's own default (and TQDM_DISABLE) alone
        with tqdm(total=len(missing), desc=f"embedding ({embedder.name})", unit="chunk", **quiet) as bar:
            for offset in range(0, len(missing), step):
                batch = missing[offset : offset + step]
                encoded = embedder.encode([texts[i] for i in batch])
                for i, vector in zip(batch, encoded, strict=True):
                    vectors[i] = vector
                    if cache is not None:
                        cache.put_bytes(embedding_key(embedder.name, texts[i]), _to_npy(vector))
                bar.update(len(batch))
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    matrix = np.stack([v for v in vectors if v is not None]).astype(np.float32, copy=False)
    if matrix.shape != (len(texts), embedder.dim):
        raise EmbeddingError(
            f"{embedder.name}: cached embeddings do not match dimension {embedder.dim}; clear the embeddings cache"
        )
    return matrix


def embedding_cache(config: RagtuneConfig) -> ContentCache:
    """The ``embeddings`` namespace of the run's content cache."""
    storage = open_storage(config.cache_uri(), config.storage)
    if isinstance(storage, S3Storage):
        from minio.error import S3Error

        try:
            storage.ensure_bucket()
        except S3Error as err:
            raise StorageError(f"{storage.uri}: cannot create the cache bucket ({err.code})") from None
    return ContentCache(storage, "embeddings")
