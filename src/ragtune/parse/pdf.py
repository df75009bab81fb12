"""PDF → :class:`~ragtune.core.records.Document` with pypdf (the reader used without GROBID).

Text comes from pypdf's ``extract_text`` through ``visitor_text``, which also gives each text run
its font size and position; runs are gathered into lines, lines into paragraphs (a vertical gap
clearly wider than the usual line spacing starts a new paragraph; hyphenated line ends are
joined). Lines repeated on most pages (running headers, footers, page numbers) are dropped.

Headings:

* from the PDF outline (bookmarks) when it has one: nesting depth is the level, and each entry is
  matched to its heading line on the page it points to (a run-in heading such as
  ``"Methods: text"`` keeps its text); an entry whose heading is not found starts at that page;
* otherwise from font sizes: lines set clearly larger than the body's dominant size
  (:data:`HEADING_RATIO`) are headings, larger sizes being higher levels. A lone largest line
  block at the top of the first page is the document's title rather than a section.

Errors say what is wrong: not a PDF (no ``%PDF-`` header), corrupt or truncated, encrypted with a
password, or no text layer at all ("no extractable text (scanned?)").
"""

from __future__ import annotations

import io
import logging
import math
import re
import statistics
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.generic import Destination

from ragtune.core.errors import InputError
from ragtune.core.records import Document
from ragtune.parse.sections import SectionBuilder, Source, clean
from ragtune.parse.sniff import has_pdf_magic, sniff

logger = logging.getLogger(__name__)

HEADING_RATIO = 1.15  # a heading's font is at least this much larger than the body's
PARAGRAPH_GAP = 1.2  # a line gap this many times the usual spacing starts a new paragraph
MAX_HEADING_LINES = 6
MAX_HEADING_CHARS = 200
_JUNK_TITLE = re.compile(
    r"^(untitled|microsoft word\b|document\d*$|slide \d+$)|\.(docx?|pdf|tex|dvi|odt|rtf)$", re.I
)


@dataclass(frozen=True)
class Line:
    page: int
    text: str
    size: float  # the font size (points, after text and graphics scaling) of most of its characters
    y: float  # vertical position on the page, in user space (larger is higher)


@dataclass(frozen=True)
class _Mark:
    """Lines ``start:end`` are a heading (``heading`` None: drop them); ``rest`` is a run-in remainder."""

    start: int
    end: int
    heading: str | None
    level: int = 1
    rest: str = ""


class _LineCollector:
    """``visitor_text`` callback gathering text runs into lines."""

    def __init__(self, page: int) -> None:
        self.page = page
        self.lines: list[Line] = []
        self._pieces: list[str] = []
        self._sizes: Counter[float] = Counter()
        self._y: float | None = None

    def __call__(
        self, text: Any, cm: Sequence[float], tm: Sequence[float], font: Any, font_size: Any
    ) -> None:
        if not text:
            return
        c = tm[2] * cm[0] + tm[3] * cm[2]
        d = tm[2] * cm[1] + tm[3] * cm[3]
        size = round(float(font_size or 0) * (math.hypot(c, d) or 1.0), 1)
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        for index, part in enumerate(str(text).split("\n")):
            if index:
                self.end_line()
            if part:
                if self._y is None and part.strip():
                    self._y = float(y)
                self._pieces.append(part)
                self._sizes[size] += len(part.strip())

    def end_line(self) -> None:
        text = clean("".join(self._pieces))
        if text:
            size = self._sizes.most_common(1)[0][0] if self._sizes else 0.0
            self.lines.append(Line(self.page, text, size, self._y or 0.0))
        self._pieces, self._sizes, self._y = [], Counter(), None


def open_pdf(data: bytes) -> PdfReader:
    """A readable :class:`PdfReader`, or :class:`InputError` saying why there is none."""
    if not has_pdf_magic(data):
        raise InputError(f"not a PDF: content does not start with %PDF- (looks like {sniff(data)})")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except Exception as err:
                raise InputError(f"encrypted PDF: cannot decrypt ({err})") from None
            if unlocked == PasswordType.NOT_DECRYPTED:
                raise InputError("encrypted PDF: a password is needed to open it")
        if len(reader.pages) == 0:
            raise InputError("corrupt PDF: no pages")
    except InputError:
        raise
    except Exception as err:  # pypdf raises many types on damaged files
        raise InputError(f"corrupt or truncated PDF ({type(err).__name__}: {err})") from None
    return reader


def extract_lines(reader: PdfReader) -> list[Line]:
    """Every text line in reading order; a page that cannot be read is skipped with a warning."""
    lines: list[Line] = []
    failures: list[str] = []
    for number, page in enumerate(reader.pages):
        collector = _LineCollector(number)
        try:
            _extract(page, collector)
        except Exception as err:
            failures.append(f"page {number + 1}: {type(err).__name__}: {err}")
            continue
        collector.end_line()
        lines.extend(collector.lines)
    if failures and len(failures) == len(reader.pages):
        raise InputError(f"corrupt PDF: no page could be read ({failures[0]})")
    for failure in failures:
        logger.warning("skipped unreadable PDF %s", failure)
    return lines


def _extract(page: PageObject, collector: _LineCollector) -> None:
    page.extract_text(visitor_text=collector)


def drop_running_lines(lines: list[Line], pages: int) -> list[Line]:
    """Remove lines that recur (digits aside) on most pages: headers, footers, page numbers."""
    if pages < 3:
        return lines

    def key(text: str) -> str:
        return re.sub(r"\d+", "#", text.casefold())

    seen: defaultdict[str, set[int]] = defaultdict(set)
    for line in lines:
        seen[key(line.text)].add(line.page)
    limit = max(3, math.ceil(0.6 * pages))
    return [line for line in lines if len(seen[key(line.text)]) < limit]


def body_size(lines: list[Line]) -> float:
    """The font size carrying the most characters."""
    weights: Counter[float] = Counter()
    for line in lines:
        weights[line.size] += len(line.text)
    return weights.most_common(1)[0][0]


def line_spacing(lines: list[Line], body: float) -> float:
    gaps = [
        prev.y - line.y
        for prev, line in pairwise(lines)
        if prev.page == line.page and same_size(line.size, body) and 0 < prev.y - line.y < 3 * body
    ]
    return statistics.median(gaps) if gaps else body * 1.2


def paragraphs(lines: list[Line], spacing: float, body: float) -> list[str]:
    """Join lines into paragraphs; ``spacing`` is the usual line gap of ``body``-size text."""
    found: list[str] = []
    current = ""
    previous: Line | None = None
    for line in lines:
        if (
            current
            and previous
            and (
                not same_size(previous.size, line.size)  # a footnote after body text, body after a caption...
                or (
                    previous.page == line.page
                    and previous.y - line.y > spacing * PARAGRAPH_GAP * line.size / body
                )
            )
        ):
            found.append(current)
            current = ""
        if not current:
            current = line.text
        elif current.endswith("-") and current[-2:-1].isalpha() and line.text[:1].islower():
            current = current[:-1] + line.text  # de-hyphenate "effec-" + "tive"
        else:
            current = f"{current} {line.text}"
        previous = line
    if current:
        found.append(current)
    return found


def same_size(a: float, b: float) -> bool:
    """Font sizes equal up to rounding noise (a few percent)."""
    return abs(a - b) <= max(0.25, 0.04 * max(a, b))


def _size_rank(size: float, sizes: list[float]) -> int:
    """Heading level of ``size``: 1 + how many clearly different larger sizes exist (at most 6)."""
    larger: list[float] = []
    for other in sorted(set(sizes), reverse=True):
        if other > size and not same_size(other, size) and not any(same_size(other, seen) for seen in larger):
            larger.append(other)
    return min(len(larger) + 1, 6)


def _is_heading_line(line: Line, threshold: float) -> bool:
    return (
        line.size >= threshold
        and len(line.text) <= MAX_HEADING_CHARS
        and any(ch.isalpha() for ch in line.text)
    )


def font_heading_blocks(lines: list[Line], body: float) -> list[_Mark]:
    """Runs of consecutive large-font lines (a wrapped heading is one block), level still unset."""
    threshold = body * HEADING_RATIO
    blocks: list[_Mark] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not _is_heading_line(line, threshold):
            index += 1
            continue
        end = index + 1
        while (
            end < len(lines)
            and end - index < MAX_HEADING_LINES
            and lines[end].page == line.page
            and same_size(lines[end].size, line.size)
            and _is_heading_line(lines[end], threshold)
            and 0 < lines[end - 1].y - lines[end].y <= 2.5 * line.size
        ):
            end += 1
        blocks.append(_Mark(index, end, " ".join(item.text for item in lines[index:end])))
        index = end
    return blocks


def _title_block(lines: list[Line], blocks: list[_Mark]) -> _Mark | None:
    """The first heading block if it is on the first page and alone in the largest heading size."""
    if not blocks or lines[blocks[0].start].page != 0:
        return None
    top = max(lines[b.start].size for b in blocks)
    same = [b for b in blocks if same_size(lines[b.start].size, top)]
    return blocks[0] if same == [blocks[0]] else None


def _font_marks(lines: list[Line], body: float) -> tuple[list[_Mark], str | None]:
    blocks = font_heading_blocks(lines, body)
    title_block = _title_block(lines, blocks)
    if title_block is not None:
        blocks = blocks[1:]
    marks = [
        replace(b, level=_size_rank(lines[b.start].size, [lines[b.start].size for b in blocks]))
        for b in blocks
    ]
    if title_block is None:
        return marks, None
    return [replace(title_block, heading=None), *marks], title_block.heading


@dataclass(frozen=True)
class OutlineEntry:
    title: str
    level: int
    page: int | None


def outline_entries(reader: PdfReader) -> list[OutlineEntry]:
    """The outline flattened in order, with nesting depth as level (empty when absent or broken)."""
    found: list[OutlineEntry] = []

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
            elif isinstance(item, Destination):
                title = clean(str(item.title or ""))
                if title:
                    page = reader.get_destination_page_number(item)
                    found.append(OutlineEntry(title, level, page if page is not None and page >= 0 else None))

    try:
        walk(list(reader.outline), 1)
    except Exception as err:
        logger.warning("ignoring unreadable PDF outline (%s: %s)", type(err).__name__, err)
        return []
    return found


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.casefold()).split())


def _match_heading(lines: list[Line], index: int, title: str) -> tuple[int, str] | None:
    """If ``title`` is written at line ``index``: (lines it spans, run-in text after it)."""
    wanted = _norm(title)
    text = ""
    for end in range(index, min(index + MAX_HEADING_LINES, len(lines))):
        text = f"{text} {lines[end].text}".strip()
        have = _norm(text)
        if have == wanted:
            return end + 1, ""
        if end == index:
            run_in = re.match(
                r"\s*" + r"\W*".join(map(re.escape, title.split())) + r"\s*[:.]\s*(\S.*)", text, re.I
            )
            if run_in:
                return end + 1, run_in.group(1)
        if not have or not wanted.startswith(have + " "):
            return None
    return None


def _outline_marks(lines: list[Line], entries: list[OutlineEntry]) -> list[_Mark]:
    pages = [line.page for line in lines]
    marks: list[_Mark] = []
    cursor = 0
    for entry in entries:
        start, stop = cursor, len(lines)
        if entry.page is not None:  # search the page it points to (or the cursor's, never backwards)
            start = max(cursor, bisect_left(pages, entry.page))
            if start < len(lines):
                stop = bisect_left(pages, max(entry.page, lines[start].page) + 1)
        for index in range(start, stop):
            match = _match_heading(lines, index, entry.title)
            if match:
                marks.append(_Mark(index, match[0], entry.title, entry.level, match[1]))
                cursor = match[0]
                break
        else:  # heading not in the text layer (or an image): the section starts where its page does
            marks.append(_Mark(start, start, entry.title, entry.level))
            cursor = start
    return marks


def _assemble(lines: list[Line], marks: list[_Mark], spacing: float, body: float) -> SectionBuilder:
    builder = SectionBuilder()
    position = 0
    carried: list[Line] = []
    for mark in marks:
        for paragraph in paragraphs(carried + lines[position : mark.start], spacing, body):
            builder.paragraph(paragraph)
        if mark.heading is not None:
            builder.heading(mark.heading, mark.level)
        carried = [replace(lines[mark.end - 1], text=mark.rest)] if mark.rest else []
        position = max(position, mark.end)
    for paragraph in paragraphs(carried + lines[position:], spacing, body):
        builder.paragraph(paragraph)
    return builder


def _metadata_title(reader: PdfReader) -> str | None:
    try:
        title = clean(str(reader.metadata.title or "")) if reader.metadata else ""
    except Exception:
        return None
    return title if len(title) >= 3 and not _JUNK_TITLE.search(title) else None


def read_pdf(data: bytes, source: Source) -> Document:
    reader = open_pdf(data)
    lines = extract_lines(reader)
    if not lines:
        raise InputError(f"no extractable text (scanned?): {len(reader.pages)} page(s) without a text layer")
    lines = drop_running_lines(lines, len(reader.pages)) or lines
    body = body_size(lines)
    spacing = line_spacing(lines, body)
    entries = outline_entries(reader)
    if entries:
        marks = _outline_marks(lines, entries)
        title_block = _title_block(lines, font_heading_blocks(lines, body))
        title = title_block.heading if title_block else None
    else:
        marks, title = _font_marks(lines, body)
    builder = _assemble(lines, marks, spacing, body)
    return builder.document(source, "pdf", title or _metadata_title(reader))
