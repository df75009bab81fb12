"""A missing tool or test server fails CI instead of reading as a skip (tests/conftest.unavailable)."""

from __future__ import annotations

import pytest

from tests.conftest import unavailable


def test_a_missing_tool_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI needs this and it is not available: no kubectl"):
        unavailable("no kubectl")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no kubectl"):
        unavailable("no kubectl")
