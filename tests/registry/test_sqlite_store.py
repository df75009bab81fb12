"""The embedded default: no tracking URI means a local sqlite MLflow under ``<run.root>/mlflow``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ragtune.core.config import RagtuneConfig
from ragtune.registry import (
    EvalSummary,
    fetch_champion,
    promote,
    promote_version,
    register_model,
    start_pipeline_run,
)
from ragtune.registry.register import adapter_sha256
from ragtune.registry.tracking import tracking_uri
from tests.registry.conftest import LINEAGE, TinyModel, make_config, write_eval


def client(config: RagtuneConfig) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri(config), registry_uri=tracking_uri(config))


def test_local_store_registers_and_aliases_the_same(tiny_adapter: TinyModel, tmp_path: Path) -> None:
    config = make_config(tmp_path, "local", None)
    run_id = start_pipeline_run(config, "pipe-local")
    assert start_pipeline_run(config, "pipe-local") == run_id
    metrics = write_eval(tmp_path / "eval", tuned=6.0, base=5.0, ci_low=0.2, ci_high=1.8)
    info = register_model(config, run_id, tiny_adapter.adapter_dir, EvalSummary.load(metrics), LINEAGE)
    decision = promote(config, info, EvalSummary.load(metrics))
    assert decision.promoted and decision.alias == "champion"

    store = tmp_path / "runs" / "mlflow"
    assert (store / "mlflow.db").is_file()
    assert list((store / "artifacts").rglob("adapter_model.safetensors"))  # artifacts beside the db
    client = MlflowClient(tracking_uri=tracking_uri(config), registry_uri=tracking_uri(config))
    champion = client.get_model_version_by_alias(config.registry.model_name, "champion")
    assert int(champion.version) == 1 and champion.tags["ragtune.corpus_hash"] == LINEAGE["corpus_hash"]

    second = register_model(
        config,
        start_pipeline_run(config, "pipe-local-2"),
        tiny_adapter.adapter_dir,
        EvalSummary.load(metrics),
        LINEAGE,
    )
    worse = promote_version(config, second.version, force=False)  # not compared with the champion
    assert not worse.promoted and worse.alias == "challenger"
    assert "champion version 1 was not evaluated on this run's items" in worse.reason
    assert int(client.get_model_version_by_alias(config.registry.model_name, "challenger").version) == 2


def _identity(tiny: TinyModel) -> str:
    return f"adapter:{adapter_sha256(tiny.adapter_dir)[:32]}"


def test_forced_promotions_append_to_the_audit_trail(
    tiny_adapter: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path, "audit", None)
    metrics = write_eval(tmp_path / "eval", tuned=6.0, base=5.9, ci_low=-0.2, ci_high=0.4)
    info = register_model(
        config,
        start_pipeline_run(config, "pipe-audit"),
        tiny_adapter.adapter_dir,
        EvalSummary.load(metrics),
        LINEAGE,
    )
    monkeypatch.setenv("USER", "alice")
    first = promote(config, info, EvalSummary.load(metrics), force=True)
    assert first.promoted and first.reason.startswith("Forced by user (the rule would not promote")
    monkeypatch.setenv("USER", "bob")
    promote(config, info, EvalSummary.load(metrics), force=True)
    tags = client(config).get_model_version(config.registry.model_name, str(info.version)).tags
    records = [json.loads(tags[f"ragtune.promotion_audit.{n}"]) for n in (1, 2)]
    assert [r["who"] for r in records] == ["alice", "bob"]
    assert records[0]["action"] == "forced champion" and "does not lie above 0" in records[0]["why"]
    assert all(r["when"].endswith("+00:00") for r in records)
    assert "ragtune.promotion_audit.3" not in tags


def test_a_champion_taken_meanwhile_is_decided_against(
    tiny_adapter: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another promotion sets the alias between our read and our write: we re-decide against it."""
    config = make_config(tmp_path, "race", None)
    name = config.registry.model_name
    versions = []
    for run in ("pipe-r1", "pipe-r2"):
        metrics = write_eval(tmp_path / run, tuned=6.0, base=5.0, ci_low=0.2, ci_high=1.8)
        versions.append(
            register_model(
                config,
                start_pipeline_run(config, run),
                tiny_adapter.adapter_dir,
                EvalSummary.load(metrics),
                LINEAGE,
            )
        )
    mine, theirs = versions
    real = MlflowClient.set_registered_model_alias

    def racing(self: MlflowClient, model: str, alias: str, version: str) -> None:
        real(self, model, alias, version)
        if alias == "champion" and version == str(mine.version):  # the other writer lands just after us
            real(self, model, alias, str(theirs.version))

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", racing)
    decision = promote(config, mine, EvalSummary.load(tmp_path / "pipe-r1"))
    assert not decision.promoted and decision.alias == "challenger"
    assert f"version {theirs.version} became champion meanwhile" in decision.reason
    assert f"champion version {theirs.version} was not evaluated on this run's items" in decision.reason
    store = client(config)
    assert int(store.get_model_version_by_alias(name, "champion").version) == theirs.version
    assert int(store.get_model_version_by_alias(name, "challenger").version) == mine.version


def test_champion_paired_comparison_decides(tiny_adapter: TinyModel, tmp_path: Path) -> None:
    config = make_config(tmp_path, "paired", None)
    first_metrics = write_eval(tmp_path / "e1", tuned=6.0, base=5.0, ci_low=0.2, ci_high=1.8)
    first = register_model(
        config,
        start_pipeline_run(config, "p1"),
        tiny_adapter.adapter_dir,
        EvalSummary.load(first_metrics),
        LINEAGE,
    )
    assert promote(config, first, EvalSummary.load(first_metrics)).promoted
    worse = write_eval(
        tmp_path / "e2", 6.2, 5.0, 0.2, 1.8, champion=(_identity(tiny_adapter), -0.1, -0.4, 0.2)
    )
    second = register_model(
        config, start_pipeline_run(config, "p2"), tiny_adapter.adapter_dir, EvalSummary.load(worse), LINEAGE
    )
    decision = promote(config, second, EvalSummary.load(worse))
    assert not decision.promoted and decision.reference == "champion" and decision.reference_version == 1
    assert "tuned − champion version 1 (judge) -0.100" in decision.reason
    better = write_eval(
        tmp_path / "e3", 6.2, 5.0, 0.2, 1.8, champion=(_identity(tiny_adapter), 0.5, 0.2, 0.8)
    )
    third = register_model(
        config, start_pipeline_run(config, "p3"), tiny_adapter.adapter_dir, EvalSummary.load(better), LINEAGE
    )
    decision = promote(config, third, EvalSummary.load(better))
    assert (
        decision.promoted
        and decision.previous_champion == 1
        and decision.delta_mean == 0.5
        and decision.n == 30
    )


def test_fetch_champion_downloads_its_adapter(tiny_adapter: TinyModel, tmp_path: Path) -> None:
    config = make_config(tmp_path, "fetch", None)
    assert fetch_champion(config, tmp_path / "none") is None  # no registered model yet
    metrics = write_eval(tmp_path / "e", tuned=6.0, base=5.0, ci_low=0.2, ci_high=1.8)
    info = register_model(
        config, start_pipeline_run(config, "pf"), tiny_adapter.adapter_dir, EvalSummary.load(metrics), LINEAGE
    )
    assert fetch_champion(config, tmp_path / "none") is None  # registered, not champion
    promote(config, info, EvalSummary.load(metrics))
    adapter = fetch_champion(config, tmp_path / "champion")
    assert adapter is not None and adapter.is_relative_to(tmp_path / "champion")
    assert adapter_sha256(adapter) == adapter_sha256(tiny_adapter.adapter_dir)  # the same weights
