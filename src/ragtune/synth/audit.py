"""The human audit of a synthesized dataset: a page that shows each sampled item beside its chunks.

The filters are proxies; whether a kept answer is right can only be told by reading it against the
text it was written from. :func:`build_audit` draws a seeded sample of kept items, and of rejected
slots spread over the filters that rejected them, and resolves every chunk each one cites (the
retrieved context the answer was written from, and the chunk the question came from) through the
index's ``chunks.jsonl``. :func:`render_audit_page` lays them out side by side: question and
answer on the left, the chunks on the right. Where an item carries the faithfulness check's
per-sentence ``support`` (in ``provenance.support``), each answer sentence is numbered, an
unsupported one is flagged with its missing and contradicted terms, and the chunk sentence that
supports it is highlighted with its number; a dataset made before that check shows the chunks
plain and says so. Each item has right/wrong buttons and a note, and the page downloads the marks
as ``item_id,mark,note`` CSV, which :mod:`.audit_marks` reads back.

An item's audit id is its ``item_id`` when kept and its ``slot_id`` when rejected.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ragtune.core.artifacts import DatasetDir, IndexDir
from ragtune.core.fsutil import atomic_write_text
from ragtune.core.records import Chunk, InstructionItem, read_jsonl
from ragtune.core.reports.synth import SynthReport
from ragtune.synth.prompts import synth_templates
from ragtune.synth.report import RejectedItem

AUDIT_TEMPLATE = "audit.html"
NO_SUPPORT = "no support data (dataset made before the faithfulness check)"


@dataclass(frozen=True)
class AuditSource:
    """What a dataset folder offers an audit: its kept items with their split, its rejected slots."""

    root: Path
    kept: list[tuple[str, InstructionItem]]
    rejected: list[RejectedItem]
    report: SynthReport

    def audit_ids(self) -> dict[str, str | None]:
        """Every audit id in the dataset -> the filter that rejected it (``None``: kept)."""
        ids: dict[str, str | None] = {item.item_id: None for _, item in self.kept}
        ids.update({r.slot_id: filter_label(r) for r in self.rejected})
        return ids


def filter_label(rejected: RejectedItem) -> str:
    """``stage/reason`` — the filter a rejected slot failed, as the audit report groups them."""
    return f"{rejected.stage}/{rejected.reason}"


def read_dataset(dataset_dir: Path) -> AuditSource:
    """The kept items (train, then eval), the rejected slots and the report of a synthesized dataset."""
    dataset = DatasetDir(dataset_dir)
    report = dataset.read_report(SynthReport)
    kept = [(split, item) for split in ("train", "eval") for item in dataset.read(split)]
    rejected = read_jsonl(dataset.root / DatasetDir.REJECTED, RejectedItem)
    return AuditSource(dataset.root, kept, rejected, report)


# -- sampling ------------------------------------------------------------------------------------------


def sample_kept(
    kept: Sequence[tuple[str, InstructionItem]], n: int, seed: int
) -> list[tuple[str, InstructionItem]]:
    """``n`` kept items drawn at random with ``seed`` (the same ones for the same dataset and seed)."""
    ordered = sorted(kept, key=lambda pair: pair[1].item_id)
    return random.Random(f"{seed}:kept").sample(ordered, min(n, len(ordered)))


def sample_rejected(rejected: Sequence[RejectedItem], n: int, seed: int) -> list[RejectedItem]:
    """``n`` rejected slots that got as far as a question, spread evenly over the filters.

    Each filter's slots are shuffled with ``seed``; then one is taken from each filter in turn
    (most frequent first), so a rare filter is audited too, not only the one that rejects most.
    """
    rng = random.Random(f"{seed}:rejected")
    by_filter: dict[str, list[RejectedItem]] = {}
    for rejection in sorted(rejected, key=lambda r: r.slot_id):
        if rejection.question:
            by_filter.setdefault(filter_label(rejection), []).append(rejection)
    queues = sorted(by_filter.values(), key=lambda slots: (-len(slots), filter_label(slots[0])))
    for queue in queues:
        rng.shuffle(queue)
    chosen: list[RejectedItem] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return chosen


# -- what the page shows ---------------------------------------------------------------------------------


class StoredSupport(BaseModel):
    """One answer sentence as the faithfulness check stores it in ``provenance.support``.

    Read from the stored model or dict by field name (extra fields ignored), so the page shows
    whatever version of the check wrote the dataset, and a dataset without it shows none.
    """

    model_config = ConfigDict(extra="ignore", from_attributes=True)

    sentence: str
    supported: bool
    chunk_id: str | None = None
    support: str | None = None
    similarity: float | None = None
    missing_terms: list[str] = []
    contradicted_terms: list[str] = []
    judge: str | None = None  # an LLM entailment verdict, where a judge gave one


class SentenceView(StoredSupport):
    number: int
    highlighted_in: str | None = None  # label of the shown chunk where its support is highlighted


class Span(BaseModel):
    """A run of chunk text and the answer sentences (numbers) it supports; ``[]`` for plain text."""

    text: str
    sentences: list[int] = []
    weak: bool = False  # every sentence it stands for is unsupported: the closest match, not support


class ChunkView(BaseModel):
    label: str  # "context N" (retrieved for the answer, best first) or "question source"
    chunk_id: str
    question_source: bool = False  # the chunk the question was written from
    section: str = ""
    spans: list[Span]
    found: bool = True


class AuditEntry(BaseModel):
    """One item or rejected slot as the page shows it."""

    audit_id: str
    kept: bool
    split: str | None = None
    filter: str | None = None
    detail: str = ""
    category: str
    question_type: str
    question: str | None
    answer: str | None
    scores: dict[str, float] = {}
    repairs: list[str] = []
    retry_of: str | None = None
    answer_mode: str | None = None  # generate or extractive, where the dataset records it
    sentences: list[SentenceView] | None = None  # None: the item carries no support data
    chunks: list[ChunkView]


def _provenance_value(provenance: object, key: str) -> Any:
    """``key`` of a kept item's provenance (a model) or a rejected slot's (a dict); ``None`` if absent."""
    if isinstance(provenance, Mapping):
        return provenance.get(key)
    return getattr(provenance, key, None)


def support_of(provenance: object) -> list[StoredSupport] | None:
    """The per-sentence support in a provenance (``None``: made without the faithfulness check)."""
    entries = _provenance_value(provenance, "support")
    if entries is None:
        return None
    return [StoredSupport.model_validate(entry, from_attributes=True) for entry in entries]


def find_text(text: str, needle: str) -> tuple[int, int] | None:
    """Where ``needle`` stands in ``text``, ignoring case and differences in whitespace."""
    words = needle.split()
    if not words:
        return None
    match = re.search(r"\s+".join(re.escape(word) for word in words), text, re.IGNORECASE)
    return (match.start(), match.end()) if match else None


def highlight(text: str, marks: Sequence[tuple[int, str]]) -> tuple[list[Span], set[int]]:
    """Cut ``text`` into spans tagged with the sentences ``(number, support)`` they support.

    Returns the spans and the numbers whose support was found in ``text``.
    """
    cover: list[tuple[int, ...]] = [()] * len(text)
    found: set[int] = set()
    for number, support in marks:
        where = find_text(text, support)
        if where is None:
            continue
        found.add(number)
        for position in range(*where):
            cover[position] = (*cover[position], number)
    spans: list[Span] = []
    for position, char in enumerate(text):
        if spans and position and cover[position] == cover[position - 1]:
            spans[-1].text += char
        else:
            spans.append(Span(text=char, sentences=sorted(set(cover[position]))))
    return spans, found


@dataclass(frozen=True)
class _Cited:
    label: str
    chunk_id: str
    text: str | None  # None: look it up in the index
    question_source: bool


def _cited_chunks(source_chunk_id: str, context: Sequence[tuple[str, str | None]]) -> list[_Cited]:
    """The context chunks in retrieval order, then the question's source chunk if it is not among them."""
    cited = [
        _Cited(f"context {n}", chunk_id, text, chunk_id == source_chunk_id)
        for n, (chunk_id, text) in enumerate(context, start=1)
    ]
    if source_chunk_id not in {chunk_id for chunk_id, _ in context}:
        cited.append(_Cited("question source", source_chunk_id, None, True))
    return cited


def _views(
    cited: Sequence[_Cited], support: list[StoredSupport] | None, chunks: Mapping[str, Chunk]
) -> tuple[list[ChunkView], list[SentenceView] | None]:
    """The chunk views, with each supporting sentence highlighted, and the answer sentences."""
    sentences = (
        None
        if support is None
        else [SentenceView(number=n, **s.model_dump()) for n, s in enumerate(support, start=1)]
    )
    views = []
    for chunk in cited:
        indexed = chunks.get(chunk.chunk_id)
        text = chunk.text if chunk.text is not None else indexed.text if indexed else None
        view = ChunkView(
            label=chunk.label,
            chunk_id=chunk.chunk_id,
            question_source=chunk.question_source,
            section=" › ".join(indexed.section_path) if indexed else "",
            spans=[],
            found=text is not None,
        )
        views.append(view)
        if text is None:
            continue
        unplaced = [s for s in sentences or [] if s.highlighted_in is None]
        marks = [(s.number, s.support) for s in unplaced if s.support and s.chunk_id == chunk.chunk_id]
        view.spans, found = highlight(text, marks)
        unsupported = {s.number for s in unplaced if not s.supported}
        for span in view.spans:
            span.weak = bool(span.sentences) and set(span.sentences) <= unsupported
        for sentence in unplaced:
            if sentence.number in found:
                sentence.highlighted_in = chunk.label
    return views, sentences


SHARED_FIELDS = {"category", "question_type", "question", "answer", "repairs", "retry_of"}


def _entry(
    source_chunk_id: str,
    context: Sequence[tuple[str, str | None]],
    provenance: object,
    chunks: Mapping[str, Chunk],
    **fields: Any,
) -> AuditEntry:
    views, sentences = _views(_cited_chunks(source_chunk_id, context), support_of(provenance), chunks)
    answer_mode = _provenance_value(provenance, "answer_mode")
    return AuditEntry(sentences=sentences, chunks=views, answer_mode=answer_mode, **fields)


def kept_entry(split: str, item: InstructionItem, chunks: Mapping[str, Chunk]) -> AuditEntry:
    provenance = item.provenance
    return _entry(
        provenance.source_chunk_id,
        [(c.chunk_id, c.text) for c in item.context],  # the very text the answer was written from
        provenance,
        chunks,
        audit_id=item.item_id,
        kept=True,
        split=split,
        **item.model_dump(include=SHARED_FIELDS),
        **provenance.model_dump(include=SHARED_FIELDS),
    )


def rejected_entry(rejected: RejectedItem, chunks: Mapping[str, Chunk]) -> AuditEntry:
    return _entry(
        rejected.source_chunk_id,
        [(chunk_id, None) for chunk_id in rejected.context_chunk_ids],
        getattr(rejected, "provenance", None),  # a dict, in datasets made with the faithfulness check
        chunks,
        audit_id=rejected.slot_id,
        kept=False,
        filter=filter_label(rejected),
        **rejected.model_dump(include=SHARED_FIELDS | {"detail", "scores"}),
    )


# -- the page ---------------------------------------------------------------------------------------------


class AuditPage(BaseModel):
    """What :func:`write_audit_page` wrote: where, and how many entries of each kind."""

    path: str
    kept: int
    rejected: int
    with_support: int


def build_audit(
    source: AuditSource, chunks: Mapping[str, Chunk], n_kept: int, n_rejected: int, seed: int
) -> list[AuditEntry]:
    """The sampled kept items, then the sampled rejected slots, each with its chunks resolved."""
    entries = [kept_entry(split, item, chunks) for split, item in sample_kept(source.kept, n_kept, seed)]
    return entries + [rejected_entry(r, chunks) for r in sample_rejected(source.rejected, n_rejected, seed)]


def render_audit_page(
    entries: Sequence[AuditEntry], source: AuditSource, seed: int, templates_dir: str | Path | None = None
) -> str:
    template = synth_templates(templates_dir).get(AUDIT_TEMPLATE)
    return template.render(
        entries=entries,
        report=source.report,
        dataset=str(source.root),
        seed=seed,
        template_ref=template.ref,
        no_support=NO_SUPPORT,
        n_kept=sum(e.kept for e in entries),
        n_rejected=sum(not e.kept for e in entries),
    )


def write_audit_page(
    dataset_dir: Path,
    index_dir: Path,
    out: Path,
    *,
    n_kept: int,
    n_rejected: int,
    seed: int,
    templates_dir: str | Path | None = None,
) -> AuditPage:
    """Sample, resolve and render the audit of ``dataset_dir`` into the HTML file ``out``."""
    source = read_dataset(dataset_dir)
    chunks = {chunk.chunk_id: chunk for chunk in IndexDir(index_dir).read()}
    entries = build_audit(source, chunks, n_kept, n_rejected, seed)
    atomic_write_text(out, render_audit_page(entries, source, seed, templates_dir) + "\n")
    return AuditPage(
        path=str(out),
        kept=sum(e.kept for e in entries),
        rejected=sum(not e.kept for e in entries),
        with_support=sum(e.sentences is not None for e in entries),
    )
