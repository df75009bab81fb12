"""Finding the JSON object in what a language model wrote.

Models wrap JSON in code fences, put chatter around it, leave trailing commas, or stop halfway. The
scanner here finds where the first top-level ``{...}`` object ends (respecting strings and escapes);
:func:`parse_json_object` uses it to extract the object, and the local backend uses it to stop
generating as soon as the object is complete.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _states(text: str) -> Iterator[tuple[int, int, bool]]:
    """After each character: its position, the brace depth, and whether a string is open.

    The one JSON lexer of this module: braces inside double-quoted strings do not count, and a
    backslash escapes the next character inside a string.
    """
    depth = 0
    in_string = False
    escaped = False
    for pos, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        yield pos, depth, in_string


def opens_string_value(prefill: str) -> bool:
    """Whether a prefill such as ``{"question": "`` leaves the model inside a JSON string value."""
    _, depth, in_string = next(reversed(list(_states(prefill))), (0, 0, False))
    return in_string and depth > 0


def close_string_value(prefill: str, continuation: str) -> str | None:
    """The continuation cut where the open string value closes, plus the braces that close the object.

    This is the local backend's constrained decoding for weak models: the model chooses the value's
    text, the structure around it is ours. ``None`` while the string is still open.
    """
    offset = len(prefill)
    for pos, depth, in_string in _states(prefill + continuation):
        if pos >= offset and not in_string:
            return continuation[: pos - offset + 1] + "}" * max(depth, 0)
    return None


def force_close_string_value(prefill: str, continuation: str) -> str:
    """:func:`close_string_value`, or — for a value cut off (token cap, a loop) — the value closed here.

    A dangling escape backslash is dropped, so the result always parses; the cut-off text is left
    for the caller to judge (the synthesis stage trims an unfinished last sentence).
    """
    closed = close_string_value(prefill, continuation)
    if closed is not None:
        return closed
    trailing = len(continuation) - len(continuation.rstrip("\\"))
    text = continuation[: len(continuation) - 1] if trailing % 2 else continuation
    _, depth, _ = next(reversed(list(_states(prefill + text))), (0, 0, False))
    return text + '"' + "}" * max(depth, 0)


def json_object_end(text: str, start: int = 0) -> int | None:
    """Index just past the ``}`` closing the object that opens at ``text[start]`` (which must be ``{``).

    Braces inside double-quoted strings do not count. ``None`` while the object is still open.
    """
    for pos, depth, _ in _states(text[start:]):
        if depth == 0:
            return start + pos + 1
    return None


def has_complete_object(text: str) -> bool:
    """Whether ``text`` contains an opening ``{`` whose object has been closed."""
    start = text.find("{")
    return start >= 0 and json_object_end(text, start) is not None


def _loads_lenient(span: str) -> Any:
    """Strict JSON, then without trailing commas, then as a Python literal (single quotes)."""
    for candidate in (span, _TRAILING_COMMA.sub(r"\1", span)):
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    try:
        return ast.literal_eval(span)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first complete JSON object in ``text`` as a dict, or ``None`` if there is none.

    Tolerates code fences and prose around the object, trailing commas and single-quoted keys.
    Braces in prose before the object (``{a, b}``) are skipped. A truncated object yields ``None``
    rather than one of its nested objects.
    """
    if not isinstance(text, str):
        return None
    pos = text.find("{")
    while pos >= 0:
        end = json_object_end(text, pos)
        if end is None:  # the object opened here never closes: everything after it is inside it
            return None
        value = _loads_lenient(text[pos:end])
        if isinstance(value, dict):
            return value
        pos = text.find("{", end)
    return None
