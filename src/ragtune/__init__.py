"""ragtune: documents in, a judged and registered LoRA adapter out.

The package reads top-down: ``ragtune.cli`` drives the KFP graph in ``pipelines/``, whose thin
components in ``components/`` call the stage packages here (``parse``, ``index``, ``synth``,
``train``, ``evaluate``, ``registry``), which rest on the small ``core``.
"""

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__version__ = "0.1.0"

#: Where an installed wheel keeps the graph and its components (pyproject.toml's force-include).
_GRAPH_DIR = Path(__file__).resolve().parent / "_graph"
_GRAPH_PACKAGES = ("pipelines", "components")


class _GraphFinder(importlib.abc.MetaPathFinder):
    """Imports ``pipelines`` and ``components`` from ``ragtune/_graph/`` of an installed wheel.

    The wheel installs them there, inside ragtune, instead of as top-level packages of
    site-packages (where they would clash with any other distribution's ``pipelines``); the code
    keeps importing them under their own names, as in a checkout, where they are the repository's
    top-level folders and this finder is never installed.
    """

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _GRAPH_PACKAGES:
            return None  # submodules follow their package's __path__
        return importlib.machinery.PathFinder.find_spec(fullname, [str(_GRAPH_DIR)])


if _GRAPH_DIR.is_dir() and not any(isinstance(f, _GraphFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _GraphFinder())
