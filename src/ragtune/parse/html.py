"""HTML → :class:`~ragtune.core.records.Document` with BeautifulSoup over lxml.

``<h1>``–``<h6>`` open sections at their level. Block elements (p, li, pre, table rows, divs...)
end a paragraph, inline elements do not, so text written straight into a ``<div>`` is kept too.
``script``, ``style``, ``nav``, ``noscript``, ``template`` and ``head`` content are dropped. The
title is ``<title>``, else the first ``<h1>``. The encoding comes from the bytes (BOM, ``<meta
charset>``), as a browser would decide it.
"""

from __future__ import annotations

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

from ragtune.core.records import Document
from ragtune.parse.sections import SectionBuilder, Source, clean

_DROP = {"script", "style", "nav", "noscript", "template", "head", "svg", "iframe", "button", "select"}
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "ol",
    "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "tr", "ul",
}  # fmt: skip
_CELLS = {"td", "th"}
_NOT_TEXT = (Comment, Declaration, Doctype, ProcessingInstruction)


class _Walker:
    def __init__(self) -> None:
        self.builder = SectionBuilder()
        self.buffer: list[str] = []
        self.first_h1: str | None = None

    def flush(self, keep_lines: bool = False) -> None:
        if self.buffer:
            self.builder.paragraph("".join(self.buffer), keep_lines=keep_lines)
            self.buffer = []

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, _NOT_TEXT):
                    self.buffer.append(str(child))
                continue
            if not isinstance(child, Tag) or child.name in _DROP:
                continue
            name = child.name
            if name in _HEADINGS:
                self.flush()
                text = clean(child.get_text(" "))
                if _HEADINGS[name] == 1 and self.first_h1 is None and text:
                    self.first_h1 = text
                self.builder.heading(text, _HEADINGS[name])
            elif name == "br":
                self.buffer.append("\n")
            elif name == "pre":
                self.flush()
                self.buffer.append(child.get_text())
                self.flush(keep_lines=True)
            elif name in _CELLS:
                self.buffer.append(" ")
                self.walk(child)
                self.buffer.append(" ")
            elif name in _BLOCKS:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.walk(child)


def read_html(data: bytes, source: Source) -> Document:
    soup = BeautifulSoup(data, "lxml")
    title_tag = soup.find("title")
    title = clean(title_tag.get_text(" ")) if isinstance(title_tag, Tag) else ""
    walker = _Walker()
    walker.walk(soup)
    walker.flush()
    return walker.builder.document(source, "html", title or walker.first_h1)
