"""Chunking invariants on hand-made documents, measured with the real MiniLM tokenizer."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from ragtune.core.records import Chunk, Document, Section
from ragtune.index.chunking import WordPieceSpans, chunk_document, split_text

PROSE = (
    "Major depressive disorder is diagnosed when low mood or loss of interest lasts at least two weeks. "
    "Sleep, appetite and concentration are usually affected as well. "
    "Many patients describe feelings of worthlessness or excessive guilt.\n\n"
    "Assessment always includes asking directly about thoughts of death and suicide. "
    "Asking does not plant the idea; it opens the door to help. "
    "Protective factors, such as family and future plans, are recorded too.\n\n"
    "First-line treatment for moderate depression combines psychotherapy with an antidepressant. "
    "Selective serotonin reuptake inhibitors are preferred because they are safer in overdose. "
    "Response is judged after four to six weeks at an adequate dose.\n"
    "If there is no response, the dose is optimised, the drug switched, or an augmenting agent added."
)


DRUGS = ["methylphenidate", "atomoxetine", "guanfacine", "clonidine", "dexamfetamine", "lisdexamfetamine"]
DRUGS += ["bupropion", "modafinil", "amitriptyline", "nortriptyline", "venlafaxine", "duloxetine"]


def make_document(doc_id: str = "depression-guide") -> Document:
    return Document(
        doc_id=doc_id,
        source_uri=f"guides/{doc_id}.md",
        sha256="0" * 64,
        title="Depression guide",
        parser="markdown",
        sections=[
            Section(section_id="s0", heading="", level=0, path=[], text="A short guide for ward doctors."),
            Section(section_id="s1", heading="Depression", level=1, path=[], text=""),
            Section(section_id="s2", heading="Diagnosis", level=2, path=["Depression"], text=PROSE),
            Section(
                section_id="s3",
                heading="Monitoring",
                level=2,
                path=["Depression"],
                text=" ".join(
                    f"At visit {i} weight and blood pressure are checked and charted." for i in range(1, 13)
                ),
            ),
            Section(section_id="s4", heading="Appendix", level=1, path=[], text="   \n\n  "),
        ],
    )


def locate(section_text: str, chunks: list[Chunk]) -> list[tuple[int, int]]:
    """Positions of the chunks inside their section, found in order (each must be found after
    the previous one's start)."""
    positions = []
    cursor = 0
    for chunk in chunks:
        start = section_text.find(chunk.text, cursor)
        assert start >= 0, f"chunk is not a substring of its section (in order): {chunk.text!r}"
        positions.append((start, start + len(chunk.text)))
        cursor = start + 1
    return positions


def assert_invariants(
    doc: Document, chunks: list[Chunk], spans: WordPieceSpans, max_tokens: int, overlap: int
) -> None:
    sections = {s.section_id: s for s in doc.sections}
    assert len({c.chunk_id for c in chunks}) == len(chunks), "chunk ids must be unique"
    for chunk in chunks:
        section = sections[chunk.section_id]
        assert chunk.doc_id == doc.doc_id
        assert chunk.section_path == section.full_path
        assert chunk.token_count == spans.count(chunk.text) <= max_tokens
        assert chunk.text == chunk.text.strip() and chunk.text
        assert chunk.chunk_id == Chunk.make_id(doc.doc_id, section.full_path, chunk.text)
    for section in doc.sections:
        own = [c for c in chunks if c.section_id == section.section_id]
        if not section.text.strip():
            assert own == []
            continue
        positions = locate(section.text, own)
        covered = [False] * len(section.text)
        for start, end in positions:
            covered[start:end] = [True] * (end - start)
        lost = [ch for ch, hit in zip(section.text, covered, strict=True) if not hit and not ch.isspace()]
        assert lost == [], f"text lost in section {section.section_id}: {''.join(lost)!r}"
        for (start, end), (next_start, next_end) in itertools.pairwise(positions):
            assert start < next_start and end < next_end, "chunks must move forward"
            shared = section.text[next_start:end]
            assert spans.count(shared) <= overlap, "neighbours share more than the overlap"


def test_chunks_respect_size_sections_and_cover_all_text(spans: WordPieceSpans) -> None:
    doc = make_document()
    chunks = chunk_document(doc, spans, max_tokens=40, overlap=8)
    assert_invariants(doc, chunks, spans, 40, 8)
    # The long sections were split; the empty/whitespace ones produced nothing.
    by_section = {sid: [c for c in chunks if c.section_id == sid] for sid in ("s0", "s1", "s2", "s3", "s4")}
    assert len(by_section["s0"]) == 1 and by_section["s0"][0].section_path == []
    assert by_section["s1"] == [] and by_section["s4"] == []
    assert len(by_section["s2"]) > 3 and len(by_section["s3"]) > 2
    assert all(c.section_path == ["Depression", "Diagnosis"] for c in by_section["s2"])
    assert all(c.section_path == ["Depression", "Monitoring"] for c in by_section["s3"])


def test_neighbouring_chunks_overlap(spans: WordPieceSpans) -> None:
    doc = make_document()
    chunks = [c for c in chunk_document(doc, spans, max_tokens=40, overlap=8) if c.section_id == "s3"]
    positions = locate(doc.sections[3].text, chunks)
    for (_, end), (next_start, _) in itertools.pairwise(positions):
        assert next_start < end, "with overlap > 0, a chunk starts inside its predecessor"
    no_overlap = [c for c in chunk_document(doc, spans, max_tokens=40, overlap=0) if c.section_id == "s3"]
    positions = locate(doc.sections[3].text, no_overlap)
    for (_, end), (next_start, _) in itertools.pairwise(positions):
        assert next_start >= end


def test_cuts_prefer_sentence_and_paragraph_ends(spans: WordPieceSpans) -> None:
    doc = make_document()
    chunks = [c for c in chunk_document(doc, spans, max_tokens=48, overlap=0) if c.section_id == "s2"]
    # Every chunk ends a sentence: no sentence in PROSE is longer than half the window.
    assert all(c.text.endswith(".") for c in chunks)
    # Paragraphs that fit are not merged with a piece of the next one across the blank line.
    first_paragraph = PROSE.split("\n\n")[0]
    assert spans.count(first_paragraph) <= 48
    assert chunks[0].text == first_paragraph


def test_ids_are_stable_and_depend_on_content(spans: WordPieceSpans) -> None:
    first = chunk_document(make_document(), spans, max_tokens=40, overlap=8)
    again = chunk_document(make_document(), spans, max_tokens=40, overlap=8)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    other_doc = chunk_document(make_document("another-guide"), spans, max_tokens=40, overlap=8)
    assert not {c.chunk_id for c in first} & {c.chunk_id for c in other_doc}


def test_repeated_text_in_one_section_is_kept_once(spans: WordPieceSpans) -> None:
    paragraph = "Check the pulse and the blood pressure before every dose increase."
    doc = Document(
        doc_id="repeat",
        source_uri="repeat.txt",
        sha256="0" * 64,
        title="Repeat",
        parser="text",
        sections=[
            Section(section_id="s0", heading="Checks", level=1, path=[], text=f"{paragraph}\n\n{paragraph}")
        ],
    )
    chunks = chunk_document(doc, spans, max_tokens=16, overlap=0)
    assert [c.text for c in chunks] == [paragraph]


def test_exact_windows_with_a_whitespace_tokenizer() -> None:
    text = " ".join(f"w{i}" for i in range(25))

    def words(value: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\S+", value)]

    pieces = [text[b:e].split() for b, e, _ in split_text(text, words, max_tokens=10, overlap=3)]
    assert [(p[0], p[-1]) for p in pieces] == [("w0", "w9"), ("w7", "w16"), ("w14", "w23"), ("w21", "w24")]
    assert [count for *_, count in split_text(text, words, 10, 3)] == [10, 10, 10, 4]


def test_text_without_spaces_is_cut_inside_words(spans: WordPieceSpans) -> None:
    # The tokenizer reads words up to 100 characters (longer ones become one [UNK] token).
    text = "Prefix words. " + "hydroxychloroquinesulfate" * 3 + "/".join(DRUGS) + " tail"
    doc = Document(
        doc_id="long-word",
        source_uri="w.txt",
        sha256="0" * 64,
        title="w",
        parser="text",
        sections=[Section(section_id="s0", heading="Words", level=1, path=[], text=text)],
    )
    chunks = chunk_document(doc, spans, max_tokens=16, overlap=4)
    assert len(chunks) > 3
    assert_invariants(doc, chunks, spans, 16, 4)


def test_characters_the_tokenizer_drops_are_not_lost(spans: WordPieceSpans) -> None:
    text = "".join(f"\x01Start of text {i}. Middle part\x02 here {i}. " for i in range(8)) + "End\x03"
    doc = Document(
        doc_id="control",
        source_uri="c.txt",
        sha256="0" * 64,
        title="c",
        parser="text",
        sections=[Section(section_id="s0", heading="", level=0, path=[], text=text)],
    )
    chunks = chunk_document(doc, spans, max_tokens=20, overlap=0)
    assert_invariants(doc, chunks, spans, 20, 0)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(16, 0), (16, 15), (24, 5), (64, 16)])
def test_invariants_hold_on_random_text(spans: WordPieceSpans, max_tokens: int, overlap: int) -> None:
    rng = random.Random(max_tokens * 100 + overlap)
    vocabulary = [
        "lithium",
        "dose",
        "e.g.",
        "(see",
        "table)",
        "serotonin-syndrome",
        "Ärzte",
        "naïve",
        "5mg/kg",
        "—",
        "«quote»",
        "Pseudopseudohypoparathyroidism",
    ]
    separators = [" ", " ", " ", ". ", ", ", "\n", "\n\n", "  \t", "? "]
    sections = []
    for i in range(6):
        # Numbered words: no two chunks of a section can have the same text (they would be deduplicated).
        words = [f"{rng.choice(vocabulary)}{j}{rng.choice(separators)}" for j in range(rng.randint(0, 120))]
        sections.append(
            Section(section_id=f"s{i}", heading=f"Part {i}", level=1, path=["Doc"], text="".join(words))
        )
    doc = Document(
        doc_id="random", source_uri="r.txt", sha256="0" * 64, title="r", parser="text", sections=sections
    )
    chunks = chunk_document(doc, spans, max_tokens, overlap)
    assert_invariants(doc, chunks, spans, max_tokens, overlap)


def test_rejects_overlap_not_below_size(spans: WordPieceSpans) -> None:
    with pytest.raises(ValueError, match="overlap"):
        split_text("some text here", spans, max_tokens=8, overlap=8)
