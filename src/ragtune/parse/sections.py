"""What every reader shares: where a document came from, and how sections are assembled.

Readers turn bytes into a title plus a stream of headings and paragraphs; :class:`SectionBuilder`
turns that stream into :class:`~ragtune.core.records.Section` records (ids ``s0``, ``s1``...,
levels, ancestor paths from a heading stack, paragraphs separated by blank lines), so the
heading logic lives in one place whatever the source format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ragtune.core.records import Document, ParserName, Section

_SPACE = re.compile(r"\s+")


def clean(text: str) -> str:
    """Collapse runs of whitespace (newlines included) into single spaces."""
    return _SPACE.sub(" ", text).strip()


def clean_lines(text: str) -> str:
    """Keep line breaks and indentation (lists, code, tables); collapse other whitespace, drop blank lines."""
    kept = []
    for line in text.expandtabs(4).splitlines():
        words = " ".join(line.split())
        if words:
            kept.append(" " * (len(line) - len(line.lstrip())) + words)
    return "\n".join(kept)


@dataclass(frozen=True)
class Source:
    """Identity of one input file, decided by the stage before any reader runs."""

    name: str  # path relative to the corpus root (names the file in every message)
    doc_id: str
    source_uri: str
    sha256: str

    @property
    def stem_title(self) -> str:
        """Last-resort title: the file name without its extensions."""
        stem = PurePosixPath(self.name).name.split(".")[0]
        return clean(stem.replace("_", " ").replace("-", " ")) or self.name


@dataclass
class _Open:
    heading: str
    level: int
    path: list[str]
    paragraphs: list[str] = field(default_factory=list)


class SectionBuilder:
    """Accumulates headings and paragraphs in reading order.

    ``heading(text, level)`` opens a section whose path is the stack of earlier headings with a
    smaller level; ``paragraph(text)`` adds to the open section (text before any heading goes to
    an untitled level-0 section). Untitled sections without text are dropped; titled ones are kept
    even when empty, since they still belong to the table of contents.
    """

    def __init__(self) -> None:
        self._sections: list[_Open] = []
        self._stack: list[tuple[int, str]] = []

    def heading(self, text: str, level: int) -> None:
        text = clean(text)
        if not text:
            return
        level = max(1, level)
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        path = [heading for _, heading in self._stack]
        self._stack.append((level, text))
        self._sections.append(_Open(text, level, path))

    def paragraph(self, text: str, keep_lines: bool = False) -> None:
        text = clean_lines(text) if keep_lines else clean(text)
        if not text:
            return
        if not self._sections:
            self._sections.append(_Open("", 0, []))
        self._sections[-1].paragraphs.append(text)

    @property
    def first_heading(self) -> str | None:
        return next((s.heading for s in self._sections if s.heading), None)

    def sections(self) -> list[Section]:
        kept = [s for s in self._sections if s.heading or s.paragraphs]
        return [
            Section(
                section_id=f"s{index}",
                heading=s.heading,
                level=s.level,
                path=s.path,
                text="\n\n".join(s.paragraphs),
            )
            for index, s in enumerate(kept)
        ]

    def document(self, source: Source, parser: ParserName, title: str | None) -> Document:
        """The finished document; the title falls back to the first heading, then the file name."""
        return Document(
            doc_id=source.doc_id,
            source_uri=source.source_uri,
            sha256=source.sha256,
            title=clean(title or "") or self.first_heading or source.stem_title,
            parser=parser,
            sections=self.sections(),
        )
