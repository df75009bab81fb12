"""Parse isolation: a file that hangs, exhausts memory or crashes costs only itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragtune.core.errors import InputError
from ragtune.core.storage import LocalStorage
from ragtune.parse import dispatch, run_parse
from ragtune.parse.report import EXIT_PARTIAL
from tests.parse.conftest import MakeConfig, load_outputs, report_entry
from tests.parse.hostile import hostile_text_reader

GOOD_TEXT = "Sleep hygiene\n\nRegular sleep and wake times support mood and attention in adolescents.\n"

# name -> (first word, expected failure kind, words expected in the reason)
HOSTILE = {
    "b-hang.txt": ("HANG", "timeout", "timed out"),
    "d-hog.txt": ("HOG", "memory", "out of memory"),
    "f-segv.txt": ("SEGV", "crashed", "SIGSEGV"),
    "h-nullread.txt": ("NULLREAD", "crashed", "SIGSEGV"),
    "j-exit.txt": ("EXIT", "crashed", "status 3"),
    "l-deep.txt": ("DEEP", "input", "nested too deeply"),
}
GOOD = ["a-good.txt", "c-good.txt", "e-good.txt", "g-good.txt", "i-good.txt", "k-good.txt", "m-good.txt"]


@pytest.fixture
def hostile_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(dispatch.READERS, "text", hostile_text_reader)


def write_corpus(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in GOOD:
        (root / name).write_text(GOOD_TEXT.replace("Sleep", f"Sleep {name}"), encoding="utf-8")
    for name, (word, _, _) in HOSTILE.items():
        (root / name).write_text(f"{word}\n\n{GOOD_TEXT}", encoding="utf-8")
    return root


@pytest.mark.timeout(60)
def test_hanging_hungry_and_crashing_files_are_recorded_and_the_rest_parsed(
    tmp_path: Path, make_config: MakeConfig, hostile_reader: None
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    config = make_config(corpus, file_timeout_s=4.0, file_memory_mb=128, max_failed_fraction=1.0)
    report = run_parse(config, tmp_path / "out")
    documents, on_disk = load_outputs(tmp_path / "out")

    for name, (_, kind, words) in HOSTILE.items():
        entry = report_entry(on_disk, name)
        assert (entry["status"], entry["failure"]) == ("failed", kind), entry
        assert entry["reason"].startswith(f"{name}: ") and words in entry["reason"], entry["reason"]
    # every good file parsed, in name order, each in a worker process, never in ours
    assert [d.source_uri.rsplit("/", 1)[-1] for d in documents] == GOOD
    pids = [d.title for d in documents]
    assert f"pid {os.getpid()}" not in pids
    # a worker is reused until it dies: the first two good files share one (the hang killed it)
    assert pids[0] != pids[1] and len(set(pids)) <= len(HOSTILE) + 1
    assert (report.ok, report.failed, report.exit_code) == (len(GOOD), len(HOSTILE), EXIT_PARTIAL)


def test_worker_is_reused_and_the_cache_stays_deterministic(
    tmp_path: Path, make_config: MakeConfig, hostile_reader: None
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in GOOD:
        (corpus / name).write_text(GOOD_TEXT.replace("Sleep", f"Sleep {name}"), encoding="utf-8")
    (corpus / "f-segv.txt").write_text(f"SEGV\n\n{GOOD_TEXT}", encoding="utf-8")
    config = make_config(corpus, max_failed_fraction=1.0)
    first = run_parse(config, tmp_path / "first")
    first_docs, _ = load_outputs(tmp_path / "first")
    titles = [d.title for d in first_docs]
    assert len(set(titles[:3])) == 1 and len(set(titles[3:])) == 1  # one worker before, one after the crash
    assert titles[0] != titles[3]

    second = run_parse(config, tmp_path / "second")
    second_docs, on_disk = load_outputs(tmp_path / "second")
    assert second_docs == first_docs  # same documents, same order, from the cache
    assert second.cache_hits == len(GOOD) and first.cache_hits == 0
    assert report_entry(on_disk, "f-segv.txt")["failure"] == "crashed"  # failures are never cached
    assert (tmp_path / "first" / "documents.jsonl").read_bytes() == (
        tmp_path / "second" / "documents.jsonl"
    ).read_bytes()


def test_files_over_max_file_mb_are_reported_not_read(
    tmp_path: Path, make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "small.txt").write_text(GOOD_TEXT, encoding="utf-8")
    (corpus / "huge.txt").write_text(GOOD_TEXT * 100, encoding="utf-8")  # about 8 KB
    read: list[str] = []
    real = LocalStorage.read_bytes

    def spy(self: LocalStorage, key: str) -> bytes:
        read.append(key)
        return real(self, key)

    monkeypatch.setattr(LocalStorage, "read_bytes", spy)
    report = run_parse(make_config(corpus, max_file_mb=0.004, max_failed_fraction=1.0), tmp_path / "out")
    huge = next(f for f in report.files if f.source == "huge.txt")
    assert huge.failure == "too_large"
    assert huge.reason is not None and "over parse.max_file_mb = 0.004; not read" in huge.reason
    assert read == ["small.txt"]


def test_too_many_failures_fail_the_stage_naming_the_files(tmp_path: Path, make_config: MakeConfig) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        (corpus / name).write_text(GOOD_TEXT, encoding="utf-8")
    (corpus / "e-empty.txt").write_text("", encoding="utf-8")
    (corpus / "f-binary.txt").write_bytes(bytes(range(256)) * 4)

    with pytest.raises(InputError) as caught:
        run_parse(make_config(corpus), tmp_path / "out")  # 2 of 6 failed: over the default 0.2
    message = str(caught.value)
    assert "2 of 6 files failed" in message and "parse.max_failed_fraction = 0.2" in message
    assert "e-empty.txt, f-binary.txt" in message
    _, on_disk = load_outputs(tmp_path / "out")  # the outputs are still written, for the post-mortem
    assert on_disk["failed"] == 2

    report = run_parse(make_config(corpus, max_failed_fraction=0.5), tmp_path / "out2")
    assert report.exit_code == EXIT_PARTIAL  # within the bound: partial success, as before


def test_in_process_isolation_none_reads_in_this_process(
    tmp_path: Path, make_config: MakeConfig, hostile_reader: None
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(GOOD_TEXT, encoding="utf-8")
    (corpus / "b-deep.txt").write_text(f"DEEP\n\n{GOOD_TEXT}", encoding="utf-8")
    report = run_parse(make_config(corpus, isolation="none", max_failed_fraction=1.0), tmp_path / "out")
    documents, _ = load_outputs(tmp_path / "out")
    assert [d.title for d in documents] == [f"pid {os.getpid()}"]
    deep = next(f for f in report.files if f.source == "b-deep.txt")
    assert deep.failure == "input" and "nested too deeply" in (deep.reason or "")
