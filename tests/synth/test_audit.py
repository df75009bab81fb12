"""``ragtune audit``: the page shows sampled items beside their chunks, and its marks come back as counts.

A small dataset is written by hand (a few kept items, rejected slots of three filters, the index's
chunks), so every count the report gives can be checked against marks chosen here. The page is
also laid out and clicked in headless Chromium: the columns keep their width at 1300 px, and the
CSV the page itself builds reads back through ``--marks``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from ragtune.core.artifacts import DatasetDir, IndexDir
from ragtune.core.records import (
    Chunk,
    ContextChunk,
    InstructionItem,
    Provenance,
    SentenceSupport,
    sha256_hex,
    write_jsonl,
)
from ragtune.core.reports.synth import SynthReport, TokenStats
from ragtune.core.stats import wilson_interval
from ragtune.synth.audit import (
    NO_SUPPORT,
    build_audit,
    highlight,
    kept_entry,
    read_dataset,
    rejected_entry,
    render_audit_page,
    sample_kept,
    sample_rejected,
)
from ragtune.synth.report import RejectedItem
from tests.chromium import lay_out, needs_chromium
from tests.cli.test_cli import invoke, one_error_line

CHUNKS = {
    "c-panic": "A panic attack is a sudden surge of intense fear that peaks within minutes. "
    "The heart pounds and breathing feels short.\n\nMany people fear they are dying.",
    "c-sleep": "Insomnia is difficulty falling asleep or staying asleep. Regular wake times help.",
    "c-mood": "Depressive disorders involve persistent low mood for at least two weeks.",
    "c-wide": "unbroken" * 60,
}


def _chunk(chunk_id: str) -> Chunk:
    text = CHUNKS[chunk_id]
    return Chunk(
        chunk_id=chunk_id,
        doc_id="doc-1",
        section_id="s1",
        section_path=["Anxiety Disorders", chunk_id],
        text=text,
        token_count=len(text.split()),
    )


def _item(
    n: int, question: str, answer: str, context: list[str], source: str | None = None
) -> InstructionItem:
    return InstructionItem(
        item_id=f"item{n:02d}",
        category="Anxiety Disorders",
        question_type="definition",
        question=question,
        answer=answer,
        context=[ContextChunk(chunk_id=c, sha256=sha256_hex(CHUNKS[c]), text=CHUNKS[c]) for c in context],
        messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        provenance=Provenance(
            doc_id="doc-1",
            section_path=["Anxiety Disorders"],
            source_chunk_id=source or context[0],
            context_chunk_ids=context,
            generator_model="local:smollm2",
            question_template="question@3",
            answer_template="answer@3",
        ),
    )


KEPT = [
    _item(
        1, "What is a panic attack?", "A sudden surge of intense fear that peaks within minutes.", ["c-panic"]
    ),
    _item(2, "What is insomnia?", "Difficulty falling asleep or staying asleep.", ["c-sleep", "c-panic"]),
    _item(
        3, "What <b>is</b> depression?", "Persistent low mood for two weeks.", ["c-mood"], source="c-sleep"
    ),
    _item(4, "Is this text wide?", "unbroken" * 50, ["c-wide"]),
]


def _rejected(
    n: int, stage: str, reason: str, question: str | None, answer: str | None = None
) -> RejectedItem:
    return RejectedItem(
        slot_id=f"c-panic:definition:{n}",
        stage=stage,
        reason=reason,
        detail=f"detail {n}",
        category="Anxiety Disorders",
        question_type="definition",
        doc_id="doc-1",
        section_path=["Anxiety Disorders"],
        source_chunk_id="c-panic",
        question=question,
        answer=answer,
        context_chunk_ids=["c-panic", "c-gone"] if answer else [],
        generator_model="local:smollm2",
    )


REJECTED = [
    _rejected(0, "grounding", "ungrounded", "What causes panic?", "Panic is caused by the moon."),
    _rejected(1, "grounding", "ungrounded", "When do panic attacks peak?", "They peak within minutes."),
    _rejected(2, "grounding", "ungrounded", "What is fear?", "Fear is a feeling."),
    _rejected(3, "answer", "too_short", "How long do panic attacks last?", "Minutes."),
    _rejected(4, "question", "mentions_source", "What does the passage say about panic?"),
    _rejected(5, "question", "llm_failure", None),
]


def _report() -> SynthReport:
    return SynthReport(
        generator_model="local:smollm2",
        mode="self",
        groundedness_method="local:lexical+embedding",
        relevance_method="cosine:minilm",
        embedder="minilm",
        categories=1,
        generated=len(KEPT) + len(REJECTED),
        kept=len(KEPT),
        train=3,
        eval=1,
        rejected=len(REJECTED),
        rejected_by_reason={},
        rejected_by_stage={},
        kept_share=round(len(KEPT) / (len(KEPT) + len(REJECTED)), 4),
        per_category={},
        cache_hits=0,
        cache_misses=0,
        llm_stats={},
        ledger={},
        templates={},
        token_counter="whitespace",
        question_tokens=TokenStats(),
        answer_tokens=TokenStats(),
        files={},
        elapsed_s=1.0,
    )


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A synthesized dataset as `ragtune synthesize` lays it out, with its index in ``ingest/``."""
    root = tmp_path / "dataset"
    out = DatasetDir(root)
    root.mkdir()
    out.write("train", KEPT[:3])
    out.write("eval", KEPT[3:])
    write_jsonl(root / DatasetDir.REJECTED, REJECTED)
    out.write_report(_report())
    IndexDir(root / "ingest").write([_chunk(c) for c in CHUNKS])
    return root


def _support(
    sentence: str, supported: bool, chunk_id: str | None, support: str | None, **extra: Any
) -> dict[str, Any]:
    return {
        "sentence": sentence,
        "supported": supported,
        "chunk_id": chunk_id,
        "support": support,
        "similarity": 0.8 if supported else 0.2,
        "missing_terms": extra.get("missing", []),
        "contradicted_terms": extra.get("contradicted", []),
    }


def _with_support(item: InstructionItem, support: list[dict[str, Any]]) -> InstructionItem:
    checked = [SentenceSupport(**entry) for entry in support]
    provenance = item.provenance.model_copy(update={"answer_mode": "extractive", "support": checked})
    return item.model_copy(update={"provenance": provenance})


def _audit_ids(page: str) -> list[str]:
    return re.findall(r'<article class="item [a-z]+" data-id="([^"]+)"', page)


# -- sampling ---------------------------------------------------------------------------------------------


def test_sampling_is_seeded_and_spreads_rejected_slots_over_the_filters(dataset: Path) -> None:
    source = read_dataset(dataset)
    first = [item.item_id for _, item in sample_kept(source.kept, 2, seed=7)]
    assert first == [item.item_id for _, item in sample_kept(source.kept, 2, seed=7)]
    assert {tuple(item.item_id for _, item in sample_kept(source.kept, 2, seed=s)) for s in range(20)} != {
        tuple(first)
    }
    assert len(sample_kept(source.kept, 99, seed=0)) == len(KEPT)

    three = sample_rejected(source.rejected, 3, seed=0)
    assert {(r.stage, r.reason) for r in three} == {
        ("grounding", "ungrounded"),
        ("answer", "too_short"),
        ("question", "mentions_source"),
    }
    everything = sample_rejected(source.rejected, 99, seed=0)
    assert len(everything) == 5  # the slot that never got a question has nothing to read
    assert all(r.question for r in everything)


# -- the page ---------------------------------------------------------------------------------------------


def test_page_without_support_data_shows_each_item_beside_its_chunks(dataset: Path) -> None:
    source = read_dataset(dataset)
    chunks = {c.chunk_id: c for c in IndexDir(dataset / "ingest").read()}
    entries = build_audit(source, chunks, n_kept=4, n_rejected=5, seed=0)
    page = render_audit_page(entries, source, seed=0)

    assert len(_audit_ids(page)) == 9
    assert page.count('type="radio"') == 2 * 9
    assert "What &lt;b&gt;is&lt;/b&gt; depression?" in page  # escaped, never markup
    assert page.count(NO_SUPPORT) == 4 + 4  # every answered item; the unanswered rejected one has no answer
    assert "<mark>" not in page
    depression = next(e for e in entries if e.audit_id == "item03")
    assert [(c.label, c.question_source) for c in depression.chunks] == [
        ("context 1", False),
        ("question source", True),
    ]
    assert depression.chunks[1].spans[0].text == CHUNKS["c-sleep"]  # from the index: not in the item
    insomnia = next(e for e in entries if e.audit_id == "item02")
    assert [(c.label, c.question_source) for c in insomnia.chunks] == [
        ("context 1", True),
        ("context 2", False),
    ]
    assert "rejected at grounding/ungrounded: detail" in page
    assert "not in the index's chunks" in page  # c-gone, cited by a rejected slot, is not in the index
    assert "no answer (rejected before answering)" in page
    assert "4 kept of 10 slots (40%)" in page


def test_page_with_support_data_highlights_each_supporting_sentence(dataset: Path) -> None:
    support = [
        _support(
            "A sudden surge of intense fear.",
            True,
            "c-panic",
            "A panic attack is a sudden surge of intense fear",
        ),
        _support("The heart pounds.", True, "c-panic", "The heart pounds and   breathing feels short.")
        | {"judge": "entailed"},
        _support("It lasts for days.", False, "c-panic", "peaks within minutes", missing=["days"]),
        _support("It is caused by the moon.", False, None, None, contradicted=["moon"]),
    ]
    item = _with_support(KEPT[0], support)
    chunks = {c.chunk_id: c for c in IndexDir(dataset / "ingest").read()}
    entry = kept_entry("train", item, chunks)

    assert entry.sentences is not None
    marked = {tuple(span.sentences): span.text for span in entry.chunks[0].spans if span.sentences}
    assert marked[(1,)] == "A panic attack is a sudden surge of intense fear"
    assert marked[(2,)] == "The heart pounds and breathing feels short."  # found across other whitespace
    assert marked[(3,)] == "peaks within minutes"
    assert (
        "".join(span.text for span in entry.chunks[0].spans) == CHUNKS["c-panic"]
    )  # nothing lost or doubled
    assert [s.highlighted_in for s in entry.sentences] == ["context 1", "context 1", "context 1", None]

    page = render_audit_page([entry], read_dataset(dataset), seed=0)
    assert NO_SUPPORT not in page
    assert page.count('<li class="unsupported">') == 2
    assert "missing: days" in page and "contradicted: moon" in page
    assert "<mark>The heart pounds and breathing feels short.<sup>2</sup></mark>" in page
    assert '<mark class="weak">peaks within minutes<sup>3</sup></mark>' in page  # closest, not support
    assert "extractive answer" in page and "judge: entailed" in page


def test_a_rejected_slot_with_support_data_is_highlighted_too(dataset: Path) -> None:
    chunks = {c.chunk_id: c for c in IndexDir(dataset / "ingest").read()}
    support = [_support("They peak within minutes.", True, "c-panic", "peaks within minutes")]
    checked = REJECTED[1].model_copy(update={"provenance": {"support": support}})
    entry = rejected_entry(checked, chunks)
    assert entry.sentences is not None and entry.sentences[0].highlighted_in == "context 1"
    assert [span.text for span in entry.chunks[0].spans if span.sentences] == ["peaks within minutes"]
    assert rejected_entry(REJECTED[1], chunks).sentences is None  # made before the check


def test_highlight_keeps_overlapping_supports_apart_and_quotes_what_it_cannot_find() -> None:
    text = "One two three four five."
    spans, found = highlight(text, [(1, "one two three"), (2, "three four"), (3, "absent words")])
    assert found == {1, 2}
    assert [(s.text, s.sentences) for s in spans] == [
        ("One two ", [1]),
        ("three", [1, 2]),
        (" four", [2]),
        (" five.", []),
    ]


# -- the command and the marks ----------------------------------------------------------------------------


def _write_marks(path: Path, rows: list[tuple[str, str, str]], header: str = "item_id,mark,note") -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(header + "\n")
        csv.writer(handle).writerows(rows)
    return path


def test_marks_round_trip_into_counts_with_intervals(dataset: Path, tmp_path: Path) -> None:
    page = tmp_path / "audit.html"
    code, output = invoke("audit", str(dataset), "--sample", "4", "--rejected", "5", "--out", str(page))
    assert code == 0, output
    ids = _audit_ids(page.read_text(encoding="utf-8"))
    assert len(ids) == 9 and "4 kept and 5 rejected items (no support data)" in output

    marks = {
        "item01": "right",
        "item02": "wrong",
        "item03": "wrong",
        "item04": "",  # not marked yet
        "c-panic:definition:0": "wrong",
        "c-panic:definition:1": "right",
        "c-panic:definition:2": "RIGHT",
        "c-panic:definition:3": "right",
        "c-panic:definition:4": "wrong",
    }
    assert set(marks) == set(ids)
    path = _write_marks(tmp_path / "marks.csv", [(i, marks[i], 'a "quoted", note\nover lines') for i in ids])
    code, output = invoke("audit", str(dataset), "--marks", str(path))
    assert code == 0, output
    report = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))

    assert (report["marked"], report["unmarked"]) == (8, 1)
    assert (report["kept"], report["generated"], report["kept_share"]) == (4, 10, 0.4)
    low, high = wilson_interval(2, 3)
    assert report["kept_wrong"] == {
        "n": 3,
        "count": 2,
        "share": 0.6667,
        "ci_low": round(low, 4),
        "ci_high": round(high, 4),
    }
    assert (report["rejected_good"]["count"], report["rejected_good"]["n"]) == (3, 5)
    cells = {k: (v["count"], v["n"]) for k, v in report["rejected_good_by_filter"].items()}
    assert cells == {
        "grounding/ungrounded": (2, 3),
        "answer/too_short": (1, 1),
        "question/mentions_source": (0, 1),
    }
    assert next(iter(cells)) == "grounding/ungrounded"  # most marked first
    assert "wrong among kept: 2 of 3 (67%, 95% CI [" in output


@pytest.mark.parametrize(
    ("header", "row", "expected"),
    [
        (
            "item_id,mark,note",
            ("item09", "right", ""),
            ":2: unknown item id 'item09' (not in the audited dataset)",
        ),
        (
            "item_id,mark,note",
            ("item01", "maybe", ""),
            ":2: mark must be 'right' or 'wrong' (or blank), not 'maybe'",
        ),
        (
            "id,verdict",
            ("item01", "right"),
            ":1: the header must be item_id,mark,note (missing item_id, mark)",
        ),
    ],
)
def test_a_bad_marks_row_is_one_line_naming_the_file_and_line(
    dataset: Path, tmp_path: Path, header: str, row: tuple[str, ...], expected: str
) -> None:
    path = tmp_path / "marks.csv"
    path.write_text(header + "\n" + ",".join(row) + "\n", encoding="utf-8")
    code, output = invoke("audit", str(dataset), "--marks", str(path))
    assert code == 1
    assert one_error_line(output).endswith(str(path) + expected)
    assert not path.with_suffix(".json").exists()


def test_an_item_marked_twice_names_both_lines(dataset: Path, tmp_path: Path) -> None:
    path = _write_marks(
        tmp_path / "marks.csv", [("item01", "right", ""), ("item02", "", ""), ("item01", "wrong", "")]
    )
    code, output = invoke("audit", str(dataset), "--marks", str(path))
    assert code == 1
    assert one_error_line(output).endswith(f"{path}:4: item item01 is marked again (first on line 2)")


def test_missing_chunks_or_out_are_one_line(dataset: Path, tmp_path: Path) -> None:
    code, output = invoke("audit", str(dataset), "--out", str(tmp_path / "a.html"), "--index", str(tmp_path))
    assert code == 1
    assert one_error_line(output).startswith(
        f"error: {tmp_path / 'chunks.jsonl'}: not found; the audit shows"
    )
    code, output = invoke("audit", str(dataset))
    assert code == 1 and "--out FILE.html is required" in one_error_line(output)


def test_wilson_interval_matches_known_values() -> None:
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


# -- in a browser -----------------------------------------------------------------------------------------

# After layout: mark the first item wrong with a note that needs quoting, the second right; then
# measure each item's two columns and every text box, and print the page's own CSV into the DOM.
BROWSER_CHECK = """<script>
window.addEventListener('load', () => {
  const items = [...document.querySelectorAll('article.item')];
  items[0].querySelector('input[value=wrong]').click();
  const note = items[0].querySelector('textarea');
  note.value = 'says "days", chunk says minutes';
  note.dispatchEvent(new Event('input', {bubbles: true}));
  items[1].querySelector('input[value=right]').click();
  const columns = items.map(a => [...a.querySelectorAll('.cols > div')].map(d => d.getBoundingClientRect().width));
  const overflowing = [...document.querySelectorAll('.question, .answer, .chunk-text, ol.sentences li, .head')]
    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.className);
  const out = document.createElement('pre');
  out.id = 'layout';
  out.textContent = JSON.stringify({width: document.documentElement.clientWidth,
    page: document.documentElement.scrollWidth, columns, overflowing,
    progress: document.getElementById('progress').textContent, csv: window.ragtuneAuditCsv()});
  document.body.appendChild(out);
});
</script>"""


@needs_chromium
def test_page_reads_at_1300_px_and_its_own_csv_reads_back(dataset: Path, tmp_path: Path) -> None:
    page = tmp_path / "audit.html"
    code, output = invoke("audit", str(dataset), "--sample", "4", "--rejected", "5", "--out", str(page))
    assert code == 0, output
    layout = lay_out(page, BROWSER_CHECK)

    assert (tmp_path / "audit.png").stat().st_size > 0
    assert layout["page"] <= layout["width"], layout  # no sideways scrolling
    assert layout["overflowing"] == [], layout  # long unbroken text wraps inside its box
    for left, right in layout["columns"]:
        assert left >= 400 and right >= 600, layout  # neither column squeezed by a wide chunk
    assert layout["progress"] == "2 of 9 marked"

    marks = tmp_path / "marks.csv"
    marks.write_text(layout["csv"], encoding="utf-8")
    code, output = invoke("audit", str(dataset), "--marks", str(marks))
    assert code == 0, output
    report = json.loads(marks.with_suffix(".json").read_text(encoding="utf-8"))
    assert (report["marked"], report["unmarked"]) == (2, 7)
    with marks.open(encoding="utf-8", newline="") as handle:
        first = next(csv.DictReader(handle))
    assert first["mark"] == "wrong" and first["note"] == 'says "days", chunk says minutes'
