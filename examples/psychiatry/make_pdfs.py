"""Regenerate the PDF chapters of the sample psychiatry corpus from their Markdown sources.

Each ``examples/psychiatry/sources/*.md`` file becomes ``examples/psychiatry/corpus/pdf/<same stem>.pdf``.
The sources are kept outside ``corpus/`` so that every topic appears in the corpus exactly once.

The PDFs are laid out the way a PDF reader expects a real document to look: the title in a large
bold font, second- and third-level headings in progressively smaller bold fonts, body text in
11 pt regular Helvetica, and a PDF outline (bookmarks) mirroring the heading tree. The creation
date is fixed, so rerunning the script produces byte-identical files.

Only a small Markdown subset is understood, which is all the sources use: ``#``/``##``/``###``
headings, ``>`` block quotes (rendered in italics), ``- `` bullet lists and plain paragraphs.
Inline emphasis markers and backticks are dropped. The PDF core fonts are Latin-1 only, so
typographic punctuation is mapped to ASCII and anything else unencodable becomes ``?``.

Usage::

    python examples/psychiatry/make_pdfs.py            # rewrite corpus/pdf/*.pdf
    python examples/psychiatry/make_pdfs.py --check    # exit 1 if any PDF is missing or stale
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from fpdf import FPDF
from fpdf.enums import XPos, YPos

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCES = HERE / "sources"
DEFAULT_OUT = HERE / "corpus" / "pdf"

#: Fixed metadata date, so that reruns give identical bytes.
CREATION_DATE = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)

FONT = "Helvetica"
BODY_SIZE = 11.0
BODY_LINE = 5.6  # mm per body line
#: Heading level -> (font size in pt, line height in mm, space before in mm).
HEADING_STYLE: dict[int, tuple[float, float, float]] = {
    1: (20.0, 9.0, 0.0),
    2: (15.0, 7.5, 5.0),
    3: (12.5, 6.5, 3.0),
}
BULLET_INDENT = 4.0  # mm from the left margin to the dash
BULLET_GAP = 5.0  # mm reserved for the dash itself

_ASCII_MAP = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u00a0": " ",
        "\u2022": "-",
    }
)
_INLINE_MARKUP = re.compile(r"(\*\*|__|\*|`)")


BlockKind = Literal["heading", "quote", "bullet", "paragraph"]


@dataclass(frozen=True)
class Block:
    """One rendered unit of a Markdown source.

    Attributes:
        kind: What the block is.
        text: Its text, already joined onto one line and sanitised.
        level: Heading level (1-3) for headings, 0 otherwise.
    """

    kind: BlockKind
    text: str
    level: int = 0


def sanitize(text: str) -> str:
    """Make text safe for the Latin-1 core fonts and drop inline Markdown markers.

    Args:
        text: Raw Markdown text.

    Returns:
        The text with typographic punctuation mapped to ASCII, inline emphasis removed and any
        remaining non-Latin-1 character replaced by ``?``.
    """
    text = _INLINE_MARKUP.sub("", text.translate(_ASCII_MAP))
    return text.encode("latin-1", "replace").decode("latin-1")


def parse_markdown(source: str) -> list[Block]:
    """Split the supported Markdown subset into blocks.

    Args:
        source: The Markdown document.

    Returns:
        The blocks in document order.
    """
    blocks: list[Block] = []
    buffer: list[str] = []
    buffer_kind: BlockKind | None = None

    def flush() -> None:
        nonlocal buffer, buffer_kind
        if buffer and buffer_kind is not None:
            blocks.append(Block(buffer_kind, sanitize(" ".join(buffer))))
        buffer, buffer_kind = [], None

    for raw in source.splitlines():
        line = raw.strip()
        heading = re.match(r"^(#{1,3})\s+(.*)$", line)
        if not line:
            flush()
        elif heading:
            flush()
            blocks.append(Block("heading", sanitize(heading.group(2).strip()), len(heading.group(1))))
        elif line.startswith(">"):
            if buffer_kind != "quote":
                flush()
                buffer_kind = "quote"
            buffer.append(line.lstrip(">").strip())
        elif re.match(r"^[-*+]\s+", line):
            flush()
            buffer_kind = "bullet"
            buffer.append(re.sub(r"^[-*+]\s+", "", line))
        else:
            if buffer_kind is None:
                buffer_kind = "paragraph"
            buffer.append(line)  # continuation of a paragraph, quote or bullet item
    flush()
    return blocks


def render_pdf(blocks: list[Block], out_path: Path) -> None:
    """Lay the blocks out as an A4 PDF with bookmarks and write it.

    Args:
        blocks: Parsed Markdown blocks; the first level-1 heading becomes the PDF title.
        out_path: Where to write the PDF.
    """
    title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), out_path.stem)

    pdf = FPDF(format="A4", unit="mm")
    pdf.set_margins(left=20, top=20, right=20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_creation_date(CREATION_DATE)
    pdf.set_title(title)
    pdf.set_author("ragtune example corpus")
    pdf.set_subject("Illustrative sample text for software testing; not clinical guidance; not from DSM-5")
    pdf.set_creator("examples/psychiatry/make_pdfs.py")
    pdf.set_producer("fpdf2")
    pdf.set_lang("en")
    pdf.add_page()

    outline_level = -1
    for block in blocks:
        if block.kind == "heading":
            size, line_h, space_before = HEADING_STYLE[block.level]
            # Keep a heading together with at least a few lines of what follows it.
            if pdf.get_y() + line_h + 3 * BODY_LINE > pdf.page_break_trigger:
                pdf.add_page()
            elif pdf.get_y() > pdf.t_margin:
                pdf.ln(space_before)
            # Outline levels start at 0 and may not skip a level.
            outline_level = min(block.level - 1, outline_level + 1)
            pdf.start_section(block.text, level=outline_level)
            pdf.set_font(FONT, style="B", size=size)
            pdf.multi_cell(0, line_h, block.text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1.5)
        elif block.kind == "bullet":
            pdf.set_font(FONT, style="", size=BODY_SIZE)
            pdf.set_x(pdf.l_margin + BULLET_INDENT)
            pdf.cell(BULLET_GAP, BODY_LINE, "-")
            pdf.multi_cell(
                pdf.epw - BULLET_INDENT - BULLET_GAP,
                BODY_LINE,
                block.text,
                align="L",
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            pdf.ln(1)
        else:
            pdf.set_font(FONT, style="I" if block.kind == "quote" else "", size=BODY_SIZE)
            pdf.multi_cell(0, BODY_LINE, block.text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(2.5)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(bytes(pdf.output()))


def build(sources_dir: Path, out_dir: Path, check: bool = False) -> list[Path]:
    """Render every Markdown source to a PDF, or check that the PDFs are up to date.

    Args:
        sources_dir: Directory holding the ``*.md`` sources.
        out_dir: Directory receiving ``<stem>.pdf`` files.
        check: When true, write nothing and return the PDFs that are missing or differ.

    Returns:
        The PDFs written, or with ``check`` the stale ones.
    """
    touched: list[Path] = []
    for source in sorted(sources_dir.glob("*.md")):
        target = out_dir / f"{source.stem}.pdf"
        if check:
            scratch = out_dir / f".{source.stem}.check.pdf"
            render_pdf(parse_markdown(source.read_text(encoding="utf-8")), scratch)
            fresh = scratch.read_bytes()
            scratch.unlink()
            if not target.exists() or target.read_bytes() != fresh:
                touched.append(target)
        else:
            render_pdf(parse_markdown(source.read_text(encoding="utf-8")), target)
            touched.append(target)
    return touched


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The process exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES, help="Markdown source directory")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PDF output directory")
    parser.add_argument("--check", action="store_true", help="only report missing or stale PDFs")
    args = parser.parse_args(argv)

    paths = build(args.sources, args.out, check=args.check)
    if args.check:
        for path in paths:
            print(f"stale: {path}")
        return 1 if paths else 0
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
