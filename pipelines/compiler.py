"""Compile the graph to the YAML that Kubeflow Pipelines runs (committed in ``compiled/``)."""

from __future__ import annotations

from pathlib import Path

from pipelines.ragtune_pipeline import ragtune_pipeline
from ragtune.core.errors import ConfigError

COMPILED_PATH = Path(__file__).resolve().parent / "compiled" / "ragtune_pipeline.yaml"


def compile_pipeline(path: Path = COMPILED_PATH) -> Path:
    """Write the YAML to ``path``; a folder (existing, or a path without a suffix) gets the default name."""
    from kfp import compiler

    if path.is_dir() or not path.suffix:
        path = path / COMPILED_PATH.name
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(
            f"compile --out {path}: the pipeline is written as YAML; name a .yaml file or a folder"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=ragtune_pipeline, package_path=str(path))
    return path
