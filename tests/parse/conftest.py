"""Fixtures for the parse tests: the text fixtures, fpdf2-built PDFs and a config factory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.records import Document, read_jsonl
from tests.parse import pdfs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parse"

MakeConfig = Callable[..., RagtuneConfig]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def pdf_bytes() -> dict[str, bytes]:
    """Every generated PDF, built once per session."""
    return {
        "font-headings": pdfs.font_headings_pdf(),
        "outline": pdfs.outline_pdf(),
        "encrypted": pdfs.encrypted_pdf(),
        "scanned": pdfs.scanned_pdf(),
        "truncated": pdfs.truncated_pdf(),
    }


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    """A config whose run root (and so the parse cache) lives in this test's tmp dir."""

    def make(corpus: Path | str | None = None, **parse: Any) -> RagtuneConfig:
        data: dict[str, Any] = {"run": {"root": str(tmp_path / "runs")}, "parse": parse}
        if corpus is not None:
            data["corpus"] = {"uri": str(corpus)}
        return build_config(data)

    return make


def load_outputs(out_dir: Path) -> tuple[list[Document], dict[str, Any]]:
    """documents.jsonl and parse_report.json as written to disk."""
    documents = read_jsonl(out_dir / "documents.jsonl", Document)
    report = json.loads((out_dir / "parse_report.json").read_text(encoding="utf-8"))
    return documents, report


def report_entry(report: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [f for f in report["files"] if f["source"] == name]
    assert len(matches) == 1, f"{name} not in report: {[f['source'] for f in report['files']]}"
    return matches[0]
