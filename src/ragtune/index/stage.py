"""The index stage: documents in, chunks and a searchable vector index out.

``run_index`` reads ``documents.jsonl``, cuts every section into token-bounded chunks, embeds
them (through the content cache, so a rerun embeds only new or changed chunks), loads them into
the configured vector store and writes, in ``out_dir``:

* ``chunks.jsonl`` — every :class:`~ragtune.core.records.Chunk`, in document and section order;
* ``index/`` — the FAISS index files, or for Weaviate a pointer (URL and collection name);
* ``index_report.json`` — counts, embedder, dimension, store backend, cache hits and misses.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from pydantic import BaseModel, Field
from tqdm import tqdm

from ragtune.core.artifacts import IndexDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.embedding import (
    Embedder,
    SentenceTransformerEmbedder,
    embed_cached,
    embedding_cache,
    load_embedder,
)
from ragtune.core.records import Chunk, Document, read_jsonl, write_jsonl
from ragtune.index.chunking import chunk_document, load_token_spans
from ragtune.index.store import create_store

log = logging.getLogger(__name__)

CHUNKS_FILE = IndexDir.CHUNKS
INDEX_DIR = IndexDir.STORE_DIR


class SkippedDocument(BaseModel):
    doc_id: str
    source_uri: str
    reason: str


class IndexReport(BaseModel):
    """What the index stage did; written to ``index_report.json``."""

    documents: int = Field(description="Documents read from documents.jsonl.")
    documents_indexed: int = Field(description="Documents that produced at least one chunk.")
    skipped: list[SkippedDocument] = Field(
        default_factory=list, description="Documents without chunks, with the reason."
    )
    sections: int = Field(description="Sections that produced chunks.")
    chunks: int
    duplicate_chunks: int = Field(
        0, description="Chunks dropped because an identical chunk (same id) came first."
    )
    stale_chunks_deleted: int = Field(
        0, description="Chunks of these documents the store held from an earlier build and no longer has."
    )
    max_chunk_tokens: int = 0
    mean_chunk_tokens: float = 0.0
    chunk_tokens: int = Field(description="Configured maximum tokens per chunk.")
    chunk_overlap: int
    embedder: str
    embedder_backend: str
    dim: int
    store_backend: str
    store_location: str = Field(description="Index folder (FAISS) or Weaviate URL and collection.")
    cache_hits: int
    cache_misses: int
    elapsed_s: float

    @property
    def chunk_count(self) -> int:
        """Chunks indexed (the name the KFP component logs it under)."""
        return self.chunks


def chunk_documents(
    config: RagtuneConfig, documents: list[Document]
) -> tuple[list[Chunk], list[SkippedDocument], int]:
    """Chunks of every document, documents skipped (with why), and how many duplicate chunks were dropped."""
    spans_of = load_token_spans(config.index.embedder)
    chunks: list[Chunk] = []
    skipped: list[SkippedDocument] = []
    seen_docs: set[str] = set()
    seen_chunks: set[str] = set()
    duplicates = 0
    for doc in tqdm(documents, desc="chunking", unit="doc"):
        if doc.doc_id in seen_docs:
            skipped.append(
                SkippedDocument(
                    doc_id=doc.doc_id,
                    source_uri=doc.source_uri,
                    reason="duplicate doc_id (an earlier record was indexed)",
                )
            )
            continue
        seen_docs.add(doc.doc_id)
        doc_chunks = chunk_document(doc, spans_of, config.index.chunk_tokens, config.index.chunk_overlap)
        if not doc_chunks:
            skipped.append(
                SkippedDocument(
                    doc_id=doc.doc_id, source_uri=doc.source_uri, reason="no section text to chunk"
                )
            )
            continue
        for chunk in doc_chunks:
            if chunk.chunk_id in seen_chunks:
                duplicates += 1
                continue
            seen_chunks.add(chunk.chunk_id)
            chunks.append(chunk)
    for item in skipped:
        log.warning("not indexed: %s (%s): %s", item.doc_id, item.source_uri, item.reason)
    return chunks, skipped, duplicates


def run_index(
    config: RagtuneConfig, documents_path: Path, out_dir: Path, *, embedder: Embedder | None = None
) -> IndexReport:
    """Chunk, embed and index ``documents_path`` into ``out_dir`` (see the module docstring).

    ``embedder`` lets a caller that already holds the configured embedder reuse it.
    """
    started = time.perf_counter()
    documents_path, out_dir = Path(documents_path), Path(out_dir)
    documents = read_jsonl(documents_path, Document)
    chunks, skipped, duplicates = chunk_documents(config, documents)
    log.info("%d documents -> %d chunks", len(documents), len(chunks))

    embedder = embedder or load_embedder(config.index.embedder)
    if (
        isinstance(embedder, SentenceTransformerEmbedder)
        and config.index.chunk_tokens + 2 > embedder.max_tokens
    ):
        log.warning(
            "index.chunk_tokens=%d exceeds what %s reads (%d tokens with [CLS]/[SEP]); chunk ends will not be embedded",
            config.index.chunk_tokens,
            embedder.name,
            embedder.max_tokens,
        )
    cache = embedding_cache(config)
    vectors = embed_cached(embedder, [chunk.text for chunk in chunks], cache)

    out_dir.mkdir(parents=True, exist_ok=True)
    index_dir = out_dir / INDEX_DIR
    if index_dir.is_dir():  # our own output from an earlier run: no stale FAISS files beside a pointer
        shutil.rmtree(index_dir)
    with create_store(config.index.store, embedder.name, embedder.dim) as store:
        if chunks:
            store.upsert(chunks, vectors)
        # A changed document's lost chunks go, also from a Weaviate collection that outlives runs.
        stale = store.prune({chunk.chunk_id for chunk in chunks}, {doc.doc_id for doc in documents})
        store.save(index_dir, chunks=f"../{CHUNKS_FILE}")
        info = store.describe()
    write_jsonl(out_dir / CHUNKS_FILE, chunks)

    location = (
        f"{info['url']} collection {info['collection']}" if store.backend == "weaviate" else str(index_dir)
    )
    tokens = [chunk.token_count for chunk in chunks]
    report = IndexReport(
        documents=len(documents),
        documents_indexed=len({chunk.doc_id for chunk in chunks}),
        skipped=skipped,
        sections=len({(chunk.doc_id, chunk.section_id) for chunk in chunks}),
        chunks=len(chunks),
        duplicate_chunks=duplicates,
        stale_chunks_deleted=stale,
        max_chunk_tokens=max(tokens, default=0),
        mean_chunk_tokens=round(sum(tokens) / len(tokens), 1) if tokens else 0.0,
        chunk_tokens=config.index.chunk_tokens,
        chunk_overlap=config.index.chunk_overlap,
        embedder=embedder.name,
        embedder_backend=config.index.embedder.backend,
        dim=embedder.dim,
        store_backend=store.backend,
        store_location=location,
        cache_hits=cache.hits,
        cache_misses=cache.misses,
        elapsed_s=round(time.perf_counter() - started, 3),
    )
    IndexDir(out_dir).write_report(report)
    log.info(
        "index: %d chunks (%d embedded, %d from cache) in %s", len(chunks), cache.misses, cache.hits, location
    )
    return report
