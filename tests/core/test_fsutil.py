"""The one atomic-write helper: whole files or nothing, no temporaries left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragtune.core.fsutil import atomic_write_bytes, atomic_write_lines, atomic_write_text, atomic_writer


def test_writes_replace_whole_file_and_leave_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert atomic_write_lines(tmp_path / "rows.jsonl", ['{"a": 1}', '{"b": 2}']) == 2
    assert (tmp_path / "rows.jsonl").read_text(encoding="utf-8") == '{"a": 1}\n{"b": 2}\n'
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["out.json", "rows.jsonl"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_failure_mid_write_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")

    def rows() -> list[str]:
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write("half of the new con")
        rows()
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_content_is_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(source: str, target: str) -> None:
        events.append("replace")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_text(tmp_path / "x.txt", "data")
    assert events[:2] == ["fsync", "replace"]
