"""Compile the graph to the YAML that Kubeflow Pipelines runs (committed in ``compiled/``)."""

from __future__ import annotations

from pathlib import Path

from pipelines.ragtune_pipeline import ragtune_pipeline

COMPILED_PATH = Path(__file__).resolve().parent / "compiled" / "ragtune_pipeline.yaml"


def compile_pipeline(path: Path = COMPILED_PATH) -> Path:
    from kfp import compiler

    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=ragtune_pipeline, package_path=str(path))
    return path
