"""The embedded default: no tracking URI means a local sqlite MLflow under ``<run.root>/mlflow``."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from ragtune.registry import EvalSummary, promote, promote_version, register_model, start_pipeline_run
from ragtune.registry.tracking import tracking_uri
from tests.registry.conftest import LINEAGE, TinyModel, make_config, write_eval


def test_local_store_registers_and_aliases_the_same(tiny_adapter: TinyModel, tmp_path: Path) -> None:
    config = make_config(tmp_path, "local", None)
    run_id = start_pipeline_run(config, "pipe-local")
    assert start_pipeline_run(config, "pipe-local") == run_id
    metrics = write_eval(tmp_path / "eval", tuned=6.0, base=5.0, ci_low=0.2, ci_high=1.8)
    info = register_model(config, run_id, tiny_adapter.adapter_dir, metrics, LINEAGE)
    decision = promote(config, info, EvalSummary.load(metrics))
    assert decision.promoted and decision.alias == "champion"

    store = tmp_path / "runs" / "mlflow"
    assert (store / "mlflow.db").is_file()
    assert list((store / "artifacts").rglob("adapter_model.safetensors"))  # artifacts beside the db
    client = MlflowClient(tracking_uri=tracking_uri(config), registry_uri=tracking_uri(config))
    champion = client.get_model_version_by_alias(config.registry.model_name, "champion")
    assert int(champion.version) == 1 and champion.tags["ragtune.corpus_hash"] == LINEAGE["corpus_hash"]

    second = register_model(
        config, start_pipeline_run(config, "pipe-local-2"), tiny_adapter.adapter_dir, metrics, LINEAGE
    )
    worse = promote_version(config, second.version, force=False)  # same score as the champion: not better
    assert not worse.promoted and worse.alias == "challenger" and "+0.000" in worse.reason
    assert int(client.get_model_version_by_alias(config.registry.model_name, "challenger").version) == 2
