"""Fixtures of the train stage tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.helpers import write_dataset


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """8 train and 4 eval items in a dataset folder like the synth stage writes."""
    return write_dataset(tmp_path / "dataset")
