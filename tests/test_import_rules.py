"""The house as drawn: imports only point down (CLI → pipelines → components → stages → core).

Every ``import`` in src/ragtune, pipelines and components is read from the AST (function-level
imports included, since components and lazy loaders import inside functions) and checked against
the allowed edges:

* ``ragtune.core`` imports no stage package and nothing above it;
* a stage package (parse, index, synth, train, evaluate, registry, serve) imports ``ragtune.core`` and
  itself, and synth and evaluate may also take ``load_retriever`` from ``ragtune.index``; serve may
  import ``ragtune.registry`` (it serves and deploys registered versions), the registry never serve;
* nothing in ``src/ragtune`` except the CLI imports ``kfp``, ``pipelines`` or ``components``, and
  nothing imports the CLI;
* components import ``ragtune`` (and kfp), never ``pipelines``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("parse", "index", "synth", "train", "evaluate", "registry", "serve")
RETRIEVER_USERS = ("synth", "evaluate")
# serve sits on top of the registry: it resolves aliases and fetches adapters through it (never the reverse)
STAGES_BELOW = {"serve": ("registry",)}


@dataclass(frozen=True)
class Edge:
    source: str  # path relative to the repository
    line: int
    module: str  # the imported module, absolute
    names: tuple[str, ...]  # names taken from it (``from m import a, b``), empty for ``import m``

    def __str__(self) -> str:
        what = f"from {self.module} import {', '.join(self.names)}" if self.names else f"import {self.module}"
        return f"{self.source}:{self.line}: {what}"


def _module_of(path: Path, repo: Path = REPO) -> str:
    relative = path.relative_to(repo / "src" if path.is_relative_to(repo / "src") else repo)
    parts = list(relative.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, repo: Path = REPO) -> Iterator[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_of(path, repo)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    source = str(path.relative_to(repo))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Edge(source, node.lineno, alias.name, ())
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative import: resolve against this file's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            yield Edge(source, node.lineno, module, tuple(alias.name for alias in node.names))


def python_files(repo: Path, *folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (repo / folder).rglob("*.py") if "tests" not in p.parts)


def _top(module: str) -> str:
    return module.split(".")[0]


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ragtune" and parts[1] in STAGES else None


def violations(repo: Path = REPO) -> list[str]:
    found: list[str] = []
    for path in python_files(repo, "src/ragtune"):
        here = _module_of(path, repo)
        is_cli = here == "ragtune.cli"
        here_stage = _stage_of(here)
        for edge in imports_of(path, repo):
            target = edge.module
            if _top(target) in ("kfp", "pipelines", "components") and not is_cli:
                found.append(f"{edge}  (only the CLI may import {_top(target)})")
            elif target == "ragtune.cli" or target.startswith("ragtune.cli."):
                found.append(f"{edge}  (nothing imports the CLI)")
            elif here.startswith("ragtune.core") and _stage_of(target):
                found.append(f"{edge}  (core imports no stage)")
            elif here_stage and _stage_of(target) not in (None, here_stage):
                allowed = (
                    here_stage in RETRIEVER_USERS
                    and target == "ragtune.index"
                    and set(edge.names) <= {"load_retriever", "Retriever", "ScoredChunk"}
                ) or _stage_of(target) in STAGES_BELOW.get(here_stage, ())
                if not allowed:
                    found.append(f"{edge}  (stage {here_stage} may import only core, and load_retriever)")
    for path in python_files(repo, "components"):
        for edge in imports_of(path, repo):
            if _top(edge.module) == "pipelines" or edge.module.startswith("ragtune.cli"):
                found.append(f"{edge}  (components sit below pipelines and the CLI)")
    return found


def test_the_scanner_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    sample = REPO / "src" / "ragtune" / "evaluate" / "similarity.py"
    edges = {edge.module for edge in imports_of(sample)}
    assert "ragtune.core.embedding" in edges  # imported inside load_encoder()
    component = REPO / "components" / "parse" / "component.py"
    assert "ragtune.parse" in {edge.module for edge in imports_of(component)}


def test_the_rules_catch_every_kind_of_wrong_import(tmp_path: Path) -> None:
    files = {
        "src/ragtune/synth/ok.py": "from ragtune.index import load_retriever\nfrom ragtune.core import config\n",
        "src/ragtune/synth/bad.py": "def f():\n    from ragtune.train.data import TRAIN_FILE\n",
        "src/ragtune/evaluate/bad.py": "from ragtune.index import run_index\n",
        "src/ragtune/core/bad.py": "from ragtune.parse import run_parse\n",
        "src/ragtune/registry/bad.py": "import kfp\nfrom ..cli import app\n",
        "components/x/component.py": "from pipelines.compiler import compile_pipeline\n",
        "src/ragtune/serve/ok.py": "from ragtune.registry import resolve_version\n",
        "src/ragtune/registry/up.py": "from ragtune.serve import render_deploy\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = violations(tmp_path)
    assert not [v for v in found if "ok.py" in v]
    assert len(found) == 7, found
    assert any("registry/up.py" in v for v in found)
    assert any("src/ragtune/registry/bad.py:2: from ragtune.cli import app" in v for v in found)


def test_imports_only_point_down() -> None:
    found = violations()
    if found:
        pytest.fail("imports against the house rules:\n" + "\n".join(found))
