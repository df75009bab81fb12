"""Each built-in reader on its fixture, and the dispatcher that picks them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.core.errors import InputError
from ragtune.core.records import Document
from ragtune.parse.dispatch import choose_parser
from ragtune.parse.html import read_html
from ragtune.parse.markdown import read_markdown
from ragtune.parse.pdf import read_pdf
from ragtune.parse.sections import Source
from ragtune.parse.text import decode_text, read_text

SOURCE = Source(name="doc", doc_id="doc-1", source_uri="/corpus/doc", sha256="0" * 64)


def outline(doc: Document) -> list[tuple[str, int, list[str]]]:
    return [(s.heading, s.level, s.path) for s in doc.sections]


def by_heading(doc: Document) -> dict[str, str]:
    return {s.heading: s.text for s in doc.sections}


# --- markdown -------------------------------------------------------------------------------------


def test_markdown_headings_levels_and_text(fixtures_dir: Path) -> None:
    doc = read_markdown((fixtures_dir / "panic-guide.md").read_bytes(), SOURCE)
    assert doc.parser == "markdown"
    assert doc.title == "Managing Panic Attacks"  # from the front matter
    assert outline(doc) == [
        ("", 0, []),  # text before the first heading
        ("Overview", 1, []),
        ("Symptoms", 2, ["Overview"]),  # setext "---" heading
        ("Breathing techniques", 2, ["Overview"]),
        ("Box breathing", 3, ["Overview", "Breathing techniques"]),
        ("Treatment", 1, []),  # setext "===" heading
    ]
    assert [s.section_id for s in doc.sections] == ["s0", "s1", "s2", "s3", "s4", "s5"]
    text = by_heading(doc)
    assert "tags" not in text[""] and "---" not in text[""]  # front matter is not content
    # emphasis and links reduce to their words; paragraphs are separated by a blank line
    assert text["Overview"].split("\n\n") == [
        "Panic attacks are sudden surges of intense fear that peak within minutes, even when there is "
        "no real danger. See the NHS page for more.",
        "They are common: many people have at least one in their life.",
    ]
    assert text["Symptoms"] == "- Racing heart\n- Shortness of breath\n  - feeling of choking\n- Trembling"
    assert text["Breathing techniques"] == "inhale for 4\nhold for 7\nexhale for 8"
    assert text["Box breathing"].endswith("1. Sit upright.\n2. Close your eyes.")
    assert "CBT | first-line therapy" in text["Treatment"]


def test_markdown_title_falls_back_to_first_h1() -> None:
    doc = read_markdown(b"Intro line.\n\n## Early\n\ntext\n\n# The Real Title\n\nbody\n", SOURCE)
    assert doc.title == "The Real Title"
    assert outline(doc)[1:] == [("Early", 2, []), ("The Real Title", 1, [])]


# --- html -----------------------------------------------------------------------------------------


def test_html_sections_and_dropped_elements(fixtures_dir: Path) -> None:
    doc = read_html((fixtures_dir / "depression-page.html").read_bytes(), SOURCE)
    assert doc.parser == "html"
    assert doc.title == "Depression: Signs and Support"  # <title> wins over the first h1
    assert outline(doc) == [
        ("Depression", 1, []),
        ("Signs", 2, ["Depression"]),
        ("In teenagers", 3, ["Depression", "Signs"]),
        ("Getting help", 2, ["Depression"]),
    ]
    text = by_heading(doc)
    assert text["Depression"].split("\n\n") == [
        "Depression is a common mental health condition that affects how people feel, think and handle "
        "daily activities.",
        "Loose text in a div, written without a paragraph element.",
    ]
    assert text["Signs"].split("\n\n") == [
        "Persistent sadness or an empty mood",
        "Loss of interest in activities once enjoyed",
    ]
    assert "Samaritans 116 123" in text["Getting help"]
    everything = " ".join(text.values())
    for dropped in ("SCRIPT TEXT", "STYLE-TEXT", "NAV TEXT", "HTML COMMENT"):
        assert dropped not in everything


def test_html_title_falls_back_to_first_h1() -> None:
    doc = read_html(b"<html><body><h2>Side</h2><p>a</p><h1>Main heading</h1><p>b</p></body></html>", SOURCE)
    assert doc.title == "Main heading"


# --- text -----------------------------------------------------------------------------------------


def test_text_title_and_paragraphs(fixtures_dir: Path) -> None:
    doc = read_text((fixtures_dir / "insomnia-notes.txt").read_bytes(), SOURCE)
    assert doc.parser == "text"
    assert doc.title == "Coping with Insomnia"
    assert outline(doc) == [("", 0, [])]
    paragraphs = doc.sections[0].text.split("\n\n")
    assert paragraphs[1] == (
        "Insomnia is difficulty falling asleep or staying asleep, even when there is a chance to sleep."
    )
    assert len(paragraphs) == 3


def test_text_decoding() -> None:
    assert decode_text("\ufeffcafé".encode()) == "café"  # UTF-8 with BOM
    assert decode_text("Café crème".encode("cp1252")) == "Café crème"  # plausible legacy text
    assert decode_text("naïve".encode("utf-16")) == "naïve"  # UTF-16 with its BOM
    with pytest.raises(InputError, match="undecodable text: contains NUL bytes"):
        decode_text(bytes(range(256)))
    with pytest.raises(InputError, match=r"undecodable text: not valid UTF-8 \(byte 0x81"):
        decode_text(b"abc \x81\x8d\x8f\x90\x9d binary-ish")


# --- pdf ------------------------------------------------------------------------------------------


def test_pdf_headings_from_font_sizes(pdf_bytes: dict[str, bytes]) -> None:
    doc = read_pdf(pdf_bytes["font-headings"], SOURCE)
    assert doc.parser == "pdf"
    # the lone 24 pt line on page 1 is the title, not a section; metadata loses to it
    assert doc.title == "Understanding Anxiety Disorders"
    assert outline(doc) == [
        ("", 0, []),
        ("1 Introduction", 1, []),
        ("1.1 Prevalence", 2, ["1 Introduction"]),
        ("2 Treatment", 1, []),
        ("2.1 Psychotherapy", 2, ["2 Treatment"]),
        ("2.2 Medication", 2, ["2 Treatment"]),
    ]
    text = by_heading(doc)
    intro = text["1 Introduction"].split("\n\n")
    assert len(intro) == 2 and intro[0].startswith("Anxiety disorders are the most common mental disorders.")
    assert intro[1] == "A second paragraph of the introduction explains the scope of this handbook."
    assert text["2.2 Medication"].startswith("Selective serotonin reuptake inhibitors")
    # the running header repeated on every page is furniture, not text
    assert all("Anxiety Handbook" not in s.text for s in doc.sections)


def test_pdf_headings_from_outline(pdf_bytes: dict[str, bytes]) -> None:
    doc = read_pdf(pdf_bytes["outline"], SOURCE)
    assert doc.title == "Bipolar Disorder: A Clinician's Primer"  # metadata, as no line stands out
    assert outline(doc) == [
        ("", 0, []),
        ("Background", 1, []),
        ("Mania", 2, ["Background"]),
        ("Management", 1, []),  # on page 2
        ("Summary", 1, []),
    ]
    text = by_heading(doc)
    assert text[""] == "Front matter: this primer is an invented test document."
    assert text["Mania"] == "Mania brings elevated mood, little need for sleep and racing thoughts."
    assert text["Management"].startswith("Mood stabilisers such as lithium reduce relapses.")
    # a run-in heading ("Summary: ...") keeps the rest of its line as text
    assert text["Summary"] == "long-term treatment and early warning signs keep most people well."


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("encrypted", "encrypted PDF: a password is needed"),
        ("scanned", r"no extractable text \(scanned\?\)"),
        ("truncated", "corrupt or truncated PDF"),
    ],
)
def test_pdf_errors(pdf_bytes: dict[str, bytes], fixture: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_pdf(pdf_bytes[fixture], SOURCE)


def test_pdf_reader_checks_the_magic() -> None:
    with pytest.raises(InputError, match=r"not a PDF: content does not start with %PDF- \(looks like html\)"):
        read_pdf(b"<!DOCTYPE html><html><body>hello</body></html>", SOURCE)


# --- dispatch -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "grobid", "parser"),
    [
        ("a/paper.tei.xml", b"<TEI/>", False, "tei"),
        ("paper.xml", b'<?xml version="1.0"?>\n<TEI xmlns="http://www.tei-c.org/ns/1.0">', False, "tei"),
        ("paper.PDF", b"%PDF-1.7\n...", False, "pdf"),
        ("paper.pdf", b"%PDF-1.7\n...", True, "grobid"),
        ("download", b"%PDF-1.4\n...", False, "pdf"),  # no extension: the bytes decide
        ("notes.md", b"# x", False, "markdown"),
        ("page.htm", b"<p>x</p>", False, "html"),
        ("page.aspx", b"<!doctype html><html>", False, "html"),
        ("notes.txt", b"plain", False, "text"),
        ("README", b"plain words", False, "text"),
    ],
)
def test_choose_parser(name: str, data: bytes, grobid: bool, parser: str) -> None:
    assert choose_parser(name, data, use_grobid=grobid) == parser


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("x.pdf", b"<html><body>not a pdf</body></html>", r"not a PDF: .* \(looks like html\)"),
        ("x.pdf", b"", r"empty document \(the file has no bytes\)"),
        ("x.md", b" \n\t\n", r"empty document \(the file has only whitespace\)"),
        ("data.xml", b'<?xml version="1.0"?><catalog/>', "unsupported XML: not a TEI document"),
        ("blob.bin", b"\x00\x01\x02binary", "unsupported file type .bin: binary content"),
    ],
)
def test_choose_parser_refuses(name: str, data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        choose_parser(name, data)
