"""The lineage the registry stage records is computed in one place, whoever registers the model."""

from __future__ import annotations

from pathlib import Path

from ragtune.core.artifacts import DocumentsDir
from ragtune.core.records import Document, Section
from ragtune.registry import pipeline_lineage


def _write(folder: Path, text: str) -> None:
    doc = Document(
        doc_id="d1",
        source_uri="file:///a.md",
        title="A",
        sha256=text * 64,
        parser="markdown",
        sections=[Section(section_id="s1", heading="Intro", level=1, text="hello")],
    )
    DocumentsDir(folder).write([doc])


def test_lineage_names_the_corpus_and_the_submitted_revision(tmp_path: Path) -> None:
    _write(tmp_path / "a", "0")
    _write(tmp_path / "b", "1")
    first = pipeline_lineage(tmp_path / "a", "abc123")
    assert first["git_commit"] == "abc123" and len(first["corpus_hash"]) == 64
    assert pipeline_lineage(tmp_path / "a")["corpus_hash"] == first["corpus_hash"]  # same corpus, same hash
    assert pipeline_lineage(tmp_path / "b")["corpus_hash"] != first["corpus_hash"]  # other bytes, other hash
    assert "git_commit" not in pipeline_lineage(tmp_path / "a", "")  # tags then fall back to git_revision()
