"""``ragtune deploy``: resolve an alias to one version's immutable adapter URI and render its serving object.

KServe has no ``models:/`` storage scheme and an alias moves, so the alias is resolved here, at
promotion time, and the version's artifact URI (rewritten by ``serve.artifact_uri_map`` into one
the cluster can download) is written into the manifest. Commit the folder; Argo CD syncs it. A
``git revert`` of that commit brings back the previous URI: an exact rollback.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import yaml
from pydantic import BaseModel

from ragtune.core.artifacts import ModelDir, ServingDir
from ragtune.core.config import RagtuneConfig
from ragtune.core.fsutil import atomic_write_text
from ragtune.core.modelload import read_adapter_meta
from ragtune.registry import adapter_uri, fetch_adapter, resolve_version
from ragtune.registry.register import TAG_ADAPTER_SHA, TAG_GIT_COMMIT
from ragtune.serve import manifests
from ragtune.serve.loader import check_base, describe

log = logging.getLogger(__name__)

CLUSTER_SCHEMES = ("hf://", "s3://", "gs://", "pvc://", "oci://", "https://")


class DeployReport(BaseModel):
    """``deploy.json``: what the manifest pins and where it was written."""

    model_name: str
    version: int
    kind: str
    name: str
    namespace: str
    adapter_uri: str
    base_model_uri: str
    manifest: str
    warnings: list[str] = []


def _dump(objects: list[dict[str, object]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def render_deploy(
    config: RagtuneConfig, out_dir: Path, *, alias: str | None = None, version: int | None = None
) -> DeployReport:
    """Write ``serving.yaml``, ``kustomization.yaml`` and ``deploy.json`` for the version into ``out_dir``."""
    info = resolve_version(config, alias or config.serve.alias, version)
    what = describe(info)
    with tempfile.TemporaryDirectory(prefix="ragtune-deploy-") as tmp:  # only the adapter's metadata
        meta = read_adapter_meta(fetch_adapter(config, info, Path(tmp), ModelDir.ADAPTER_META).parent)
    check_base(config, meta, what)
    options = config.serve
    target = manifests.ServingTarget(
        model_name=info.name,
        version=info.version,
        served_name=options.served_model_name or info.name,
        adapter_uri=manifests.servable_uri(adapter_uri(info.source), options.artifact_uri_map),
        base_model_uri=manifests.base_model_uri(meta.base_model, options),
        lora_r=meta.lora_r,
        adapter_sha256=info.tags.get(TAG_ADAPTER_SHA),
        git_commit=info.tags.get(TAG_GIT_COMMIT),
    )
    warnings = [
        f"{uri} cannot be downloaded by KServe in a cluster (set serve.artifact_uri_map or serve.base_model_uri)"
        for uri in (target.adapter_uri, target.base_model_uri)
        if not uri.startswith(CLUSTER_SCHEMES)
    ]
    for warning in warnings:
        log.warning("%s: %s", what, warning)
    obj = manifests.serving_object(target, options)
    folder = ServingDir(Path(out_dir))
    folder.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder.manifest_path, _dump([obj]))
    atomic_write_text(
        folder.kustomization_path, _dump([manifests.kustomization(folder.MANIFEST, options.namespace)])
    )
    report = DeployReport(
        model_name=info.name,
        version=info.version,
        kind=str(obj["kind"]),
        name=str(obj["metadata"]["name"]),
        namespace=options.namespace,
        adapter_uri=target.adapter_uri,
        base_model_uri=target.base_model_uri,
        manifest=str(folder.manifest_path),
        warnings=warnings,
    )
    folder.write_report(report)
    log.info("%s: %s %s -> %s", what, report.kind, report.name, folder.manifest_path)
    return report
