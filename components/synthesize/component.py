"""KFP components: synthesize the instruction dataset, sharded for fan-out, then merged."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def shard_indexes(shard_count: int) -> list:
    """The shard indexes 0..shard_count-1 that the synthesis fan-out iterates over.

    Args:
        shard_count: How many parallel synthesis tasks to run (at least 1).

    Returns:
        [0, 1, ..., shard_count - 1].
    """
    return list(range(max(1, shard_count)))


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def synthesize_shard(
    config_json: str, documents: Input[Dataset], index: Input[Artifact], shard_index: int, shard_count: int
) -> int:
    """Make the LLM calls of one shard of the question slots, filling the shared response cache.

    Args:
        config_json: The resolved ragtune config as JSON; ``cache.uri`` must be shared by all shards
            (an s3:// URI on a cluster) for the merge to find their answers.
        documents: Output of the parse component.
        index: Output of the index component.
        shard_index: Which shard this task runs (0-based).
        shard_count: How many shards the slots are split into.

    Returns:
        The number of question slots this shard handled (0 with one shard: the merge makes the calls).
    """
    if shard_count <= 1:
        return 0
    import tempfile
    from pathlib import Path

    from ragtune.core.artifacts import DocumentsDir, IndexDir
    from ragtune.core.config import config_from_json
    from ragtune.synth import run_synth

    config = config_from_json(config_json)
    with tempfile.TemporaryDirectory() as scratch:  # the shard's own files are not the dataset
        report = run_synth(
            config,
            DocumentsDir(Path(documents.path)).documents_path,
            IndexDir(Path(index.path)).store_dir,
            Path(scratch),
            shard=(shard_index, shard_count),
        )
    return report.generated


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def synthesize_dataset(
    config_json: str,
    documents: Input[Dataset],
    index: Input[Artifact],
    dataset: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """Write the dataset over every slot: near-duplicates across shards removed, split, card.

    After the shards ran, every LLM call here is a cache hit; without shards, this task makes them.

    Args:
        config_json: The resolved ragtune config as JSON.
        documents: Output of the parse component.
        index: Output of the index component.
        dataset: train.jsonl, eval.jsonl, rejected.jsonl, Alpaca files, README.md card, synth_report.json.
        metrics: Kept/rejected counts and cache hits for the Kubeflow UI.
    """
    from pathlib import Path

    from ragtune.core.artifacts import DocumentsDir, IndexDir
    from ragtune.core.config import config_from_json
    from ragtune.core.errors import InputError
    from ragtune.synth import run_synth

    config = config_from_json(config_json)
    report = run_synth(
        config,
        DocumentsDir(Path(documents.path)).documents_path,
        IndexDir(Path(index.path)).store_dir,
        Path(dataset.path),
    )
    for name in ("generated", "kept", "train", "eval", "rejected", "cache_hits", "cache_misses"):
        metrics.log_metric(name, getattr(report, name))
    if report.train == 0:
        raise InputError(
            f"synthesis kept no training item of {report.generated}; reasons in {dataset.path}/rejected.jsonl"
        )
