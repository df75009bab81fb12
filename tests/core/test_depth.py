"""Over-deep untrusted JSON is an error naming the file, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.core.errors import InputError
from ragtune.core.records import read_json_object


def test_deep_json_object_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    with pytest.raises(InputError, match=r"metrics\.json: nested too deeply"):
        read_json_object(path, "metrics")
