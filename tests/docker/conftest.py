"""The docker tests build images and run the graph in containers (minutes): only on request.

`pytest -m docker` selects them (`.ci/run` does, after `make test`); a plain run skips them with
that reason. Where no Docker engine answers they fail in CI (CI=true) and skip elsewhere.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "docker" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="builds images and runs the graph in containers: run `pytest -m docker`")
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(skip)
