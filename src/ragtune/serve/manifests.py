"""KServe serving objects for one registered version, as plain dicts ready for YAML.

Two kinds, with the shapes of KServe's published types (checked in tests against the kserve SDK's
models and the v0.20 CRD schema):

* ``LLMInferenceService`` (``serving.kserve.io/v1alpha1``, KServe 0.20+): the base model under
  ``spec.model.uri``, the adapter under ``spec.model.lora.adapters``; KServe's storage initializer
  downloads both and starts vLLM with LoRA.
* ``InferenceService`` (``serving.kserve.io/v1beta1``) on the Hugging Face runtime (vLLM backend):
  base and adapter as two ``storageUris`` under one parent, the runtime started with
  ``--enable-lora --lora-modules <name>=<adapter folder>``.

Both pin the adapter's immutable artifact URI, never an alias: the object says exactly which files
serve, so reverting the commit that changed it is an exact rollback. Pod scheduling (resources,
GPUs, node selector, tolerations) comes from the ``serve`` section of the config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ragtune.core.config import ServeConfig
from ragtune.core.errors import ConfigError
from ragtune.core.models import is_packaged_smollm2
from ragtune.core.storage import is_s3_uri

LLMISVC_API = "serving.kserve.io/v1alpha1"
ISVC_API = "serving.kserve.io/v1beta1"
SMOLLM2_HUB_URI = "hf://HuggingFaceTB/SmolLM2-135M-Instruct"  # what the packaged GGUF was quantized from
KSERVE_SCHEMES = ("hf://", "s3://", "gs://", "pvc://", "oci://", "https://", "http://")
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # --max-lora-rank accepts these
VLLM_DEFAULT_MAX_RANK = 16
ISVC_MODEL_ROOT = "/mnt/models"
MAIN_CONTAINER = "main"  # the LLMInferenceService container KServe fills in (its docs' name)


@dataclass(frozen=True)
class ServingTarget:
    """What the serving object pins: the version, its adapter's immutable URI and its base."""

    model_name: str
    version: int
    served_name: str
    adapter_uri: str
    base_model_uri: str
    lora_r: int
    adapter_sha256: str | None = None
    git_commit: str | None = None


def dns_name(text: str) -> str:
    """``text`` as a Kubernetes object name (lower case, ``-``, at most 63 characters)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    if not name or not name[0].isalpha():
        name = f"ragtune-{name}".strip("-")[:63]
    return name


def base_model_uri(base_model: str, options: ServeConfig) -> str:
    """Where KServe downloads the base: ``serve.base_model_uri``, else derived from the adapter's base."""
    if options.base_model_uri:
        return options.base_model_uri
    if is_packaged_smollm2(base_model):
        return SMOLLM2_HUB_URI
    if is_s3_uri(base_model) or base_model.startswith(KSERVE_SCHEMES):
        return base_model
    if not base_model.startswith((".", "/", "~")) and base_model.count("/") == 1:
        return f"hf://{base_model}"  # a hub id
    raise ConfigError(
        f"base model {base_model!r} is a local folder KServe cannot download; set serve.base_model_uri"
        " (hf://, s3:// or pvc://)"
    )


def servable_uri(uri: str, rewrites: Mapping[str, str]) -> str:
    """``uri`` with the longest matching ``serve.artifact_uri_map`` prefix rewritten."""
    for prefix in sorted(rewrites, key=len, reverse=True):
        if uri.startswith(prefix):
            return rewrites[prefix] + uri[len(prefix) :]
    return uri


def max_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ConfigError(f"LoRA rank {rank} is above the largest vLLM serves ({VLLM_LORA_RANKS[-1]})")


def _metadata(target: ServingTarget, options: ServeConfig) -> dict[str, Any]:
    annotations = {
        "ragtune.io/model-name": target.model_name,
        "ragtune.io/model-version": str(target.version),
        "ragtune.io/adapter-uri": target.adapter_uri,
    }
    if target.adapter_sha256:
        annotations["ragtune.io/adapter-sha256"] = target.adapter_sha256
    if target.git_commit and target.git_commit != "unknown":  # registry.git_revision's "no git here"
        annotations["ragtune.io/git-commit"] = target.git_commit
    return {
        "name": options.name or dns_name(target.model_name),
        "namespace": options.namespace,
        "labels": {
            "app.kubernetes.io/name": options.name or dns_name(target.model_name),
            "app.kubernetes.io/part-of": "ragtune",
            "app.kubernetes.io/component": "serve",
        },
        "annotations": annotations,
    }


def resources(options: ServeConfig) -> dict[str, dict[str, str]]:
    """The configured requests and limits plus ``gpus`` of ``gpu_resource`` in both."""
    found = {kind: dict(values) for kind, values in options.resources.items() if values}
    if options.gpus:
        for kind in ("requests", "limits"):
            found.setdefault(kind, {})[options.gpu_resource] = str(options.gpus)
    return found


def pod_scheduling(options: ServeConfig) -> dict[str, Any]:
    """Node selector, tolerations and service account: PodSpec fields both kinds inline."""
    spec: dict[str, Any] = {}
    if options.node_selector:
        spec["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        spec["tolerations"] = [dict(t) for t in options.tolerations]
    if options.service_account:
        spec["serviceAccountName"] = options.service_account
    return spec


def llm_inference_service(target: ServingTarget, options: ServeConfig) -> dict[str, Any]:
    """A KServe ``LLMInferenceService``: the base model with the version's adapter (vLLM, LoRA)."""
    lora: dict[str, Any] = {"adapters": [{"name": target.served_name, "uri": target.adapter_uri}]}
    if target.lora_r > VLLM_DEFAULT_MAX_RANK:
        lora["maxRank"] = max_lora_rank(target.lora_r)
    container = {"name": MAIN_CONTAINER, "resources": resources(options)}
    return {
        "apiVersion": LLMISVC_API,
        "kind": "LLMInferenceService",
        "metadata": _metadata(target, options),
        "spec": {
            "model": {"uri": target.base_model_uri, "lora": lora},
            "replicas": options.replicas,
            "router": {"scheduler": {}, "route": {}, "gateway": {}},
            "template": {"containers": [container], **pod_scheduling(options)},
        },
    }


def inference_service(target: ServingTarget, options: ServeConfig) -> dict[str, Any]:
    """A KServe ``InferenceService`` on the Hugging Face runtime (vLLM backend) with LoRA enabled."""
    base_dir, adapter_dir = f"{ISVC_MODEL_ROOT}/base", f"{ISVC_MODEL_ROOT}/adapter"
    args = [
        f"--model_name={target.served_name}-base",
        f"--model_dir={base_dir}",
        "--enable-lora",
        f"--lora-modules={target.served_name}={adapter_dir}",
        f"--max-lora-rank={max_lora_rank(target.lora_r)}",
    ]
    model: dict[str, Any] = {
        "modelFormat": {"name": "huggingface"},
        "args": args,
        "resources": resources(options),
    }
    if options.runtime:
        model["runtime"] = options.runtime
    predictor: dict[str, Any] = {
        "minReplicas": options.replicas,
        "model": model,
        "storageUris": [
            {"uri": target.base_model_uri, "mountPath": base_dir},
            {"uri": target.adapter_uri, "mountPath": adapter_dir},
        ],
        **pod_scheduling(options),
    }
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": _metadata(target, options),
        "spec": {"predictor": predictor},
    }


def serving_object(target: ServingTarget, options: ServeConfig) -> dict[str, Any]:
    """The kind ``serve.kserve_api`` selects."""
    if options.kserve_api == "inferenceservice":
        return inference_service(target, options)
    return llm_inference_service(target, options)


def kustomization(manifest_file: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": [manifest_file],
    }
