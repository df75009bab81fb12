"""GROBID TEI XML → :class:`~ragtune.core.records.Document`.

What is read:

* title: ``teiHeader/fileDesc/titleStmt/title`` (the ``type="main"`` one when several);
* the abstract (``profileDesc/abstract``) becomes a level-1 section headed "Abstract"; headed
  divs inside a structured abstract are folded into it as ``"Head: text"`` paragraphs;
* each ``<div>`` of ``<text>/<body>`` with a ``<head>`` opens a section. Its level is the depth
  of the head's ``n`` numbering (``n="2.1"`` → 2); without ``n`` it is the div's nesting depth
  (GROBID writes flat divs, so 1). The path is the stack of earlier headings;
* ``<p>``, ``<formula>`` (without its label) and ``<list>/<item>`` are the section's paragraphs;
  inline markup such as ``<ref>`` keeps its text ("[12]").

What is skipped, on purpose: ``<figure>`` and tables (GROBID's captions are often garbled and
detached from the argument; the body text that cites them stays), footnotes (``<note>``), and the
whole ``<back>`` (references, acknowledgements, annexes: boilerplate rather than content).
"""

from __future__ import annotations

import re

from lxml import etree

from ragtune.core.errors import InputError
from ragtune.core.records import Document, ParserName
from ragtune.parse.sections import SectionBuilder, Source, clean

_SKIP = {"figure", "table", "note", "figDesc", "graphic"}
_PARAGRAPHS = {"p", "formula", "list"}


def _strip_namespaces(root: etree._Element) -> None:
    for element in root.iter():
        if isinstance(element.tag, str):
            element.tag = etree.QName(element.tag).localname


def _text(element: etree._Element, skip: frozenset[str] = frozenset()) -> str:
    """All text under ``element`` except subtrees named in ``skip``; whitespace collapsed."""
    parts: list[str] = []

    def visit(node: etree._Element) -> None:
        if node.text:
            parts.append(node.text)
        for child in node:
            if isinstance(child.tag, str) and child.tag not in skip:
                visit(child)
            if child.tail:
                parts.append(child.tail)

    visit(element)
    return clean("".join(parts))


def _paragraph(element: etree._Element) -> str:
    if element.tag == "list":
        items = [_text(item, frozenset({"note"})) for item in element if item.tag == "item"]
        return "\n".join(f"- {item}" for item in items if item)
    if element.tag == "formula":
        return _text(element, frozenset({"label"}))
    return _text(element, frozenset({"note"}))


def heading_level(number: str | None, default: int) -> int:
    """Depth of a section number: ``"2.1"`` → 2, ``"3."`` → 1, ``"A.2.1"`` → 3; ``default`` without one."""
    parts = [p for p in re.split(r"[.\s]+", (number or "").strip()) if p]
    return len(parts) if parts else default


def _title(root: etree._Element) -> str:
    titles = root.findall("./teiHeader/fileDesc/titleStmt/title")
    main = [t for t in titles if t.get("type") == "main"] or titles
    for element in main:
        text = _text(element)
        if text:
            return text
    return ""


def _abstract(root: etree._Element, builder: SectionBuilder) -> None:
    abstract = root.find("./teiHeader/profileDesc/abstract")
    if abstract is None:
        return
    paragraphs: list[str] = []
    pending_head = ""
    for element in abstract.iter("head", "p"):
        text = _text(element, frozenset({"note"}))
        if element.tag == "head":
            pending_head = text
        elif text:
            paragraphs.append(f"{pending_head}: {text}" if pending_head else text)
            pending_head = ""
    if paragraphs:
        builder.heading("Abstract", 1)
        for paragraph in paragraphs:
            builder.paragraph(paragraph, keep_lines=True)


def _body(div: etree._Element, depth: int, builder: SectionBuilder) -> None:
    for child in div:
        tag = child.tag
        if tag in _SKIP or not isinstance(tag, str):
            continue
        if tag == "head":
            builder.heading(_text(child), heading_level(child.get("n"), depth))
        elif tag in _PARAGRAPHS:
            builder.paragraph(_paragraph(child), keep_lines=tag == "list")
        elif tag == "div":
            _body(child, depth + 1, builder)


def read_tei(data: bytes, source: Source, parser: ParserName = "tei") -> Document:
    """Parse TEI bytes; ``parser`` is ``"grobid"`` when the TEI came from a GROBID server."""
    try:
        # a parser per call: lxml parser objects must not be shared between threads
        parser_options = etree.XMLParser(
            resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True
        )
        root = etree.fromstring(data, parser=parser_options)
    except etree.XMLSyntaxError as err:
        raise InputError(f"not well-formed TEI XML ({err})") from None
    _strip_namespaces(root)
    if root.tag != "TEI":
        raise InputError(f"not a TEI document (root element is <{root.tag}>)")
    builder = SectionBuilder()
    _abstract(root, builder)
    body = root.find("./text/body")
    if body is not None:
        _body(body, 0, builder)
    return builder.document(source, parser, _title(root))
