"""run_parse over whole corpora: outputs, bad inputs, selection, explicit sources, S3."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from ragtune.core.config import StorageConfig
from ragtune.core.errors import InputError
from ragtune.core.records import doc_id_for
from ragtune.core.storage import S3Storage, open_storage
from ragtune.parse import ParseReport, run_parse
from ragtune.parse.report import EXIT_NOTHING_PARSED, EXIT_OK, EXIT_PARTIAL
from tests.conftest import S3Server
from tests.parse.conftest import MakeConfig, load_outputs, report_entry

GOOD = ["depression-page.html", "panic-guide.md", "sleep-mood.tei.xml", "insomnia-notes.txt"]


def good_corpus(fixtures_dir: Path, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in GOOD:
        shutil.copy(fixtures_dir / name, root / name)
    return root


@pytest.fixture
def mixed_corpus(tmp_path: Path, fixtures_dir: Path, pdf_bytes: dict[str, bytes]) -> Path:
    """Good files of every kind next to every kind of bad input."""
    root = good_corpus(fixtures_dir, tmp_path / "corpus")
    (root / "papers").mkdir()
    (root / "papers" / "handbook.pdf").write_bytes(pdf_bytes["font-headings"])
    (root / "papers" / "primer.pdf").write_bytes(pdf_bytes["outline"])
    (root / "bad").mkdir()
    (root / "bad" / "truncated.pdf").write_bytes(pdf_bytes["truncated"])
    (root / "bad" / "locked.pdf").write_bytes(pdf_bytes["encrypted"])
    (root / "bad" / "scan.pdf").write_bytes(pdf_bytes["scanned"])
    (root / "bad" / "webpage.pdf").write_bytes(b"<!DOCTYPE html><html><body><p>Saved page</p></body></html>")
    (root / "bad" / "empty.md").write_bytes(b"")
    (root / "bad" / "tiny.txt").write_text("Too short.")
    (root / "bad" / "garbage.txt").write_bytes(bytes(range(256)) * 8)
    return root


BAD_REASONS = {
    "bad/truncated.pdf": "corrupt or truncated PDF",
    "bad/locked.pdf": "encrypted PDF",
    "bad/scan.pdf": "no extractable text (scanned?)",
    "bad/webpage.pdf": "not a PDF: content does not start with %PDF- (looks like html)",
    "bad/empty.md": "empty document",
    "bad/tiny.txt": "empty document (10 characters of text, parse.min_chars is 40)",
    "bad/garbage.txt": "undecodable text",
}


def test_bad_inputs_are_reported_and_good_files_survive(
    mixed_corpus: Path, tmp_path: Path, make_config: MakeConfig
) -> None:
    out = tmp_path / "out"
    report = run_parse(make_config(mixed_corpus, max_failed_fraction=1.0), out)
    documents, on_disk = load_outputs(out)

    assert ParseReport.model_validate(on_disk) == report
    for name, problem in BAD_REASONS.items():
        entry = report_entry(on_disk, name)
        assert entry["status"] == "failed"
        assert entry["reason"].startswith(f"{name}: ")  # every reason names its file
        assert problem in entry["reason"]
    assert report_entry(on_disk, "bad/locked.pdf")["parser"] == "pdf"
    assert report_entry(on_disk, "bad/webpage.pdf")["parser"] is None

    good = [*GOOD, "papers/handbook.pdf", "papers/primer.pdf"]
    assert sorted(d.doc_id for d in documents) == sorted(doc_id_for(name) for name in good)
    for name in good:
        entry = report_entry(on_disk, name)
        assert entry["status"] == "ok" and entry["reason"] is None
        assert entry["sections"] > 0 and entry["chars"] >= 40
    parsers = {d.source_uri.rsplit("/", 1)[-1]: d.parser for d in documents}
    assert parsers == {
        "depression-page.html": "html",
        "panic-guide.md": "markdown",
        "sleep-mood.tei.xml": "tei",
        "insomnia-notes.txt": "text",
        "handbook.pdf": "pdf",
        "primer.pdf": "pdf",
    }

    assert (on_disk["total"], on_disk["ok"], on_disk["failed"]) == (13, 6, 7)
    assert on_disk["partial"] is True
    assert report.exit_code == EXIT_PARTIAL
    assert (report.parsed_count, report.failed_count) == (6, 7)  # what the CLI and component print
    assert {f.source for f in report.failures} == set(BAD_REASONS)


def test_document_identity_fields(tmp_path: Path, fixtures_dir: Path, make_config: MakeConfig) -> None:
    root = good_corpus(fixtures_dir, tmp_path / "corpus")
    report = run_parse(make_config(root), tmp_path / "out")
    documents, _ = load_outputs(tmp_path / "out")
    assert report.exit_code == EXIT_OK and report.partial is False
    md = next(d for d in documents if d.parser == "markdown")
    data = (root / "panic-guide.md").read_bytes()
    assert md.doc_id == doc_id_for("panic-guide.md")
    assert md.sha256 == hashlib.sha256(data).hexdigest()
    assert md.source_uri == open_storage(str(root)).uri_for("panic-guide.md")
    # documents.jsonl is in name order, whatever order the files were parsed in
    assert [d.source_uri.rsplit("/", 1)[-1] for d in documents] == sorted(GOOD)


def test_include_exclude_globs(tmp_path: Path, fixtures_dir: Path, make_config: MakeConfig) -> None:
    root = good_corpus(fixtures_dir, tmp_path / "corpus")
    shutil.copy(fixtures_dir / "panic-guide.md", root / "README.md")  # excluded by default
    shutil.copy(fixtures_dir / "panic-guide.md", root / ".hidden.md")
    (root / ".git").mkdir()
    shutil.copy(fixtures_dir / "panic-guide.md", root / ".git" / "notes.md")  # inside an excluded folder
    (root / "data.csv").write_text("a,b\n1,2\n")  # not included
    shutil.copy(fixtures_dir / "insomnia-notes.txt", root / "LOUD.TXT")  # globs ignore case
    report = run_parse(make_config(root), tmp_path / "out")
    assert sorted(f.source for f in report.files) == sorted([*GOOD, "LOUD.TXT"])

    config = make_config(root)
    config.corpus.include = ["*.md"]
    config.corpus.exclude = []
    names = sorted(f.source for f in run_parse(config, tmp_path / "out2").files)
    assert names == [".git/notes.md", ".hidden.md", "README.md", "panic-guide.md"]


def test_explicit_sources_files_and_folders(
    tmp_path: Path, fixtures_dir: Path, make_config: MakeConfig
) -> None:
    folder = good_corpus(fixtures_dir, tmp_path / "folder")
    (folder / "sub").mkdir()
    shutil.copy(fixtures_dir / "insomnia-notes.txt", folder / "sub" / "more.txt")
    single = tmp_path / "elsewhere" / "panic-guide.md"  # same relative name as a folder file
    single.parent.mkdir()
    shutil.copy(fixtures_dir / "panic-guide.md", single)
    config = make_config(tmp_path / "unused-corpus")
    report = run_parse(
        config, tmp_path / "out", sources=[str(folder), str(single), str(tmp_path / "nope.pdf")]
    )
    documents, on_disk = load_outputs(tmp_path / "out")

    assert report.total == len(GOOD) + 3
    assert report_entry(on_disk, "sub/more.txt")["status"] == "ok"
    missing = report_entry(on_disk, str(tmp_path / "nope.pdf"))
    assert missing["status"] == "failed" and "file or folder not found" in missing["reason"]
    # the second "panic-guide.md" is identified by its full path, so no two doc_ids collide
    assert len({d.doc_id for d in documents}) == len(documents) == len(GOOD) + 2
    uris = {d.source_uri for d in documents}
    assert str(single.resolve()) in uris and str((folder / "sub" / "more.txt").resolve()) in uris
    assert report.exit_code == EXIT_PARTIAL


def test_nothing_parsed(tmp_path: Path, make_config: MakeConfig) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "only.txt").write_text("short")
    report = run_parse(make_config(root), tmp_path / "out")
    documents, on_disk = load_outputs(tmp_path / "out")
    assert documents == [] and on_disk["ok"] == 0 and on_disk["partial"] is False
    assert report.exit_code == EXIT_NOTHING_PARSED

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_parse(make_config(empty), tmp_path / "out2").exit_code == EXIT_NOTHING_PARSED


def test_missing_corpus_folder_is_an_error(tmp_path: Path, make_config: MakeConfig) -> None:
    with pytest.raises(InputError, match="corpus folder not found"):
        run_parse(make_config(tmp_path / "absent"), tmp_path / "out")


def test_s3_corpus(tmp_path: Path, fixtures_dir: Path, s3_env: S3Server, make_config: MakeConfig) -> None:
    storage_config = StorageConfig(endpoint=s3_env.endpoint, secure=False, region="us-east-1")
    remote = open_storage("s3://parse-corpus/team/docs", storage_config)
    assert isinstance(remote, S3Storage)
    remote.ensure_bucket()
    remote.upload_dir(good_corpus(fixtures_dir, tmp_path / "local"))
    remote.write_bytes("README.md", b"# excluded by the default globs\n")

    config = make_config("s3://parse-corpus/team/docs")
    config.storage = storage_config
    report = run_parse(config, tmp_path / "out")
    documents, _ = load_outputs(tmp_path / "out")
    assert report.exit_code == EXIT_OK
    assert sorted(f.source for f in report.files) == sorted(GOOD)
    assert {d.source_uri for d in documents} == {f"s3://parse-corpus/team/docs/{name}" for name in GOOD}
    assert {d.doc_id for d in documents} == {doc_id_for(name) for name in GOOD}
