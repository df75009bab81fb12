"""The wheel installs one top-level package, ragtune: the graph and its components ride inside it.

`pipelines/` and `components/` are top-level folders of the repository, but a wheel that installed
them as top-level packages would overwrite any other distribution's `pipelines`. The wheel keeps
them in `ragtune/_graph/`, and importing ragtune makes them importable under their own names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import unavailable

REPO = Path(__file__).resolve().parents[1]

# Runs in the installed copy only: the checkout (its root and src/, which an editable install puts
# on sys.path) and the working directory are dropped first. Only the checkout's own entries go: an
# editable install also leaves a copy of the force-included folders in site-packages/ragtune/, and
# dropping site-packages for that would drop kfp too.
INSTALLED_IMPORTS = """
import sys
from pathlib import Path
target, repo = sys.argv[1], Path(sys.argv[3]).resolve()
sys.path[:] = [target] + [p for p in sys.path if p and Path(p).resolve() not in (repo, repo / "src")]
import ragtune, pipelines.compiler, components.config.fields
from pipelines.compiler import compile_pipeline
for module in (ragtune, pipelines.compiler, components.config.fields):
    assert module.__file__.startswith(target), module.__file__
print(compile_pipeline(Path(sys.argv[2])))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        unavailable(
            f"pip wheel could not build ragtune (no package index for hatchling?): {proc.stderr[-800:]}"
        )
    (found,) = out.glob("ragtune-*.whl")
    return found


def test_the_wheel_claims_no_top_level_pipelines_or_components(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"ragtune", "ragtune-0.1.0.dist-info"}, sorted(top)
    assert "ragtune/_graph/pipelines/compiled/ragtune_pipeline.yaml" in names
    assert "ragtune/_graph/components/config/fields.py" in names


def test_the_installed_graph_imports_and_compiles_from_inside_ragtune(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", INSTALLED_IMPORTS, str(target), str(tmp_path / "compiled.yaml"), str(REPO)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the same graph as the checkout's: the committed YAML, byte for byte
    assert (tmp_path / "compiled.yaml").read_text() == (
        REPO / "pipelines/compiled/ragtune_pipeline.yaml"
    ).read_text()
