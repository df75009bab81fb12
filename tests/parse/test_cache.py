"""The content-hash parse cache: reruns reuse documents, changes and failures are parsed again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragtune.parse import run_parse
from ragtune.parse import stage as stage_module
from ragtune.parse.sections import Source
from tests.parse.conftest import MakeConfig, load_outputs, report_entry


@pytest.fixture
def corpus(tmp_path: Path, fixtures_dir: Path, pdf_bytes: dict[str, bytes]) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    for name in ("panic-guide.md", "sleep-mood.tei.xml", "depression-page.html"):
        shutil.copy(fixtures_dir / name, root / name)
    (root / "handbook.pdf").write_bytes(pdf_bytes["font-headings"])
    (root / "locked.pdf").write_bytes(pdf_bytes["encrypted"])
    return root


def test_rerun_hits_the_cache_with_identical_documents(
    corpus: Path, tmp_path: Path, make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(corpus)
    first = run_parse(config, tmp_path / "first")
    assert first.cache_hits == 0 and first.ok == 4 and first.failed == 1

    calls: list[str] = []
    real = stage_module.IsolatedReader.read

    def counting(self: stage_module.IsolatedReader, parser: str, data: bytes, source: Source) -> object:
        calls.append(source.name)
        return real(self, parser, data, source)  # type: ignore[arg-type]

    monkeypatch.setattr(stage_module.IsolatedReader, "read", counting)
    second = run_parse(config, tmp_path / "second")

    assert second.cache_hits == 4
    assert calls == ["locked.pdf"]  # only the failure is parsed again: failures are never cached
    first_docs, _ = load_outputs(tmp_path / "first")
    second_docs, on_disk = load_outputs(tmp_path / "second")
    assert second_docs == first_docs
    assert on_disk["cache_hits"] == 4
    assert report_entry(on_disk, "handbook.pdf")["cached"] is True
    assert report_entry(on_disk, "locked.pdf")["cached"] is False
    assert report_entry(on_disk, "locked.pdf")["status"] == "failed"


def test_changed_and_moved_files(corpus: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    config = make_config(corpus)
    run_parse(config, tmp_path / "first")

    with (corpus / "panic-guide.md").open("a", encoding="utf-8") as handle:
        handle.write("\n## Added later\n\nA new section written after the first parse.\n")
    shutil.move(corpus / "depression-page.html", corpus / "renamed.html")
    report = run_parse(config, tmp_path / "second")
    documents, on_disk = load_outputs(tmp_path / "second")

    assert report.cache_hits == 3  # the TEI, the PDF and the moved HTML
    assert report_entry(on_disk, "panic-guide.md")["cached"] is False  # new bytes, new key
    assert "Added later" in [s.heading for d in documents if d.parser == "markdown" for s in d.sections]
    # same bytes under a new name: a cache hit, but with the new name's identity
    moved = report_entry(on_disk, "renamed.html")
    assert moved["cached"] is True
    html = next(d for d in documents if d.parser == "html")
    assert html.doc_id == moved["doc_id"] and html.source_uri.endswith("/renamed.html")


def test_cache_key_includes_parser_version_and_relevant_config(
    corpus: Path, tmp_path: Path, make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(corpus)
    run_parse(config, tmp_path / "first")
    monkeypatch.setattr(stage_module, "PARSER_VERSION", "test-bump")
    assert run_parse(config, tmp_path / "second").cache_hits == 0

    grobid_on = stage_module._relevant_config(
        "grobid", config.parse.model_copy(update={"grobid_consolidate_header": True})
    )
    assert grobid_on != stage_module._relevant_config("grobid", config.parse)
    assert stage_module._relevant_config("markdown", config.parse) == {}


def test_min_chars_applies_to_cached_documents(corpus: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    run_parse(make_config(corpus), tmp_path / "first")
    strict = make_config(corpus, min_chars=100_000)
    report = run_parse(strict, tmp_path / "second")
    assert report.ok == 0
    assert all("empty document" in (f.reason or "") for f in report.files if f.source != "locked.pdf")


def test_corrupt_cache_entry_is_parsed_again(corpus: Path, tmp_path: Path, make_config: MakeConfig) -> None:
    config = make_config(corpus)
    run_parse(config, tmp_path / "first")
    for entry in (Path(config.cache_uri()) / "parse").rglob("*"):
        if entry.is_file():
            entry.write_text("{not json")
    report = run_parse(config, tmp_path / "second")
    assert report.cache_hits == 0 and report.ok == 4
    assert load_outputs(tmp_path / "second")[0] == load_outputs(tmp_path / "first")[0]
