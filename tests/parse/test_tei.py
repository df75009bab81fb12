from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.core.errors import InputError
from ragtune.parse.sections import Source
from ragtune.parse.tei import heading_level, read_tei

SOURCE = Source(
    name="sleep-mood.tei.xml", doc_id="sleep-mood-1", source_uri="/x/sleep-mood.tei.xml", sha256="0" * 64
)


@pytest.fixture(scope="module")
def tei_bytes() -> bytes:
    return (Path(__file__).resolve().parents[1] / "fixtures" / "parse" / "sleep-mood.tei.xml").read_bytes()


def test_tei_title_sections_levels_and_paths(tei_bytes: bytes) -> None:
    doc = read_tei(tei_bytes, SOURCE)
    assert doc.parser == "tei"
    assert doc.title == "Sleep Regularity and Mood in Adolescents: A Cohort Study"
    assert (doc.doc_id, doc.source_uri, doc.sha256) == (SOURCE.doc_id, SOURCE.source_uri, SOURCE.sha256)
    got = [(s.section_id, s.heading, s.level, s.path) for s in doc.sections]
    assert got == [
        ("s0", "Abstract", 1, []),
        ("s1", "Introduction", 1, []),
        ("s2", "Methods", 1, []),
        ("s3", "Participants", 2, ["Methods"]),
        ("s4", "Measures", 2, ["Methods"]),
        ("s5", "Actigraphy", 3, ["Methods", "Measures"]),
        ("s6", "Results", 1, []),
        ("s7", "Limitations", 1, []),  # no n: level 1, and the numbered stack is left
    ]


def test_tei_paragraph_text(tei_bytes: bytes) -> None:
    sections = {s.heading: s for s in read_tei(tei_bytes, SOURCE).sections}
    assert "412 students" in sections["Abstract"].text
    intro = sections["Introduction"].text
    # two <p> → two paragraphs; inline <ref> keeps its text; whitespace is normalised
    assert intro.split("\n\n") == [
        "Adolescents shift their sleep later on weekends, a pattern known as social jet lag [1]. "
        "Earlier work measured sleep duration rather than regularity [2,3].",
        "We therefore asked whether the regularity of sleep, independent of its length, predicts later mood.",
    ]
    # a formula is text (without its label), a headless div continues the open section
    assert sections["Measures"].text.endswith("SRI = 200 × P(same state) − 100")
    assert "baseline mood" in sections["Results"].text


def test_tei_skips_figures_footnotes_and_back_matter(tei_bytes: bytes) -> None:
    doc = read_tei(tei_bytes, SOURCE)
    everything = " ".join([doc.title, *(s.heading + " " + s.text for s in doc.sections)])
    for skipped in (
        "FIGURE CAPTION",
        "TABLE CAPTION",
        "TABLE CELL",
        "FOOTNOTE",
        "ACKNOWLEDGEMENT",
        "REFERENCE TITLE",
    ):
        assert skipped not in everything
    assert "Fig. 1" not in [s.heading for s in doc.sections]


def test_tei_toc(tei_bytes: bytes) -> None:
    doc = read_tei(tei_bytes, SOURCE)
    assert [(e.heading, e.level) for e in doc.toc(max_level=1)] == [
        ("Abstract", 1),
        ("Introduction", 1),
        ("Methods", 1),
        ("Results", 1),
        ("Limitations", 1),
    ]
    actigraphy = doc.toc()[5]
    assert (actigraphy.section_id, actigraphy.path) == ("s5", ["Methods", "Measures"])


def test_tei_nested_divs_without_numbers_take_their_depth() -> None:
    tei = b"""<TEI xmlns="http://www.tei-c.org/ns/1.0"><teiHeader><fileDesc><titleStmt>
    <title>Nested</title></titleStmt></fileDesc></teiHeader><text><body>
    <div><head>Outer</head><p>outer text</p><div><head>Inner</head><p>inner text</p></div></div>
    </body></text></TEI>"""
    doc = read_tei(tei, SOURCE)
    assert [(s.heading, s.level, s.path) for s in doc.sections] == [("Outer", 1, []), ("Inner", 2, ["Outer"])]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<TEI><text><body><div>", "not well-formed TEI XML"),
        (b"<html><body><p>hi</p></body></html>", "not a TEI document (root element is <html>)"),
    ],
)
def test_tei_errors_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_tei(data, SOURCE)


@pytest.mark.parametrize(
    ("n", "level"), [("1", 1), ("2.1", 2), ("2.1.", 2), ("A.2.1", 3), (None, 1), ("", 1)]
)
def test_heading_level_from_numbering(n: str | None, level: int) -> None:
    assert heading_level(n, 1) == level
