"""Promotion is compare-and-set: two promotions at once against a real ``mlflow server``.

The registry has no transactions; promotion holds the model's promotion lock (a registered model
created atomically) while it reads the champion, decides and moves the alias. Without it, both
promotions below would read "no champion", both would beat the base and both would set the alias,
the later one silently winning without ever being compared with the earlier.
"""

from __future__ import annotations

import importlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from ragtune.core.config import RagtuneConfig
from ragtune.registry import EvalSummary, ModelVersionInfo, promote, register_model, start_pipeline_run
from ragtune.registry.audit import Actor, AuditRecord, append_audit, read_audit
from tests.registry.conftest import LINEAGE, MlflowServer, TinyModel, make_config, write_eval

promote_module = importlib.import_module("ragtune.registry.promote")  # the package re-exports promote()


def _client(server: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def _register(
    config: RagtuneConfig, tiny: TinyModel, tmp_path: Path, run: str
) -> tuple[ModelVersionInfo, EvalSummary]:
    """A version whose evaluation beats the base (no champion existed when it was evaluated)."""
    summary = EvalSummary.load(write_eval(tmp_path / run, 6.0, 5.0, 0.4, 1.6, adapter=tiny.adapter_dir))
    return register_model(
        config, start_pipeline_run(config, run), tiny.adapter_dir, summary, LINEAGE
    ), summary


def test_two_promotions_at_once_end_with_exactly_one_champion(
    mlflow_server: MlflowServer, tiny_adapter: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path, "concurrent", mlflow_server.url)
    name = config.registry.model_name
    versions = [_register(config, tiny_adapter, tmp_path, run) for run in ("pipe-ca", "pipe-cb")]
    real_decide = promote_module.decide

    def slow_decide(*args: Any, **kwargs: Any) -> promote_module.Verdict:
        time.sleep(0.5)  # widen the window between reading the champion and moving the alias
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(promote_module, "decide", slow_decide)
    start = threading.Barrier(2)

    def promote_at_once(info: ModelVersionInfo, summary: EvalSummary) -> promote_module.PromotionDecision:
        start.wait()
        return promote(config, info, summary)

    with ThreadPoolExecutor(2) as pool:
        decisions = list(pool.map(lambda pair: promote_at_once(*pair), versions))

    winners = [d for d in decisions if d.promoted]
    assert len(winners) == 1, [d.reason for d in decisions]
    winner = winners[0]
    loser = next(d for d in decisions if not d.promoted)
    assert winner.reference == "base" and winner.previous_champion is None
    # the loser waited for the lock, then was compared with the new champion: refused, with the reason
    assert loser.alias == "challenger" and loser.reference == "champion"
    assert loser.previous_champion == winner.version and loser.reference_version == winner.version
    assert f"champion version {winner.version} was not evaluated on this run's items" in loser.reason
    client = _client(mlflow_server)
    assert int(client.get_model_version_by_alias(name, "champion").version) == winner.version
    assert int(client.get_model_version_by_alias(name, "challenger").version) == loser.version
    assert client.get_model_version(name, str(winner.version)).tags["ragtune.promotion"] == "champion"
    assert client.get_model_version(name, str(loser.version)).tags["ragtune.promotion"] == "challenger"
    assert not client.search_registered_models(f"name = '{name}.promotion-lock'")  # released
    for decision, (info, _) in zip(decisions, versions, strict=True):
        records = read_audit(client, info.run_id or "")
        assert [(r.version, r.alias, r.reason) for r in records] == [
            (decision.version, decision.alias, decision.reason)
        ]


def test_audit_records_written_at_once_are_all_kept_whole(
    mlflow_server: MlflowServer, tiny_adapter: TinyModel, tmp_path: Path
) -> None:
    config = make_config(tmp_path, "audit-race", mlflow_server.url)
    info, _ = _register(config, tiny_adapter, tmp_path, "pipe-audit-race")
    client = _client(mlflow_server)
    who = Actor(name="system:serviceaccount:ml:ragtune", source="kubernetes-service-account")

    def record(n: int) -> AuditRecord:
        return AuditRecord(
            model_name=info.name,
            version=info.version,
            alias="champion",
            promoted=True,
            forced=True,
            reason=f"record {n}: " + "why " * 3000,  # 12,000 characters: more than a tag holds
            metric="judge",
            previous_champion=None,
            actor=who,
            when="2026-12-06T17:00:00+00:00",
        )

    start = threading.Barrier(4)

    def write(n: int) -> str:
        start.wait()
        return append_audit(client, info.run_id, record(n))

    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(write, range(4)))
    assert len(set(paths)) == 4
    kept = read_audit(client, info.run_id or "")
    assert sorted(r.reason for r in kept) == sorted(record(n).reason for n in range(4))
