"""The embedded default: no tracking URI means a local sqlite MLflow under ``<run.root>/mlflow``."""

from __future__ import annotations

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
from ragtune.registry.audit import read_audit
from ragtune.registry.lock import promotion_lock
from ragtune.registry.register import adapter_sha256
from ragtune.registry.tracking import tracking_uri
from tests.registry.conftest import LINEAGE, TinyModel, make_config, write_eval


def client(config: RagtuneConfig) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri(config), registry_uri=tracking_uri(config))


def test_local_store_registers_and_aliases_the_same(tiny_adapter: TinyModel, tmp_path: Path) -> None:
    config = make_config(tmp_path, "local", None)
    run_id = start_pipeline_run(config, "pipe-local")
    assert start_pipeline_run(config, "pipe-local") == run_id
    metrics = write_eval(
        tmp_path / "eval", tuned=6.0, base=5.0, ci_low=0.2, ci_high=1.8, adapter=tiny_adapter.adapter_dir
    )
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
    metrics = write_eval(
        tmp_path / "eval", tuned=6.0, base=5.9, ci_low=-0.2, ci_high=0.4, adapter=tiny_adapter.adapter_dir
    )
    info = register_model(
        config,
        start_pipeline_run(config, "pipe-audit"),
        tiny_adapter.adapter_dir,
        EvalSummary.load(metrics),
        LINEAGE,
    )
    monkeypatch.setattr("ragtune.registry.audit.SERVICE_ACCOUNT_TOKEN", tmp_path / "no-token")
    monkeypatch.delenv("RAGTUNE_OIDC_TOKEN_FILE", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("USER", "alice")
    first = promote(config, info, EvalSummary.load(metrics), force=True)
    assert first.promoted and first.reason.startswith(
        "Forced by local-user:alice (the rule would not promote"
    )
    monkeypatch.setenv("USER", "bob")
    promote(config, info, EvalSummary.load(metrics), force=True)
    records = read_audit(client(config), info.run_id or "")
    assert [(r.actor.name, r.actor.source) for r in records] == [
        ("alice", "local-user"),
        ("bob", "local-user"),
    ]
    assert (
        records[0].alias == "champion" and records[0].forced and "does not lie above 0" in records[0].reason
    )
    assert records[0].reason == first.reason  # whole, not cut to a tag's length
    assert first.audit_record and first.audit_record.startswith(f"runs:/{info.run_id}/promotion_audit/")


def test_a_promotion_waiting_on_the_lock_is_refused_naming_the_holder(
    tiny_adapter: TinyModel, tmp_path: Path
) -> None:
    """Another promotion holds the lock past registry.lock_timeout_s: refused, nothing moved."""
    config = make_config(tmp_path, "held", None, lock_timeout_s=0.3)
    metrics = write_eval(tmp_path / "e", 6.0, 5.0, 0.2, 1.8, adapter=tiny_adapter.adapter_dir)
    info = register_model(
        config, start_pipeline_run(config, "ph"), tiny_adapter.adapter_dir, EvalSummary.load(metrics), LINEAGE
    )
    store = client(config)
    name = config.registry.model_name
    with promotion_lock(store, name, "oidc:someone-else", timeout_s=1, ttl_s=60):
        decision = promote(config, info, EvalSummary.load(metrics))
    assert not decision.promoted and decision.alias == "challenger"
    assert "another promotion holds the promotion lock (oidc:someone-else" in decision.reason
    assert "waited 0.3 s (registry.lock_timeout_s)" in decision.reason
    assert int(store.get_model_version_by_alias(name, "challenger").version) == info.version
    assert promote(config, info, EvalSummary.load(metrics)).promoted  # the lock is free again


def test_champion_paired_comparison_decides(tiny_adapter: TinyModel, tmp_path: Path) -> None:
    config = make_config(tmp_path, "paired", None)
    first_metrics = write_eval(
        tmp_path / "e1", tuned=6.0, base=5.0, ci_low=0.2, ci_high=1.8, adapter=tiny_adapter.adapter_dir
    )
    first = register_model(
        config,
        start_pipeline_run(config, "p1"),
        tiny_adapter.adapter_dir,
        EvalSummary.load(first_metrics),
        LINEAGE,
    )
    assert promote(config, first, EvalSummary.load(first_metrics)).promoted
    worse = write_eval(
        tmp_path / "e2",
        6.2,
        5.0,
        0.2,
        1.8,
        champion=(_identity(tiny_adapter), -0.1, -0.4, 0.2),
        adapter=tiny_adapter.adapter_dir,
    )
    second = register_model(
        config, start_pipeline_run(config, "p2"), tiny_adapter.adapter_dir, EvalSummary.load(worse), LINEAGE
    )
    decision = promote(config, second, EvalSummary.load(worse))
    assert not decision.promoted and decision.reference == "champion" and decision.reference_version == 1
    assert "tuned − champion version 1 (judge) -0.100" in decision.reason
    better = write_eval(
        tmp_path / "e3",
        6.2,
        5.0,
        0.2,
        1.8,
        champion=(_identity(tiny_adapter), 0.5, 0.2, 0.8),
        adapter=tiny_adapter.adapter_dir,
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
    metrics = write_eval(
        tmp_path / "e", tuned=6.0, base=5.0, ci_low=0.2, ci_high=1.8, adapter=tiny_adapter.adapter_dir
    )
    info = register_model(
        config, start_pipeline_run(config, "pf"), tiny_adapter.adapter_dir, EvalSummary.load(metrics), LINEAGE
    )
    assert fetch_champion(config, tmp_path / "none") is None  # registered, not champion
    promote(config, info, EvalSummary.load(metrics))
    adapter = fetch_champion(config, tmp_path / "champion")
    assert adapter is not None and adapter.is_relative_to(tmp_path / "champion")
    assert adapter_sha256(adapter) == adapter_sha256(tiny_adapter.adapter_dir)  # the same weights
