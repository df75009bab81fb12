"""Markdown → :class:`~ragtune.core.records.Document` through markdown-it-py's token stream.

ATX (``## x``) and setext (underlined) headings open sections at their level. Paragraphs are
plain text (emphasis and links reduced to their words, images to their alt text); each list
becomes one paragraph with an item per line (``- item`` or ``1. item``, nested items indented);
code blocks and tables keep their lines. Raw HTML blocks are skipped. The title is a YAML
front-matter ``title`` if present, else the first H1.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from ragtune.core.records import Document
from ragtune.parse.sections import SectionBuilder, Source, clean
from ragtune.parse.text import decode_text

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)


def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """YAML front matter (when the file starts with a ``---`` block) and the remaining text."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}, text  # a leading thematic break, not front matter
    if not isinstance(data, dict):
        return {}, text
    return data, text[match.end() :]


def _inline_text(token: Token) -> str:
    """Plain text of an inline token: words of links and emphasis, alt text of images."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in {"text", "code_inline"}:
            parts.append(child.content)
        elif child.type in {"softbreak", "hardbreak"}:
            parts.append("\n")
        elif child.type == "image":
            parts.append(_inline_text(child))
    return "".join(parts)


class _Walker:
    def __init__(self) -> None:
        self.builder = SectionBuilder()
        self.first_h1: str | None = None
        self.list_lines: list[str] = []  # the list being collected (possibly nested)
        self.list_depth = 0
        self.item_markers: list[str] = []
        self.item_started = False
        self.table_rows: list[list[str]] = []
        self.in_table = False
        self.heading_level = 0

    def inline(self, text: str) -> None:
        if self.heading_level:
            if self.heading_level == 1 and self.first_h1 is None:
                self.first_h1 = clean(text)
            self.builder.heading(text, self.heading_level)
        elif self.in_table:
            if self.table_rows:
                self.table_rows[-1].append(clean(text))
        elif self.list_depth:
            indent = "  " * (self.list_depth - 1)
            if self.item_started:
                self.list_lines.append(f"{indent}{self.item_markers[-1]} {clean(text)}")
                self.item_started = False
            else:  # a second paragraph inside the same item
                self.list_lines.append(f"{indent}  {clean(text)}")
        else:
            self.builder.paragraph(text)

    def token(self, token: Token) -> None:
        kind = token.type
        if kind == "heading_open":
            self.heading_level = int(token.tag[1])
        elif kind == "heading_close":
            self.heading_level = 0
        elif kind == "inline":
            self.inline(_inline_text(token))
        elif kind in {"bullet_list_open", "ordered_list_open"}:
            self.list_depth += 1
        elif kind in {"bullet_list_close", "ordered_list_close"}:
            self.list_depth -= 1
            if self.list_depth == 0:
                self.builder.paragraph("\n".join(self.list_lines), keep_lines=True)
                self.list_lines = []
        elif kind == "list_item_open":
            self.item_markers.append(f"{token.info}{token.markup}" if token.info else "-")
            self.item_started = True
        elif kind == "list_item_close":
            self.item_markers.pop()
            self.item_started = False
        elif kind in {"fence", "code_block"}:
            self._block(token.content)
        elif kind == "table_open":
            self.in_table, self.table_rows = True, []
        elif kind == "tr_open":
            self.table_rows.append([])
        elif kind == "table_close":
            self.in_table = False
            self._block("\n".join(" | ".join(row) for row in self.table_rows))

    def _block(self, text: str) -> None:
        if self.list_depth:
            self.list_lines.extend(line for line in text.splitlines() if line.strip())
        else:
            self.builder.paragraph(text, keep_lines=True)


def read_markdown(data: bytes, source: Source) -> Document:
    front, body = split_front_matter(decode_text(data).replace("\r\n", "\n"))
    walker = _Walker()
    for token in _markdown().parse(body):
        walker.token(token)
    title = front.get("title")
    return walker.builder.document(source, "markdown", title if isinstance(title, str) else walker.first_h1)
