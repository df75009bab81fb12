"""Artifact contracts: typed read/write of what crosses a stage boundary, file names spelled once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import BaseModel

from ragtune.core.artifacts import (
    DatasetDir,
    DecisionDir,
    DocumentsDir,
    EvaluationDir,
    IndexDir,
    ModelDir,
    ServingDir,
)
from ragtune.core.errors import InputError
from ragtune.core.records import Document, Section
from tests.evaluate.helpers import make_item

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = (DocumentsDir, IndexDir, DatasetDir, ModelDir, EvaluationDir, DecisionDir, ServingDir)


class Counts(BaseModel):
    ok: int
    failed: int


def test_documents_round_trip(tmp_path: Path) -> None:
    doc = Document(
        doc_id="d1",
        source_uri="file:///a.md",
        title="A",
        sha256="0" * 64,
        parser="markdown",
        sections=[Section(section_id="s1", heading="Intro", level=1, text="hello")],
    )
    folder = DocumentsDir(tmp_path / "out")
    assert folder.write([doc]) == 1
    assert folder.documents_path == tmp_path / "out" / "documents.jsonl"
    assert folder.read() == [doc]


def test_reports_are_typed_and_written_atomically(tmp_path: Path) -> None:
    folder = EvaluationDir(tmp_path)
    path = folder.write_report(Counts(ok=3, failed=1))
    assert path == tmp_path / "metrics.json"
    assert folder.read_report(Counts) == Counts(ok=3, failed=1)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_a_missing_report_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"decision\.json: not found"):
        DecisionDir(tmp_path).read_report(Counts)


def test_an_invalid_report_names_the_file_and_the_field(tmp_path: Path) -> None:
    (tmp_path / "parse_report.json").write_text('{"ok": "many", "failed": 0}')
    with pytest.raises(InputError, match=r"parse_report\.json: not a valid Counts \(ok: "):
        DocumentsDir(tmp_path).read_report(Counts)


def test_dataset_splits_are_train_eval_and_eval_knowledge_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        DatasetDir(tmp_path).read("test")


def test_the_knowledge_eval_set_is_optional_and_round_trips(tmp_path: Path) -> None:
    folder = DatasetDir(tmp_path)
    assert folder.read("eval_knowledge") == []  # a dataset written before the set existed
    with pytest.raises(InputError, match=r"eval\.jsonl"):
        folder.read("eval")  # the generalization set stays mandatory
    item = make_item("k1", "Mood", "Why does sleep matter?", "It steadies mood.", ["Sleep steadies mood."])
    assert folder.write("eval_knowledge", [item]) == 1
    assert folder.eval_knowledge_path == tmp_path / "eval_knowledge.jsonl"
    assert folder.read("eval_knowledge") == [item]


def _file_names() -> set[str]:
    names = set()
    for artifact in ARTIFACTS:
        for key, value in vars(artifact).items():
            if key.isupper() and isinstance(value, str) and "." in value and value != "README.md":
                names.add(value)
    return names


def test_artifact_file_names_are_spelled_only_in_core_artifacts() -> None:
    names = _file_names()
    assert {"documents.jsonl", "train.jsonl", "metrics.json", "decision.json"} <= names
    found = []
    for folder in ("src/ragtune", "components", "pipelines", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.name == "artifacts.py" or "tests" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in names:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, "spell these through ragtune.core.artifacts:\n" + "\n".join(found)
