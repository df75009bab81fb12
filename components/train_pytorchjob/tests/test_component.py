"""The PyTorchJob component compiles with typed inputs and outputs (its logic is tested in tests/train/cluster)."""

from pathlib import Path

import yaml

from components.images import CPU_IMAGE


def test_the_component_compiles_with_typed_inputs_and_outputs(tmp_path: Path) -> None:
    from kfp import compiler

    from components.train_pytorchjob.component import train_pytorchjob

    path = tmp_path / "train_pytorchjob.yaml"
    compiler.Compiler().compile(train_pytorchjob, str(path))
    spec = yaml.safe_load(path.read_text())

    (component,) = spec["components"].values()
    parameters = {k: v["parameterType"] for k, v in component["inputDefinitions"]["parameters"].items()}
    assert parameters == {
        "config_json": "STRING",
        "num_nodes": "NUMBER_INTEGER",
        "gpus_per_node": "NUMBER_INTEGER",
        "node_selector": "STRUCT",
        "tolerations": "LIST",
        "image": "STRING",
        "namespace": "STRING",
        "service_account": "STRING",
        "s3_secret": "STRING",
        "hf_secret": "STRING",
        "timeout_hours": "NUMBER_DOUBLE",
    }
    assert (
        component["inputDefinitions"]["artifacts"]["dataset"]["artifactType"]["schemaTitle"]
        == "system.Dataset"
    )
    assert (
        component["outputDefinitions"]["artifacts"]["adapter"]["artifactType"]["schemaTitle"]
        == "system.Model"
    )
    (executor,) = spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == CPU_IMAGE
    assert "pip install" not in " ".join(executor["container"]["command"])  # install_kfp_package=False
