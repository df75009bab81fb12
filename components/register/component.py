"""KFP component: log the run to MLflow, register the adapter, decide its alias."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register_model(
    config_json: str,
    documents: Input[Dataset],
    dataset: Input[Dataset],
    model: Input[Model],
    evaluation: Input[Dataset],
    pipeline_run_id: str,
    git_revision: str,
    decision: Output[Dataset],
) -> str:
    """Register the adapter as a new MLflow model version and set `champion` or `challenger`.

    Args:
        config_json: The resolved ragtune config as JSON (``registry.*``).
        documents: Output of the parse component (its hash is the corpus lineage).
        dataset: Output of the synthesis component.
        model: Output of the train component.
        evaluation: Output of the evaluate component (metrics.json decides the alias).
        pipeline_run_id: The KFP run id; one MLflow run per pipeline run.
        git_revision: The git revision the run was submitted for (recorded as a tag), or empty.
        decision: decision.json: version, alias, and the reason with its numbers.

    Returns:
        The alias set on the new version.
    """
    from pathlib import Path

    from ragtune.core.config import config_from_json
    from ragtune.registry import pipeline_lineage, run_registry

    lineage = pipeline_lineage(Path(documents.path), git_revision)
    result = run_registry(
        config_from_json(config_json),
        train_dir=Path(model.path),
        eval_dir=Path(evaluation.path),
        dataset_dir=Path(dataset.path),
        lineage=lineage,
        pipeline_run_id=pipeline_run_id,
        out_dir=Path(decision.path),
    )
    return result.alias
