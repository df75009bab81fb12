"""A hostile corpus: corrupt, encrypted, bomb, hanging, crashing, hungry, huge and deep files mixed
with good ones. Every file is accounted for and the good ones are kept, exactly as parsed alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragtune.parse import dispatch, run_parse
from tests.parse import pdfs
from tests.parse.conftest import MakeConfig, load_outputs
from tests.parse.hostile import hostile_text_reader

GOOD = ["depression-page.html", "panic-guide.md", "sleep-mood.tei.xml", "insomnia-notes.txt"]
DEPTH = 5000


def hostile_files(pdf_bytes: dict[str, bytes]) -> dict[str, tuple[bytes, str]]:
    """name -> (content, expected failure kind)."""
    deep_html = b"<html><body>" + b"<div>" * DEPTH + b"<p>deep</p>" + b"</div>" * DEPTH + b"</body></html>"
    deep_tei = (
        b'<TEI xmlns="http://www.tei-c.org/ns/1.0"><text><body>'
        + b"<div>" * DEPTH
        + b"<p>deep</p>"
        + b"</div>" * DEPTH
        + b"</body></text></TEI>"
    )
    return {
        "bad/corrupt.pdf": (pdf_bytes["truncated"], "input"),
        "bad/encrypted.pdf": (pdf_bytes["encrypted"], "input"),
        "bad/bomb.pdf": (pdfs.bomb_pdf(100), "input"),
        "bad/deep.html": (deep_html, "input"),
        "bad/deep.tei.xml": (deep_tei, "input"),
        "bad/hang.txt": (b"HANG and never return", "timeout"),
        "bad/hog.txt": (b"HOG all the memory there is", "memory"),
        "bad/segv.txt": (b"SEGV in a C extension", "crashed"),
        "bad/huge.txt": (b"Huge.\n\n" + b"A long and perfectly good line of text.\n" * 40_000, "too_large"),
    }


@pytest.mark.timeout(90)
def test_every_file_is_accounted_for_and_the_good_ones_kept(
    tmp_path: Path,
    fixtures_dir: Path,
    pdf_bytes: dict[str, bytes],
    make_config: MakeConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(dispatch.READERS, "text", hostile_text_reader)
    good_root, mixed_root = tmp_path / "good", tmp_path / "mixed"
    for root in (good_root, mixed_root):
        root.mkdir()
        for name in GOOD:
            shutil.copy(fixtures_dir / name, root / name)
        (root / "handbook.pdf").write_bytes(pdf_bytes["font-headings"])
    hostile = hostile_files(pdf_bytes)
    for name, (data, _) in hostile.items():
        (mixed_root / name).parent.mkdir(exist_ok=True)
        (mixed_root / name).write_bytes(data)

    limits = {"file_timeout_s": 4.0, "file_memory_mb": 256, "max_file_mb": 1.0}
    alone = run_parse(make_config(good_root, **limits), tmp_path / "alone")
    mixed = run_parse(make_config(mixed_root, max_failed_fraction=1.0, **limits), tmp_path / "mixed-out")
    alone_docs, _ = load_outputs(tmp_path / "alone")
    mixed_docs, _ = load_outputs(tmp_path / "mixed-out")

    assert alone.ok == len(GOOD) + 1 and alone.failed == 0
    names = [f.source for f in mixed.files]
    assert sorted(names) == sorted([*GOOD, "handbook.pdf", *hostile]) and len(set(names)) == len(names)
    outcome = {f.source: (f.status, f.failure) for f in mixed.files}
    for name, (_, kind) in hostile.items():
        assert outcome[name] == ("failed", kind), (name, mixed.files[names.index(name)].reason)
    reasons = {f.source: f.reason or "" for f in mixed.files}
    assert "nested too deeply" in reasons["bad/deep.html"]  # one path for over-deep input
    assert "Excessive depth" in reasons["bad/deep.tei.xml"] and "Limit reached" in reasons["bad/bomb.pdf"]
    assert {f.source for f in mixed.files if f.status == "ok"} == {*GOOD, "handbook.pdf"}
    strip = [d.model_copy(update={"source_uri": "", "title": ""}) for d in mixed_docs]
    assert strip == [d.model_copy(update={"source_uri": "", "title": ""}) for d in alone_docs]
