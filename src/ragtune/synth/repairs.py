"""Deterministic repairs of generated questions and answers, applied before the filters judge them.

A small generator gets most things right and then trips over form: it opens with "According to the
passage,", writes a question ending in a full stop, answers its own question after the question
mark, repeats a sentence until the token cap, or is cut off mid-sentence. Each of these has one
mechanical fix that keeps the model's content and adds none, so the slot need not be thrown away.
The filters still run on the repaired text unchanged (a question that still points at "the
passage" after its lead-in is gone is rejected as before), and every repair applied is named in the
item's provenance and counted in ``synth_report.json``.

Every function returns ``(text, names of the repairs applied)``; the text is unchanged when the
list is empty.
"""

from __future__ import annotations

import re

from ragtune.core.facts import split_sentences

# Repair names (stable strings: counted in the report, recorded in provenance).
LEAD_IN = "stripped_lead_in"
QUESTION_MARK = "question_mark"
TRAILING_TEXT = "cut_after_question"
REPEATED_SENTENCE = "dropped_repeated_sentence"
TRUNCATED = "closed_truncated_sentence"
INLINE_CITATION = "dropped_inline_citation"

_SOURCE = r"(?:passage|text|context|excerpt|extract|article|notes|section|document|information|chunks?)"
# "According to the passage, ...", "Based on the provided context: ...", "In the text above, ..."
_LEAD_IN = re.compile(
    r"\A\s*(?:(?:according to|based on|as (?:stated|described|mentioned|explained) in|from|in|using)"
    rf"\s+(?:the|this|that)\s+(?:\w+\s+)?{_SOURCE}(?:\s+(?:above|below|provided|given))?\s*[,:;-]"
    rf"|(?:the|this)\s+{_SOURCE}\s+(?:says|states|explains|describes|shows)(?:\s+that\b|\s*[,:;-]))\s*",
    re.IGNORECASE,
)
_QUESTION_WORD = re.compile(
    r"\s*(?:what|how|why|which|when|where|who|whom|whose|is|are|was|were|do|does|did|can|could|should"
    r"|would|will|may|might|must|has|have|had)\b",
    re.IGNORECASE,
)
_INLINE_ID = re.compile(r"\s*[\[(](?:chunk\s*)?(?:id\s*)?[0-9a-f]{6,}(?:\s*,\s*[0-9a-f]{6,})*[\])]", re.I)
_CLOSING = (".", "!", "?", '."', ".)", "?)", '?"')


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def strip_lead_in(text: str) -> tuple[str, list[str]]:
    """Remove an opening that points at the source ("According to the passage, ")."""
    match = _LEAD_IN.match(text)
    if match is None or match.end() >= len(text):
        return text, []
    return _capitalise(text[match.end() :].lstrip()), [LEAD_IN]


def drop_repeated_sentences(text: str) -> tuple[str, list[str]]:
    """Keep the first of sentences that occur more than once (case- and space-insensitively)."""
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in split_sentences(text):
        key = " ".join(sentence.casefold().split())
        if key in seen:
            continue
        seen.add(key)
        kept.append(sentence)
    joined = " ".join(kept)
    return (joined, [REPEATED_SENTENCE]) if joined != " ".join(split_sentences(text)) else (text, [])


def close_truncated(text: str, min_chars: int) -> tuple[str, list[str]]:
    """Cut an unfinished last sentence (the token cap struck mid-sentence) back to the last full one.

    Only when at least ``min_chars`` remain; otherwise the text stays as it is (and the length or
    other filters decide).
    """
    stripped = text.rstrip()
    if not stripped or stripped.endswith(_CLOSING):
        return text, []
    parts = split_sentences(stripped)
    if len(parts) < 2:
        return text, []
    closed = " ".join(parts[:-1])
    if len(closed) < min_chars:
        return text, []
    return closed, [TRUNCATED]


def drop_inline_citations(text: str) -> tuple[str, list[str]]:
    """Remove chunk ids written into an answer's text ("[3fa9c2d1]"); citations belong in their field."""
    cleaned = _INLINE_ID.sub("", text)
    if cleaned == text:
        return text, []
    return re.sub(r"\s+([.,;:!?])", r"\1", cleaned).strip(), [INLINE_CITATION]


def fix_question_mark(text: str) -> tuple[str, list[str]]:
    """End a question with one ``?``: cut an answer written after it, or fix its final punctuation.

    "What is X? X is a ..." becomes "What is X?"; "What is X." and "What is X" become "What is X?"
    when the text opens with a question word; "What is X ??" becomes "What is X?".
    """
    fixed = text.strip()
    applied: list[str] = []
    last = fixed.rfind("?")
    if last >= 0 and fixed[last + 1 :].strip(" \"')]"):
        fixed = fixed[: last + 1]
        applied.append(TRAILING_TEXT)
    if last >= 0:
        squeezed = re.sub(r"\s*\?+$", "?", fixed)
        if squeezed != fixed:
            fixed = squeezed
            applied.append(QUESTION_MARK)
    elif _QUESTION_WORD.match(fixed):
        fixed = re.sub(r"[\s.,;:!]*$", "", fixed) + "?"
        applied.append(QUESTION_MARK)
    return (fixed, applied) if applied else (text, [])


def repair_question(text: str) -> tuple[str, list[str]]:
    """All question repairs in order: lead-in, text after the question, the question mark."""
    text = " ".join(text.split())
    applied: list[str] = []
    for step in (strip_lead_in, fix_question_mark):
        text, names = step(text)
        applied += names
    return text, applied


def repair_answer(text: str, min_chars: int) -> tuple[str, list[str]]:
    """All answer repairs in order: lead-in, inline chunk ids, repeated sentences, a cut-off ending."""
    text = text.strip()
    applied: list[str] = []
    text, names = strip_lead_in(text)
    applied += names
    text, names = drop_inline_citations(text)
    applied += names
    text, names = drop_repeated_sentences(text)
    applied += names
    text, names = close_truncated(text, min_chars)
    applied += names
    return text, applied
