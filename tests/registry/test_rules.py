"""The registry's pure parts: eval summaries, the promotion rule, params without secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.core.config import build_config
from ragtune.core.errors import ConfigError, InputError
from ragtune.core.reports.train import LossPoint
from ragtune.registry.evalsummary import EvalSummary
from ragtune.registry.promote import decide
from ragtune.registry.register import adapter_sha256, git_revision, lineage_tags
from ragtune.registry.stage import check_scored_adapter, read_train_report, train_metrics
from ragtune.registry.stage import eval_metrics as eval_metrics_for_mlflow
from ragtune.registry.tracking import REDACTED, config_params, flatten, tracking_uri
from tests.registry.conftest import TinyModel, eval_metrics, train_report


def test_summary_reads_the_evaluate_stage_metrics_and_round_trips_through_tags() -> None:
    summary = EvalSummary.from_metrics(eval_metrics(tuned=6.5, base=5.25, ci_low=0.4, ci_high=2.1))
    assert (summary.tuned_mean, summary.base_mean) == (6.5, 5.25)
    assert (summary.delta_mean, summary.delta_ci_low, summary.delta_ci_high) == (1.25, 0.4, 2.1)
    assert summary.delta_n == 30 and summary.primary_n == 30 and summary.judge_templates == "judge_score@1"
    assert summary.primary_metric == "judge" and summary.judge_check_passed is True
    assert summary.judge_is_weak is False and summary.primary_ci_low == 0.4
    assert EvalSummary.from_tags(summary.to_tags()) == summary
    assert EvalSummary.from_tags({"other": "x"}) is None


def test_an_older_or_malformed_report_is_refused_naming_the_file_and_the_field(tmp_path: Path) -> None:
    data = eval_metrics(tuned=4.0, base=3.0, ci_low=0.1, ci_high=1.9).model_dump(mode="json")
    del data["means"]  # an older layout: the registry no longer guesses where the means are
    (tmp_path / "metrics.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"metrics\.json: not a valid EvalMetrics \(means: Field required\)"):
        EvalSummary.load(tmp_path)

    train = tmp_path / "train"
    train.mkdir()
    report = train_report([LossPoint(step=1, loss=2.0)]).model_dump(mode="json")
    report["curve"] = report.pop("loss_curve")  # an alias spelling is an error, not a second guess
    del report["dataset_sha256"]
    (train / "metrics.json").write_text(json.dumps(report))
    with pytest.raises(
        InputError,
        match=r"train/metrics\.json: not a valid TrainReport \(dataset_sha256: Field required; 1 more",
    ):
        read_train_report(train)
    assert read_train_report(tmp_path / "nothing") is None  # no report at all: logged without it


def test_eval_metrics_for_mlflow_hold_the_judge_check_and_comparisons() -> None:
    metrics = eval_metrics_for_mlflow(eval_metrics(tuned=6.0, base=5.0, ci_low=0.4, ci_high=1.6))
    assert metrics["judge_check/discrimination"] == 0.95 and metrics["judge_check/passed"] == 1.0
    assert metrics["comparisons/tuned-base/judge/ci_low"] == 0.4
    assert metrics["comparisons/tuned-base/judge/n"] == 30


def test_params_hold_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    monkeypatch.setenv("MY_JUDGE_KEY", "judge-secret-456")
    config = build_config(
        {
            "llm": {"judge": {"api_key_env": "MY_JUDGE_KEY", "model": "judge-secret-456"}},
            "registry": {"tracking_uri": "https://mlflow.example:5000/"},
        }
    )
    params = config_params(config)
    assert params["llm.judge.api_key_env"] == "MY_JUDGE_KEY"  # the variable's name is fine to log
    assert params["llm.judge.model"] == REDACTED  # a secret value pasted into the config is not
    assert not any("sk-test-secret" in v or "judge-secret" in v for v in params.values())
    assert params["registry.tracking_uri"] == "https://mlflow.example:5000/"
    assert flatten({"a": {"api_key": "x", "token": "y", "db_password": "z", "n": 1}}) == {"a.n": "1"}


def test_tracking_uri_defaults_to_local_sqlite_and_refuses_credentials(tmp_path: Path) -> None:
    config = build_config({"run": {"root": str(tmp_path / "r")}})
    assert tracking_uri(config) == f"sqlite:///{(tmp_path / 'r' / 'mlflow' / 'mlflow.db').resolve()}"
    with pytest.raises(ConfigError, match=r"registry\.tracking_uri: .*MLFLOW_TRACKING_USERNAME"):
        build_config({"registry": {"tracking_uri": "https://user:pw@mlflow.example"}})
    with pytest.raises(ConfigError, match=r"registry\.challenger_alias: .*differ"):
        build_config({"registry": {"challenger_alias": "champion"}})


def test_loss_curve_becomes_step_series() -> None:
    metrics = train_metrics(
        train_report([LossPoint(step=1, loss=2.0), LossPoint(step=2, loss=1.6, eval_loss=1.8)])
    )
    assert metrics["train_loss"] == 0.9 and metrics["eval_loss_after"] == 0.8 and metrics["global_step"] == 2
    assert metrics["loss"] == [(1, 2.0), (2, 1.6)]
    assert metrics["eval_loss"] == [(2, 1.8)]


def test_git_revision_falls_back_to_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGTUNE_GIT_REVISION", "abc123")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert git_revision(tmp_path) == "abc123"
    monkeypatch.delenv("RAGTUNE_GIT_REVISION")
    assert git_revision(tmp_path) == "unknown"


def test_lineage_tags_name_well_known_keys_and_flag_a_dataset_mismatch() -> None:
    tags = lineage_tags(
        {"corpus_hash": "c1", "dataset_hash": "d1", "run_by": "ci"},
        "d2",
        pipeline_run_id="pipe-7",
        base_model="smollm2",
    )
    assert tags["ragtune.corpus_hash"] == "c1" and tags["ragtune.lineage.run_by"] == "ci"
    assert tags["ragtune.pipeline_run_id"] == "pipe-7" and tags["ragtune.base_model"] == "smollm2"
    assert tags["ragtune.lineage_warning"] == "adapter trained on dataset d2, lineage names d1"
    tags = lineage_tags({}, "d2", pipeline_run_id=None, base_model="smollm2")
    assert tags["ragtune.dataset_hash"] == "d2" and "ragtune.lineage_warning" not in tags


def test_registering_another_adapter_than_the_one_scored_is_refused(
    tiny_adapter: TinyModel, tmp_path: Path
) -> None:
    scored = eval_metrics(6.0, 5.0, 0.2, 1.8, adapter_sha256=adapter_sha256(tiny_adapter.adapter_dir))
    check_scored_adapter(scored, tmp_path / "metrics.json", tiny_adapter.adapter_dir)  # the same: fine
    other = scored.model_copy(update={"adapter_sha256": "b" * 64})
    with pytest.raises(InputError) as refused:
        check_scored_adapter(other, tmp_path / "metrics.json", tiny_adapter.adapter_dir)
    message = str(refused.value)
    assert "\n" not in message and "b" * 64 in message
    assert adapter_sha256(tiny_adapter.adapter_dir) in message and "metrics.json" in message
    with pytest.raises(InputError, match="no adapter digest"):
        check_scored_adapter(
            scored.model_copy(update={"adapter_sha256": None}), tmp_path / "m.json", tiny_adapter.adapter_dir
        )


def test_the_gate_reads_corpus_fact_accuracy_from_the_primary_eval_set() -> None:
    """evaluate's auto metric without a passing judge: corpus-fact accuracy of the primary eval set."""
    from ragtune.core.reports.evaluation import EvalSetMetrics, LikelihoodMetric
    from tests.registry.conftest import comparison

    facts = LikelihoodMetric(
        metric="corpus_facts",
        n_items=40,
        n_statements=120,
        n_clusters=35,
        distractors=3,
        items_without_statement=0,
        comparisons=[comparison("tuned-base", 0.12, 0.05, 0.19, 40, metric="corpus_facts")],
    )
    generalization = EvalSetMetrics(
        name="generalization",
        file="eval.jsonl",
        present=True,
        n_items=40,
        n_clusters=35,
        bootstrap_unit="source_chunk",
        corpus_facts=facts,
    )
    metrics = eval_metrics(6.0, 5.0, -0.5, 2.5, n=40).model_copy(
        update={"primary_metric": "corpus_facts", "eval_sets": {"generalization": generalization}}
    )
    summary = EvalSummary.from_metrics(metrics)
    assert (summary.primary_metric, summary.primary_delta_mean, summary.primary_n) == (
        "corpus_facts",
        0.12,
        40,
    )
    verdict = decide(build_config({}), summary, None, None)
    assert verdict.promoted and "tuned − base (corpus_facts) +0.120" in verdict.reason
