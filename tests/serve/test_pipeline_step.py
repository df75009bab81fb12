"""The pipeline's deploy step: the register step's decision in, the serving manifests out."""

from __future__ import annotations

from pathlib import Path

import yaml
from kfp.dsl import Dataset

from components.deploy.component import render_serving
from ragtune.core.artifacts import ServingDir
from ragtune.registry import run_registry
from tests.registry.conftest import LINEAGE, MlflowServer, TinyModel, make_config, write_eval
from tests.registry.test_server import _stage_outputs


def test_a_new_champion_gets_its_manifests_rendered(
    mlflow_server: MlflowServer, tiny_adapter: TinyModel, tmp_path: Path
) -> None:
    config = make_config(tmp_path, "deploy-step", mlflow_server.url)
    config.serve.base_model_uri = "hf://example-org/tiny-llama"
    dataset, train, evaluation = _stage_outputs(tmp_path)
    (train / "adapter").symlink_to(tiny_adapter.adapter_dir, target_is_directory=True)
    write_eval(evaluation, tuned=6.0, base=5.0, ci_low=0.3, ci_high=1.7, adapter=tiny_adapter.adapter_dir)
    decision = run_registry(config, train, evaluation, dataset, LINEAGE, "pipe-deploy", tmp_path / "decision")
    assert decision.alias == "champion"

    serving = Dataset(name="serving", uri=str(tmp_path / "serving"))
    pinned = render_serving.python_func(
        config_json=config.to_json(),
        decision=Dataset(name="decision", uri=str(tmp_path / "decision")),
        serving=serving,
    )
    (obj,) = yaml.safe_load_all(ServingDir(Path(serving.path)).manifest_path.read_text())
    assert obj["spec"]["model"]["lora"]["adapters"][0]["uri"] == pinned
    assert obj["metadata"]["annotations"]["ragtune.io/model-version"] == str(decision.version)
    assert "champion" not in ServingDir(Path(serving.path)).manifest_path.read_text()
