"""KFP component: chunk, embed and index the parsed documents."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def index_documents(
    config_json: str, documents: Input[Dataset], index: Output[Artifact], metrics: Output[Metrics]
) -> None:
    """Chunk by section, embed, and write the vector index (FAISS files or a Weaviate collection).

    Args:
        config_json: The resolved ragtune config as JSON (no secrets).
        documents: Output of the parse component (documents.jsonl inside).
        index: Folder with chunks.jsonl, index/ and index_report.json; later stages retrieve from it.
        metrics: Chunk and embedding-cache counts for the Kubeflow UI.
    """
    from pathlib import Path

    from ragtune.core.artifacts import DocumentsDir
    from ragtune.core.config import config_from_json
    from ragtune.index import run_index

    config = config_from_json(config_json)
    report = run_index(config, DocumentsDir(Path(documents.path)).documents_path, Path(index.path))
    metrics.log_metric("chunks", report.chunks)
    metrics.log_metric("embedding_cache_hits", report.cache_hits)
