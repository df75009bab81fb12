"""What a file's bytes look like, independent of its name."""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["empty", "pdf", "tei", "xml", "html", "text", "binary"]

PDF_MAGIC = b"%PDF-"
_HTML = re.compile(rb"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_TEI = re.compile(rb"<TEI[\s>]|<tei:TEI[\s>]")


def has_pdf_magic(data: bytes) -> bool:
    """PDF readers accept the ``%PDF-`` header anywhere in the first kilobyte."""
    return PDF_MAGIC in data[:1024]


def sniff(data: bytes) -> Kind:
    if not data.strip():
        return "empty"
    if has_pdf_magic(data):
        return "pdf"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if _TEI.search(head):
        return "tei"
    if _HTML.search(head):
        return "html"
    if head.startswith(b"<?xml"):
        return "xml"
    sample = data[:4096]
    if b"\x00" in sample and not sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "binary"
    return "text"
