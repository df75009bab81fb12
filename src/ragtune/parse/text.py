"""Plain text → :class:`~ragtune.core.records.Document`.

Text has no headings, so the document is one untitled section whose paragraphs are the
blank-line-separated blocks of the file. The title is the first non-empty line.

Decoding: UTF-8 (a BOM is allowed; UTF-16 only with its BOM). Bytes that are not valid UTF-8 are
accepted as Windows-1252 only when they are plausibly text (no NUL bytes, almost no control
characters); anything else is an error rather than a document full of mojibake.
"""

from __future__ import annotations

import codecs
import logging
import re

from ragtune.core.errors import InputError
from ragtune.core.records import Document
from ragtune.parse.sections import SectionBuilder, Source, clean

logger = logging.getLogger(__name__)

_BLANK_LINE = re.compile(r"\n\s*\n")
_ALLOWED_CONTROLS = {"\t", "\n", "\r", "\f", "\v"}
_MAX_CONTROL_RATIO = 0.01


def _control_ratio(text: str) -> float:
    if not text:
        return 0.0
    controls = sum(
        1 for ch in text if (ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0) and ch not in _ALLOWED_CONTROLS
    )
    return controls / len(text)


def decode_text(data: bytes) -> str:
    """Decode bytes that should be text, or raise :class:`InputError` saying why they are not."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError("undecodable text: UTF-16 byte-order mark but invalid UTF-16") from None
    if b"\x00" in data:
        raise InputError("undecodable text: contains NUL bytes (binary file?)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        problem = f"undecodable text: not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})"
        fallback = data.decode("cp1252", errors="replace")
        if "\ufffd" in fallback or _control_ratio(fallback) > _MAX_CONTROL_RATIO:
            raise InputError(problem) from None
        logger.debug("not UTF-8; decoded as Windows-1252")
        return fallback
    if _control_ratio(text) > _MAX_CONTROL_RATIO:
        raise InputError("undecodable text: too many control characters (binary file?)")
    return text


def read_text(data: bytes, source: Source) -> Document:
    text = decode_text(data).replace("\r\n", "\n").replace("\r", "\n")
    builder = SectionBuilder()
    for block in _BLANK_LINE.split(text):
        builder.paragraph(block)
    title = next((clean(line) for line in text.splitlines() if line.strip()), "")
    return builder.document(source, "text", title[:200])
