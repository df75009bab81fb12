"""Compile the graph to the YAML that Kubeflow Pipelines runs (committed in ``compiled/``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

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
    path.write_text(stable_header(path.read_text(encoding="utf-8")), encoding="utf-8")
    return path


#: A header line of kfp's, e.g. ``#    gpu_tolerations: list [Default: [{'key': ...}]]``.
_DEFAULT_COMMENT = re.compile(r"^(#.*\[Default: )(.*)(\])$")


def stable_header(text: str) -> str:
    """kfp's YAML with the dict defaults in its header comment printed in sorted key order.

    kfp prints them in the order of a protobuf map, which changes from process to process, so
    every ``make compile`` would otherwise rewrite the committed file for nothing.
    """
    lines = text.split("\n")
    for number, line in enumerate(lines):
        if not line.startswith("#"):
            break  # the header is the leading comment block
        match = _DEFAULT_COMMENT.match(line)
        if match is None:
            continue
        try:
            value = ast.literal_eval(match.group(2))
        except (ValueError, SyntaxError):
            continue  # not a Python literal: leave kfp's text alone
        lines[number] = f"{match.group(1)}{_sorted(value)!r}{match.group(3)}"
    return "\n".join(lines)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
