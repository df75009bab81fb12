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
from typing import Any

_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _scan(text: str) -> tuple[int, bool]:
    """Brace depth and whether a string is open at the end of ``text`` (strings and escapes respected)."""
    depth = 0
    in_string = False
    escaped = False
    for char in text:
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
    return depth, in_string


def opens_string_value(prefill: str) -> bool:
    """Whether a prefill such as ``{"question": "`` leaves the model inside a JSON string value."""
    depth, in_string = _scan(prefill)
    return in_string and depth > 0


def close_string_value(prefill: str, continuation: str) -> str | None:
    """The continuation cut where the open string value closes, plus the braces that close the object.

    This is the local backend's constrained decoding for weak models: the model chooses the value's
    text, the structure around it is ours. ``None`` while the string is still open.
    """
    escaped = False
    for pos, char in enumerate(continuation):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            depth, _ = _scan(prefill + continuation[: pos + 1])
            return continuation[: pos + 1] + "}" * max(depth, 0)
    return None


def json_object_end(text: str, start: int = 0) -> int | None:
    """Index just past the ``}`` closing the object that opens at ``text[start]`` (which must be ``{``).

    Braces inside double-quoted strings do not count. ``None`` while the object is still open.
    """
    depth = 0
    in_string = False
    escaped = False
    for pos in range(start, len(text)):
        char = text[pos]
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
            if depth == 0:
                return pos + 1
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
