"""KFP component: parse the corpus into documents (GROBID or the built-in readers)."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def parse_documents(
    config_json: str, corpus_uri: str, documents: Output[Dataset], metrics: Output[Metrics]
) -> int:
    """Parse every document of the corpus; bad files are reported, not fatal.

    Args:
        config_json: The resolved ragtune config as JSON (no secrets).
        corpus_uri: Folder or s3://bucket/prefix of the corpus; empty keeps the config's.
        documents: Folder with documents.jsonl and parse_report.json.
        metrics: Parsed/failed counts for the Kubeflow UI.

    Returns:
        The number of files that failed to parse (the run goes on with the rest).
    """
    from pathlib import Path

    from ragtune.core.config import config_from_json
    from ragtune.core.errors import InputError
    from ragtune.parse import run_parse

    config = config_from_json(config_json, {"corpus.uri": corpus_uri})
    report = run_parse(config, Path(documents.path))
    metrics.log_metric("documents_parsed", report.parsed_count)
    metrics.log_metric("documents_failed", report.failed_count)
    if report.parsed_count == 0:
        raise InputError(
            f"no document could be parsed from {config.corpus.uri}; see {documents.path}/parse_report.json"
        )
    return report.failed_count
