"""KFP component: judge base, tuned, their RAG twins and the champion on the eval split."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def evaluate_adapter(
    config_json: str,
    dataset: Input[Dataset],
    index: Input[Dataset],
    model: Input[Model],
    accelerator_type: str,
    evaluation: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
) -> None:
    """Answer the eval questions with base, tuned, their RAG twins and the champion; judge, summarise.

    Args:
        config_json: The resolved ragtune config as JSON (``llm.judge`` is the judge).
        dataset: Output of the synthesis component (eval.jsonl and train.jsonl are read).
        index: Output of the index component (base_rag and tuned_rag retrieve from it).
        model: Output of the train component (adapter/ is read).
        accelerator_type: The accelerator resource requested, recorded on the evaluation artifact.
        evaluation: scores.jsonl, pairwise.jsonl, metrics.json and report.html.
        report: The HTML report, shown in the Kubeflow UI's visualization tab.
        metrics: Judge sums and means per contender and the tuned-minus-base difference.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from ragtune.core.artifacts import ModelDir
    from ragtune.core.config import config_from_json
    from ragtune.core.reports.evaluation import COMPARISONS
    from ragtune.evaluate import run_evaluate
    from ragtune.registry import fetch_champion

    config = config_from_json(config_json)
    with tempfile.TemporaryDirectory(prefix="ragtune-champion-") as scratch:
        champion = fetch_champion(config, Path(scratch))  # judged on the same items, for the gate
        result = run_evaluate(
            config,
            Path(dataset.path),
            ModelDir(Path(model.path)).adapter_dir,
            Path(evaluation.path),
            index_dir=Path(index.path),
            extra_adapters={"champion": champion} if champion is not None else None,
        )
    shutil.copyfile(result.report_path, report.path)
    found = result.metrics
    evaluation.metadata.update(
        {
            "accelerator_type": accelerator_type,
            "judge_model": found.judge_model,
            "primary_metric": found.primary_metric,
            "judge_check_passed": bool(found.judge_check and found.judge_check.passed),
        }
    )
    for name, total in found.sums.items():
        metrics.log_metric(f"judge_sum_{name}", float(total))
    for name, mean in found.means.items():
        if mean is not None:
            metrics.log_metric(f"judge_mean_{name}", float(mean))
    if found.delta_mean is not None:
        metrics.log_metric("delta_mean", float(found.delta_mean))
        metrics.log_metric("delta_ci_low", float(found.delta_ci_low or 0.0))
    for first, second in COMPARISONS:  # on the primary metric (and, for a likelihood one, its eval set)
        comparison = found.comparison(f"{first}-{second}")
        if comparison is not None and comparison.mean is not None:
            metrics.log_metric(f"{comparison.name}_mean", float(comparison.mean))
            metrics.log_metric(f"{comparison.name}_ci_low", float(comparison.ci_low or 0.0))
    for set_name, entry in found.eval_sets.items():
        for contender, score in (entry.corpus_facts.contenders if entry.corpus_facts else {}).items():
            if score.accuracy is not None:
                metrics.log_metric(f"corpus_facts_{set_name}_{contender}", float(score.accuracy))
    if found.judge_check is not None and found.judge_check.discrimination is not None:
        metrics.log_metric("judge_check_discrimination", float(found.judge_check.discrimination))
