"""KFP component: judge base vs tuned answers on the eval split."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def evaluate_adapter(
    config_json: str,
    dataset: Input[Dataset],
    model: Input[Model],
    accelerator_type: str,
    evaluation: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
) -> None:
    """Answer the eval questions with base and tuned models (and contenders), judge, summarise.

    Args:
        config_json: The resolved ragtune config as JSON (``llm.judge`` is the judge).
        dataset: Output of the synthesis component (eval.jsonl is read).
        model: Output of the train component (adapter/ is read).
        accelerator_type: The accelerator resource requested, recorded on the evaluation artifact.
        evaluation: scores.jsonl, pairwise.jsonl, metrics.json and report.html.
        report: The HTML report, shown in the Kubeflow UI's visualization tab.
        metrics: Judge sums and means per contender and the tuned-minus-base difference.
    """
    import shutil
    from pathlib import Path

    from ragtune.core.config import config_from_json
    from ragtune.evaluate import run_evaluate

    result = run_evaluate(
        config_from_json(config_json), Path(dataset.path), Path(model.path) / "adapter", Path(evaluation.path)
    )
    shutil.copyfile(result.report_path, report.path)
    evaluation.metadata.update({"accelerator_type": accelerator_type, "judge_model": result.judge_model})
    for name, total in result.sums.items():
        metrics.log_metric(f"judge_sum_{name}", float(total))
    for name, mean in result.means.items():
        if mean is not None:
            metrics.log_metric(f"judge_mean_{name}", float(mean))
    if result.delta_mean is not None:
        metrics.log_metric("delta_mean", float(result.delta_mean))
        metrics.log_metric("delta_ci_low", float(result.delta_ci_low or 0.0))
