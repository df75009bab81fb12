"""The index stage: section-aware chunks, embeddings, and a vector store to retrieve them from.

* :func:`run_index` — ``documents.jsonl`` in; ``chunks.jsonl``, ``index/`` and
  ``index_report.json`` out.
* :func:`load_retriever` — reopen an index for the later stages: ``search(query, k)``.

The pieces: :mod:`.chunking` (token-bounded chunks that never cross a section),
:mod:`ragtune.core.embedding` (local sentence-transformers or an OpenAI-compatible endpoint, behind a content
cache) and :mod:`.store` (embedded FAISS or a Weaviate collection).
"""

from ragtune.index.retriever import Retriever, ScoredChunk, load_retriever
from ragtune.index.stage import IndexReport, run_index

__all__ = ["IndexReport", "Retriever", "ScoredChunk", "load_retriever", "run_index"]
