"""``ragtune deploy``: both KServe kinds rendered for a version registered in a real MLflow server.

Checked: the object pins the version's adapter URI (and that URI holds the adapter's files on S3),
names no alias, validates against KServe's published v0.20 CRD schemas (field names and types, see
fixtures/make_kserve_schemas.py) with its pod parts validated by kubernetes-validate, and the
folder builds with ``kubectl kustomize``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.core.artifacts import ServingDir
from ragtune.core.errors import ConfigError, InputError
from ragtune.serve import render_deploy
from ragtune.serve.manifests import SMOLLM2_HUB_URI, base_model_uri, dns_name, max_lora_rank
from tests.registry.conftest import bucket_keys
from tests.serve.conftest import ALIAS, Registered, serve_config

SCHEMAS = json.loads((Path(__file__).parent / "fixtures" / "kserve_schemas.json").read_text())
K8S_VERSION = "1.30"
BASE_URI = "hf://example-org/tiny-llama"
KUBECTL = shutil.which("kubectl")


def _config(registered: Registered, tmp_path: Path, **serve: Any) -> Any:
    mapping = {"mlflow-artifacts:/": f"s3://{registered.server.bucket}/{registered.server.prefix}/"}
    return serve_config(
        tmp_path / "runs",
        registered.server.url,
        registered.info.name,
        artifact_uri_map=mapping,
        base_model_uri=BASE_URI,
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
        **serve,
    )


def _rendered(folder: Path) -> dict[str, Any]:
    (obj,) = [d for d in yaml.safe_load_all(ServingDir(folder).manifest_path.read_text()) if d]
    return obj


def _validate_kserve(obj: dict[str, Any]) -> None:
    key = f"{obj['kind']}/{obj['apiVersion'].rpartition('/')[2]}"
    entry = SCHEMAS[key]
    assert obj["apiVersion"].startswith(entry["group"] + "/")
    jsonschema.validate(obj, entry["schema"])


def _validate_pod(pod_spec: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra)")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "serving"}, "spec": pod_spec}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def _adapter_keys(registered: Registered, uri: str) -> list[str]:
    prefix = uri.removeprefix(f"s3://{registered.server.bucket}/").rstrip("/") + "/"
    return [k.removeprefix(prefix) for k in bucket_keys(registered.server) if k.startswith(prefix)]


def test_llm_inference_service_pins_the_adapter_uri(registered: Registered, tmp_path: Path) -> None:
    report = render_deploy(_config(registered, tmp_path), tmp_path / "out", alias=ALIAS)
    obj = _rendered(tmp_path / "out")
    _validate_kserve(obj)
    model = obj["spec"]["model"]
    (adapter,) = model["lora"]["adapters"]
    jsonschema.validate(
        adapter,
        SCHEMAS["LLMInferenceService/v1alpha1"]["schema"]["properties"]["spec"]["properties"]["model"],
    )
    assert model["uri"] == BASE_URI
    assert adapter == {"name": registered.info.name, "uri": report.adapter_uri}
    assert report.adapter_uri.startswith(f"s3://{registered.server.bucket}/") and report.warnings == []
    assert {"adapter_config.json", "ragtune_adapter.json"} <= set(
        _adapter_keys(registered, report.adapter_uri)
    )
    assert obj["metadata"]["annotations"]["ragtune.io/model-version"] == str(registered.info.version)
    template = obj["spec"]["template"]
    assert template["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert template["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    _validate_pod(template)
    for path in (tmp_path / "out").iterdir():
        assert ALIAS not in path.read_text(), f"{path.name} names the alias"


def test_inference_service_runs_the_hf_runtime_with_lora(registered: Registered, tmp_path: Path) -> None:
    config = _config(registered, tmp_path, kserve_api="inferenceservice", gpus=2, service_account="kserve-s3")
    report = render_deploy(config, tmp_path / "out", version=registered.info.version)
    obj = _rendered(tmp_path / "out")
    _validate_kserve(obj)
    predictor = obj["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "huggingface"}
    uris = {u["mountPath"]: u["uri"] for u in predictor["storageUris"]}
    assert uris == {"/mnt/models/base": BASE_URI, "/mnt/models/adapter": report.adapter_uri}
    assert "--enable-lora" in model["args"]
    assert f"--lora-modules={registered.info.name}=/mnt/models/adapter" in model["args"]
    assert "storageUri" not in model  # KServe refuses storageUri beside storageUris
    container = {"name": "kserve-container", "args": model["args"], "resources": model["resources"]}
    pod = {k: v for k, v in predictor.items() if k in ("nodeSelector", "tolerations", "serviceAccountName")}
    _validate_pod({**pod, "containers": [container]})
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert ALIAS not in ServingDir(tmp_path / "out").manifest_path.read_text()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) is not installed")
def test_the_folder_builds_with_kustomize(registered: Registered, tmp_path: Path) -> None:
    render_deploy(_config(registered, tmp_path), tmp_path / "out", alias=ALIAS)
    built = subprocess.run(
        [str(KUBECTL), "kustomize", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (obj,) = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert obj["kind"] == "LLMInferenceService" and obj["metadata"]["namespace"] == "ragtune"


def test_cli_deploy_prints_the_pinned_version(
    registered: Registered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGTUNE_REGISTRY__TRACKING_URI", registered.server.url)
    monkeypatch.setenv("RAGTUNE_REGISTRY__MODEL_NAME", registered.info.name)
    monkeypatch.setenv("RAGTUNE_RUN__ROOT", str(tmp_path / "runs"))
    monkeypatch.setenv("RAGTUNE_SERVE__BASE_MODEL_URI", BASE_URI)  # the tiny base is a local folder
    result = CliRunner().invoke(app, ["deploy", "--alias", ALIAS, "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert f"version {registered.info.version} -> LLMInferenceService ragtune/model-serve" in result.output
    report = json.loads(ServingDir(tmp_path / "cli").report_path.read_text())
    assert report["version"] == registered.info.version
    # no artifact_uri_map: the server's mlflow-artifacts:/ URI is pinned, with a warning
    assert report["adapter_uri"].startswith("mlflow-artifacts:/") and report["warnings"]


def test_an_adapter_on_another_base_is_not_deployed(registered: Registered, tmp_path: Path) -> None:
    config = _config(registered, tmp_path, base_model="mistralai/Mistral-7B-Instruct-v0.3")
    with pytest.raises(InputError, match=r"trained on base model .* but serve\.base_model is .mistralai"):
        render_deploy(config, tmp_path / "out", alias=ALIAS)
    assert not (tmp_path / "out").exists()


def test_base_model_uris_and_names(tmp_path: Path) -> None:
    options = serve_config(tmp_path, "sqlite:///x.db", "m").serve
    assert base_model_uri("smollm2", options) == SMOLLM2_HUB_URI
    assert (
        base_model_uri("mistralai/Mistral-7B-Instruct-v0.3", options)
        == "hf://mistralai/Mistral-7B-Instruct-v0.3"
    )
    assert base_model_uri("s3://models/mistral", options) == "s3://models/mistral"
    with pytest.raises(ConfigError, match=r"serve\.base_model_uri"):
        base_model_uri(str(tmp_path), options)
    assert dns_name("Psychiatry_SmolLM2 LoRA") == "psychiatry-smollm2-lora"
    assert dns_name("7b") == "ragtune-7b"
    assert [max_lora_rank(r) for r in (2, 8, 9, 64, 65)] == [8, 8, 16, 64, 128]
