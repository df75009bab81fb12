"""Reading a score or a verdict out of whatever the judge wrote.

Judges — the weak local one above all — wrap JSON in code fences and chatter, stop halfway, write
``Score: 7/10`` instead of JSON, or answer something else entirely. The parsers here accept what
is unambiguous and return ``None`` for everything else; the caller records ``None`` as a judge
failure. They never guess: an out-of-range score, a score cut off mid-number, or two different
scores in one reply are all ``None``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, StrictInt

from ragtune.core.llm import parse_json_object
from ragtune.evaluate.stats import Verdict

T = TypeVar("T")

MIN_SCORE, MAX_SCORE = 1, 10
_REASON_CHARS = 1000

ParsedFrom = Literal["json", "partial_json", "text"]

_SCORE_KEYS = ("score", "rating", "grade")
_VERDICT_KEYS = ("winner", "better", "verdict", "choice")

_NUMBER = r"(\d+(?:\.\d+)?)"
# A number with an optional "/ 10" or "out of 10" after it (the denominator is checked).
_SCORE_VALUE = re.compile(rf"^\s*{_NUMBER}\s*(?:(?:/|out\s+of)\s*(\d+))?\s*$", re.IGNORECASE)
# A quoted score key in JSON-ish text; the number must be followed by a delimiter, so that a
# reply cut off at '{"score": 1' (maybe 10) is not read as 1.
_PARTIAL_SCORE = re.compile(
    rf"""["'](?:score|rating|grade)["']\s*:\s*["']?{_NUMBER}["']?\s*(?=[,}}\n])""", re.IGNORECASE
)
_JSONISH_SCORE_KEY = re.compile(r"""["'](?:score|rating|grade)["']\s*:""", re.IGNORECASE)
_PARTIAL_REASON = re.compile(r'"reason"\s*:\s*"((?:[^"\\]|\\.)*)', re.IGNORECASE | re.DOTALL)
# Prose: "Score: 7", "**Score:** 7/10", "score of 8", "Rating = 6 out of 10".
_TEXT_SCORE = re.compile(
    rf"\b(?:score|rating|grade)\b[\s*_:=\-]*(?:(?:is|of)\b)?[\s*:=]*(?<!-){_NUMBER}(?!\d|\.\d)"
    r"(?:\s*(?:/|out\s+of)\s*(\d+))?",
    re.IGNORECASE,
)
# Prose: "7/10", "8 out of 10" anywhere.
_TEXT_FRACTION = re.compile(rf"(?<![\d.\-]){_NUMBER}\s*(?:/|out\s+of)\s*(10)(?!\d)", re.IGNORECASE)


class JudgeScore(BaseModel):
    """One parsed score: an integer 1–10 and the judge's reason."""

    score: StrictInt = Field(
        ge=MIN_SCORE, le=MAX_SCORE, description="Strict: 7.0 or true are the parser's call."
    )
    reason: str = ""
    parsed_from: ParsedFrom = Field(
        "json", description="json, partial_json (reply cut off after the score) or text (prose)."
    )


class PairVerdict(BaseModel):
    """One parsed pairwise verdict for one ordering of two answers."""

    winner: Verdict
    reason: str = ""
    parsed_from: ParsedFrom = "json"


def _in_range(number: float, denominator: str | None) -> int | None:
    if denominator is not None and int(denominator) != MAX_SCORE:
        return None  # "4/5" is on another scale; do not guess a conversion
    if not math.isfinite(number) or not MIN_SCORE <= number <= MAX_SCORE:
        return None
    return math.floor(number + 0.5)  # 7.5 -> 8; range is checked before rounding


def coerce_score(value: Any) -> int | None:
    """An integer score from a JSON value (7, 7.0, "7", "7/10"), or ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return _in_range(float(value), None)
    if isinstance(value, str):
        match = _SCORE_VALUE.match(value)
        return _in_range(float(match.group(1)), match.group(2)) if match else None
    return None


def _find_key(obj: dict[str, Any], keys: tuple[str, ...]) -> tuple[bool, Any, dict[str, Any]]:
    """``(found, value, owner)`` for the first of ``keys`` (any case) in ``obj`` or a dict inside it."""
    lowered = {str(k).lower(): k for k in obj}
    for key in keys:
        if key in lowered:
            return True, obj[lowered[key]], obj
    for value in obj.values():
        if isinstance(value, dict):
            found = _find_key(value, keys)
            if found[0]:
                return found
    return False, None, obj


def _reason_of(owner: dict[str, Any]) -> str:
    for key, value in owner.items():
        if str(key).lower() in {"reason", "reasoning", "explanation", "rationale", "justification"}:
            return str(value)[:_REASON_CHARS]
    return ""


def _unescape(fragment: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), fragment)


def _single(values: Sequence[T | None]) -> T | None:
    """The one value all candidates agree on (score or verdict); ``None`` if any is unusable or they disagree."""
    if not values or any(v is None for v in values) or len(set(values)) != 1:
        return None
    return values[0]


def parse_judge_score(text: str | None) -> JudgeScore | None:
    """The judge's 1–10 score, or ``None`` when the reply holds no unambiguous in-range score.

    Tried in order: the first complete JSON object with a ``score`` key (code fences, chatter,
    extra fields and single quotes are fine); a JSON reply cut off after the score's delimiter;
    and, for replies with no JSON score key at all, prose such as ``Score: 7/10``. A JSON score
    outside 1–10 is rejected, never clamped.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    obj = parse_json_object(text)
    if obj is not None:
        found, value, owner = _find_key(obj, _SCORE_KEYS)
        if found:
            score = coerce_score(value)
            return None if score is None else JudgeScore(score=score, reason=_reason_of(owner))
    keys = len(_JSONISH_SCORE_KEY.findall(text))
    if keys:
        # JSON that never closed (max_tokens, or invalid JSON): every score key needs a complete,
        # delimited value, and they must agree.
        scores = [coerce_score(m.group(1)) for m in _PARTIAL_SCORE.finditer(text)]
        score = _single(scores) if len(scores) == keys else None
        if score is None:
            return None
        reason = _PARTIAL_REASON.search(text)
        return JudgeScore(
            score=score,
            reason=_unescape(reason.group(1))[:_REASON_CHARS] if reason else "",
            parsed_from="partial_json",
        )
    candidates = [_in_range(float(m.group(1)), m.group(2)) for m in _TEXT_SCORE.finditer(text)]
    candidates += [_in_range(float(m.group(1)), m.group(2)) for m in _TEXT_FRACTION.finditer(text)]
    score = _single(candidates)
    if score is None:
        return None
    return JudgeScore(score=score, reason=text.strip()[:_REASON_CHARS], parsed_from="text")


_VERDICT_WORDS: dict[str, Verdict] = {
    "a": "A",
    "b": "B",
    "tie": "tie",
    "draw": "tie",
    "equal": "tie",
    "both": "tie",
    "neither": "tie",
    "none": "tie",
}
_VERDICT_PREFIX = re.compile(r"^(?:answer|assistant|response|model)\s+", re.IGNORECASE)
_PARTIAL_VERDICT = re.compile(
    r"""["'](?:winner|better|verdict|choice)["']\s*:\s*["']([^"'\n]{1,30})["']""", re.IGNORECASE
)
_JSONISH_VERDICT_KEY = re.compile(r"""["'](?:winner|better|verdict|choice)["']\s*:""", re.IGNORECASE)
_TEXT_VERDICTS = (
    re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE),  # MT-bench style [[A]]
    re.compile(
        r"\b(?:winner|verdict|better answer)\b\s*(?:is\b)?[\s*:=]*"
        r"(?:(?:answer|assistant|response)\s+)?\**([AB]|tie)\b",
        re.IGNORECASE,
    ),
    re.compile(r"\b(?:answer|assistant|response)\s+([AB])\s+is\s+better\b", re.IGNORECASE),
    re.compile(r"\b(?:it'?s\s+a|a|the result is a)\s+(tie)\b", re.IGNORECASE),
)


def coerce_verdict(value: Any) -> Verdict | None:
    """``"A"``, ``"B"`` or ``"tie"`` from a JSON value such as ``"Answer A"`` or ``"TIE"``."""
    if not isinstance(value, str):
        return None
    word = _VERDICT_PREFIX.sub("", value.strip().strip("[]().*\"' ")).strip().lower()
    if word == "c":  # MT-bench's [[C]] means a tie
        return "tie"
    return _VERDICT_WORDS.get(word)


def parse_pairwise_verdict(text: str | None) -> PairVerdict | None:
    """Which of two answers the judge preferred (``A``, ``B`` or ``tie``), or ``None``."""
    if not isinstance(text, str) or not text.strip():
        return None
    obj = parse_json_object(text)
    if obj is not None:
        found, value, owner = _find_key(obj, _VERDICT_KEYS)
        if found:
            verdict = coerce_verdict(value)
            return None if verdict is None else PairVerdict(winner=verdict, reason=_reason_of(owner))
    if _JSONISH_VERDICT_KEY.search(text):
        verdict = _single([coerce_verdict(m.group(1)) for m in _PARTIAL_VERDICT.finditer(text)])
        if verdict is None:
            return None
        reason = _PARTIAL_REASON.search(text)
        return PairVerdict(
            winner=verdict,
            reason=_unescape(reason.group(1))[:_REASON_CHARS] if reason else "",
            parsed_from="partial_json",
        )
    found_verdicts = [
        coerce_verdict(m.group(1)) for pattern in _TEXT_VERDICTS for m in pattern.finditer(text)
    ]
    verdict = _single(found_verdicts)
    if verdict is None:
        return None
    return PairVerdict(winner=verdict, reason=text.strip()[:_REASON_CHARS], parsed_from="text")
