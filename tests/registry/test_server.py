"""Registration and promotion against a real ``mlflow server`` whose artifacts live on (moto) S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ragtune.core.artifacts import DatasetDir, ModelDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import InputError
from ragtune.core.reports.train import LossPoint
from ragtune.registry import (
    EvalSummary,
    ModelVersionInfo,
    fetch_champion,
    load_registered_model,
    promote,
    promote_version,
    register_model,
    run_registry,
    start_pipeline_run,
)
from ragtune.registry.audit import current_actor
from ragtune.registry.register import adapter_sha256
from tests.registry.conftest import (
    DATASET_HASH,
    LINEAGE,
    MlflowServer,
    TinyModel,
    bucket_keys,
    make_config,
    synth_report,
    train_report,
    write_eval,
)


def _client(server: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def _register(
    config: RagtuneConfig,
    tiny: TinyModel,
    tmp_path: Path,
    pipeline_run_id: str,
    tuned: float,
    base: float,
    ci: tuple[float, float] = (0.4, 1.6),
    versus_champion: tuple[float, float, float] | None = None,
) -> tuple[ModelVersionInfo, EvalSummary]:
    run_id = start_pipeline_run(config, pipeline_run_id)
    champion = (
        (f"adapter:{adapter_sha256(tiny.adapter_dir)[:32]}", *versus_champion) if versus_champion else None
    )
    summary = EvalSummary.load(
        write_eval(
            tmp_path / pipeline_run_id / "eval", tuned, base, *ci, champion=champion, adapter=tiny.adapter_dir
        )
    )
    return register_model(config, run_id, tiny.adapter_dir, summary, LINEAGE), summary


def _alias(server: MlflowServer, config: RagtuneConfig, alias: str) -> int:
    return int(_client(server).get_model_version_by_alias(config.registry.model_name, alias).version)


def test_register_puts_the_model_on_s3_with_its_lineage(
    mlflow_server: MlflowServer, tiny_adapter: TinyModel, tmp_path: Path
) -> None:
    config = make_config(tmp_path, "lineage", mlflow_server.url)
    info, _ = _register(config, tiny_adapter, tmp_path, "pipe-lineage", tuned=6.0, base=5.0)
    assert info.version == 1 and info.model_id and info.source.endswith(f"/models/{info.model_id}/artifacts")
    tags = _client(mlflow_server).get_model_version(info.name, "1").tags
    assert tags["ragtune.corpus_hash"] == "c" * 64
    assert tags["ragtune.dataset_hash"] == DATASET_HASH
    assert tags["ragtune.pipeline_run_id"] == "pipe-lineage"
    assert tags["ragtune.base_model"] == str(tiny_adapter.base_dir)
    assert tags["ragtune.git_commit"]
    assert float(tags["ragtune.eval.tuned_mean"]) == 6.0 and float(tags["ragtune.eval.delta_ci_low"]) == 0.4
    keys = [k for k in bucket_keys(mlflow_server) if info.model_id in k]
    assert any(k.endswith("/MLmodel") for k in keys)
    assert any(k.endswith("artifacts/adapter/adapter_model.safetensors") for k in keys)
    assert all(k.startswith(f"{mlflow_server.prefix}/") for k in keys)
    # a retried step (same run, same adapter) gets the same version back
    again = register_model(config, info.run_id or "", tiny_adapter.adapter_dir, None, LINEAGE)
    assert again.version == 1


def test_champion_replaced_only_by_a_better_version(
    mlflow_server: MlflowServer, tiny_adapter: TinyModel, tmp_path: Path
) -> None:
    config = make_config(tmp_path, "ladder", mlflow_server.url)
    first, summary = _register(config, tiny_adapter, tmp_path, "pipe-1", tuned=6.0, base=5.0)
    decision = promote(config, first, summary)
    assert decision.promoted and decision.alias == "champion" and decision.reference == "base"
    assert "tuned − base (judge) +1.000" in decision.reason and _alias(mlflow_server, config, "champion") == 1

    second, summary = _register(
        config, tiny_adapter, tmp_path, "pipe-2", tuned=6.5, base=5.0, versus_champion=(0.5, 0.1, 0.9)
    )
    decision = promote(config, second, summary)
    assert decision.promoted and decision.previous_champion == 1 and decision.reference_version == 1
    assert _alias(mlflow_server, config, "champion") == 2
    old_tags = _client(mlflow_server).get_model_version(config.registry.model_name, "1").tags
    assert old_tags["ragtune.promotion"] == "replaced" and old_tags["ragtune.replaced_by"] == "2"

    third, summary = _register(
        config, tiny_adapter, tmp_path, "pipe-3", tuned=6.2, base=5.0, versus_champion=(-0.3, -0.6, 0.0)
    )
    decision = promote(config, third, summary)  # beats the base, not the champion
    assert not decision.promoted and decision.alias == "challenger"
    assert "tuned − champion version 2 (judge) -0.300" in decision.reason
    assert _alias(mlflow_server, config, "champion") == 2
    assert _alias(mlflow_server, config, "challenger") == 3
    tags = _client(mlflow_server).get_model_version(config.registry.model_name, "3").tags
    assert tags["ragtune.promotion"] == "challenger" and tags["ragtune.promotion_reason"] == decision.reason

    forced = promote_version(config, 3, force=True)  # the CLI path: numbers from the version's tags
    assert (
        forced.promoted
        and forced.forced
        and forced.reason.startswith(f"Forced by {current_actor().label()} (")
    )
    assert _alias(mlflow_server, config, "champion") == 3
    with pytest.raises(Exception, match=r"RESOURCE_DOES_NOT_EXIST|not found|does not exist"):
        _client(mlflow_server).get_model_version_by_alias(config.registry.model_name, "challenger")


def test_refusals_name_their_numbers(
    mlflow_server: MlflowServer, tiny_adapter: TinyModel, tmp_path: Path
) -> None:
    config = make_config(tmp_path, "refuse", mlflow_server.url, promotion_margin=0.5)
    small, summary = _register(config, tiny_adapter, tmp_path, "pipe-small", tuned=5.2, base=5.0)
    decision = promote(config, small, summary)
    assert not decision.promoted and decision.alias == "challenger"
    assert "tuned − base (judge) +0.200 (margin 0.500, n=30) — below the margin" in decision.reason

    noisy, summary = _register(
        config, tiny_adapter, tmp_path, "pipe-noisy", tuned=6.0, base=5.0, ci=(-0.1, 2.1)
    )
    decision = promote(config, noisy, summary)
    assert not decision.promoted and "CI [-0.100, 2.100] does not lie above 0" in decision.reason
    assert _alias(mlflow_server, config, "challenger") == noisy.version
    with pytest.raises(Exception, match=r"RESOURCE_DOES_NOT_EXIST|not found|does not exist"):
        _client(mlflow_server).get_model_version_by_alias(config.registry.model_name, "champion")
    with pytest.raises(InputError, match="no version 99"):
        promote_version(config, 99, force=False)


def test_pipeline_run_is_found_again(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    config = make_config(tmp_path, "idem", mlflow_server.url)
    first = start_pipeline_run(config, "pipe-a")
    assert start_pipeline_run(config, "pipe-a") == first
    assert start_pipeline_run(config, "pipe-b") != first


def _stage_outputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "README.md").write_text("# Dataset card\n")
    item = {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "q"}]}
    (dataset / "train.jsonl").write_text(json.dumps(item) + "\n" + json.dumps(item) + "\n")
    (dataset / "eval.jsonl").write_text(json.dumps(item) + "\n")
    stats = {"concurrency": 6, "rounds": 4, "busy_ms": 1234}
    DatasetDir(dataset).write_report(synth_report(kept_share=0.55, llm_stats={"generator": stats}))
    train = tmp_path / "train"
    train.mkdir()
    curve = [LossPoint(step=s, loss=2.0 / s, eval_loss=2.2 / s) for s in (1, 2, 3)]
    ModelDir(train).write_report(train_report(curve))
    return dataset, train, tmp_path / "eval"


def test_pipeline_step_logs_registers_promotes_and_leaks_no_secret(
    mlflow_server: MlflowServer, tiny_adapter: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-secret-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    config = make_config(tmp_path, "pipeline", mlflow_server.url)
    dataset, train, evaluation = _stage_outputs(tmp_path)
    (train / "adapter").symlink_to(tiny_adapter.adapter_dir, target_is_directory=True)
    write_eval(evaluation, tuned=6.0, base=5.0, ci_low=0.3, ci_high=1.7, adapter=tiny_adapter.adapter_dir)
    lineage = {**LINEAGE, "note": f"built with key {secret}"}

    decision = run_registry(config, train, evaluation, dataset, lineage, "pipe-full", tmp_path / "out")
    assert decision.promoted and decision.alias == "champion"
    record = json.loads((tmp_path / "out" / "decision.json").read_text())
    assert record["version"] == 1 and record["model_version"]["model_uri"].endswith("/1")

    client = _client(mlflow_server)
    parent = client.get_run(record["mlflow"]["run_id"])
    children = {
        r.data.tags["ragtune.stage"]: r
        for r in client.search_runs(
            [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
    }
    assert set(children) == {"dataset", "train", "evaluate"}
    assert [m.step for m in client.get_metric_history(children["train"].info.run_id, "loss")] == [1, 2, 3]
    assert children["dataset"].data.metrics["train_items"] == 2
    dataset_metrics = children["dataset"].data.metrics
    assert dataset_metrics["llm_stats/generator/concurrency"] == 6  # what adaptive limiting settled on
    assert dataset_metrics["rejected_by_reason/too_short"] == 16
    assert parent.data.metrics["dataset/kept_share"] == 0.55
    assert parent.data.metrics["evaluate/delta_ci_low"] == 0.3
    assert parent.data.params["registry.model_name"] == "model-pipeline"
    artifacts = {a.path for a in client.list_artifacts(children["evaluate"].info.run_id)}
    assert {"report.html", "metrics.json", "scores.jsonl"} <= artifacts
    assert "README.md" in {a.path for a in client.list_artifacts(children["dataset"].info.run_id)}

    version = client.get_model_version(config.registry.model_name, "1")
    model = client.get_logged_model(record["model_version"]["model_id"])
    logged = [
        *parent.data.params.values(),
        *parent.data.tags.values(),
        *version.tags.values(),
        *model.params.values(),
        *model.tags.values(),
        (tmp_path / "out" / "decision.json").read_text(),
    ]
    for child in children.values():
        logged += [*child.data.params.values(), *child.data.tags.values()]
    assert not any(secret in value for value in logged)
    assert version.tags["ragtune.lineage.note"] == "built with key [redacted]"

    # the same pipeline run again: same MLflow run, same version
    again = run_registry(config, train, evaluation, dataset, lineage, "pipe-full", tmp_path / "out2")
    assert again.version == 1
    assert (
        json.loads((tmp_path / "out2" / "decision.json").read_text())["mlflow"]["run_id"]
        == parent.info.run_id
    )


def test_champion_loads_and_answers(
    mlflow_server: MlflowServer, tiny_adapter: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    config = make_config(tmp_path, "serve", mlflow_server.url)
    info, summary = _register(config, tiny_adapter, tmp_path, "pipe-serve", tuned=6.0, base=5.0)
    promote(config, info, summary)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)  # what a serving process would set
    model = mlflow.pyfunc.load_model(f"models:/{config.registry.model_name}@champion")
    answers = model.predict(
        ["what is panic disorder ?", "treatment of anxiety ?"], params={"max_new_tokens": 4}
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    again = load_registered_model(config, dst_path=tmp_path / "download")
    assert again.metadata.model_id == info.model_id
    fetched = fetch_champion(config, tmp_path / "champion")  # what the evaluate step judges beside tuned
    assert fetched is not None and adapter_sha256(fetched) == adapter_sha256(tiny_adapter.adapter_dir)
