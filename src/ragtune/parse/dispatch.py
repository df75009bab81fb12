"""Choose the reader for one file from its name and its first bytes, and run it.

The name decides when it is specific (``.tei.xml``, ``.pdf``, ``.md``, ``.html``, ``.txt``), but a
``.pdf`` must really start with ``%PDF-``; otherwise the content decides. PDFs go to GROBID when a
client is given (``parse.grobid_url`` set), else to the built-in pypdf reader. :func:`read_bytes`
is what a parse worker process runs for one file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

from ragtune.core.errors import InputError
from ragtune.core.records import Document, ParserName
from ragtune.parse.html import read_html
from ragtune.parse.markdown import read_markdown
from ragtune.parse.pdf import read_pdf
from ragtune.parse.sections import Source
from ragtune.parse.sniff import sniff
from ragtune.parse.tei import read_tei
from ragtune.parse.text import read_text

Reader = Callable[[bytes, Source], Document]

READERS: dict[ParserName, Reader] = {
    "tei": read_tei,
    "pdf": read_pdf,
    "markdown": read_markdown,
    "html": read_html,
    "text": read_text,
}
_BY_SUFFIX: dict[str, ParserName] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".txt": "text",
    ".text": "text",
}


def choose_parser(name: str, data: bytes, use_grobid: bool = False) -> ParserName:
    """The reader for ``data``, or :class:`InputError` when none fits."""
    lower = PurePosixPath(name).name.lower()
    suffix = PurePosixPath(lower).suffix
    kind = sniff(data)
    pdf: ParserName = "grobid" if use_grobid else "pdf"
    if kind == "empty":
        raise InputError(f"empty document (the file has {'no bytes' if not data else 'only whitespace'})")
    if lower.endswith(".tei.xml"):
        return "tei"
    if suffix == ".pdf":
        if kind != "pdf":
            raise InputError(f"not a PDF: content does not start with %PDF- (looks like {kind})")
        return pdf
    if kind == "pdf":
        return pdf
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    if kind == "tei":
        return "tei"
    if kind == "html":
        return "html"
    if kind == "xml":
        raise InputError("unsupported XML: not a TEI document")
    if kind == "binary":
        raise InputError(f"unsupported file type {suffix or '(no extension)'}: binary content")
    return "text"


def read_bytes(parser: ParserName, data: bytes, source: Source) -> Document:
    """Run the chosen reader (in a parse worker process); for ``"grobid"``, ``data`` is the TEI
    that the server answered for the PDF (:meth:`GrobidClient.process_fulltext`)."""
    if parser == "grobid":
        try:
            return read_tei(data, source, parser="grobid")
        except InputError as err:
            raise InputError(f"GROBID answer unusable: {err}") from None
    return READERS[parser](data, source)
