"""The quality filters of the synthesis stage, as pure functions over texts and vectors.

Each check answers ``None`` (passes) or a short reason; :mod:`ragtune.synth.stage` applies them
in order and records the first failure of every slot in ``rejected.jsonl``. Vectors are unit-length
rows (the index embedder's), so a dot product is a cosine similarity.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ragtune.core.llm import BUDGET_EXHAUSTED, LLMFailure
from ragtune.core.llm import MALFORMED as MALFORMED_PREFIX

# Rejection reasons (stable strings: they are counted in the report and the dataset card).
LLM_FAILURE = "llm_failure"
MALFORMED = "malformed"
BUDGET = "budget_exhausted"
REFUSAL = "refusal"
MENTIONS_SOURCE = "mentions_source"
NOT_A_QUESTION = "not_a_question"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
NO_CONTEXT = "no_context"
UNGROUNDED = "ungrounded"
IRRELEVANT = "irrelevant"
REPETITIVE = "repetitive"
UNFINISHED = "unfinished"

REPEAT_WORDS = 8  # a run of this many words seen twice in one text is a loop, not prose

_REFUSAL = re.compile(
    r"|".join(
        [
            r"\bnot (?:\w+ ){0,3}(?:in|from|within) the (?:\w+ )?(?:context|passage|text|documents?)\b",
            r"\b(?:context|passage|text) (?:does not|doesn't|did not) (?:\w+ ){0,2}(?:contain|provide|mention|say|include|specify|state|cover)",
            r"\bno (?:relevant )?information (?:about|on|regarding|is (?:given|provided))",
            r"\bi (?:cannot|can ?not|can't|am unable to|am not able to|do not know|don't know)\b",
            r"\b(?:unable|not able) to (?:answer|determine|find|provide)\b",
            r"\bi'?m (?:sorry|afraid|unable)\b",
            r"\bas an ai\b",
            r"\binsufficient (?:information|context)\b",
        ]
    ),
    re.IGNORECASE,
)

# A training question must stand alone: one that points at "the passage" cannot be answered closed-book.
_SOURCE_REFERENCE = re.compile(
    r"\b(?:the|this|that|above|following|given|provided) (?:passage|text|article|excerpt|context|extract"
    r"|material|notes)\b|\b(?:mentioned|described|named|discussed|listed|given) above\b",
    re.IGNORECASE,
)

_QUESTION_START = re.compile(
    r"\s*(?:what|how|why|which|when|where|who|whom|whose|is|are|was|were|do|does|did|can|could|should|would"
    r"|will|may|might|must|has|have|had|describe|explain|list|name|define|compare|contrast|outline"
    r"|summari[sz]e|give|identify|state|distinguish|discuss)\b",
    re.IGNORECASE,
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Function words carry no evidence of grounding; kept short on purpose (English corpus default).
_STOPWORDS_TEXT = """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just may me might more most
    must my no nor not now of off on once only or other our out over own same she should so some such
    than that the their them then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def failure_reason(failure: LLMFailure) -> str:
    """The rejection reason for a request the model could not answer: budget, malformed or failure."""
    if failure.reason == BUDGET_EXHAUSTED:
        return BUDGET
    if failure.reason.startswith(MALFORMED_PREFIX):
        return MALFORMED
    return LLM_FAILURE


def refusal_phrase(text: str) -> str | None:
    """The refusal / "not in the context" phrase in ``text``, if any."""
    match = _REFUSAL.search(text)
    return match.group(0) if match else None


def source_reference(text: str) -> str | None:
    """The phrase by which a question points at its source ("the passage"), if any."""
    match = _SOURCE_REFERENCE.search(text)
    return match.group(0) if match else None


def is_question(text: str) -> bool:
    """A question mark anywhere (case vignettes end with one), or an interrogative/imperative opening."""
    return "?" in text or _QUESTION_START.match(text) is not None


# A question that stops on a function word ("What is the clinical picture of?") lost its subject.
_DANGLING_END = re.compile(
    r"\b(?:of|is|are|was|the|a|an|it|that|from|for|to|with|by|and|or|as|in|on|about)\s*\?\s*$", re.IGNORECASE
)


def dangling_end(question: str) -> str | None:
    """The function word a question stops on before its "?", if any."""
    match = _DANGLING_END.search(question)
    return match.group(0) if match else None


def length_problem(text: str, min_chars: int, max_chars: int) -> str | None:
    length = len(text.strip())
    if length < min_chars:
        return TOO_SHORT
    if length > max_chars:
        return TOO_LONG
    return None


def repeated_run(text: str, words: int = REPEAT_WORDS) -> str | None:
    """The first run of ``words`` words that occurs twice in ``text`` (case-insensitive), if any."""
    tokens = _WORD.findall(text.casefold())
    seen: set[tuple[str, ...]] = set()
    for start in range(len(tokens) - words + 1):
        run = tuple(tokens[start : start + words])
        if run in seen:
            return " ".join(run)
        seen.add(run)
    return None


def is_unfinished(text: str) -> bool:
    """Whether ``text`` stops without closing its last sentence (``.``, ``!``, ``?``, maybe quoted)."""
    return not text.rstrip().rstrip("\"')]*").endswith((".", "!", "?"))


def normalize_text(text: str) -> str:
    """Case-, accent-, punctuation- and whitespace-insensitive form for exact-duplicate checks."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    return " ".join(_WORD.findall("".join(ch for ch in folded if not unicodedata.combining(ch))))


@dataclass(frozen=True)
class DuplicateOf:
    reason: str  # DUPLICATE or NEAR_DUPLICATE
    index: int  # position of the earlier item it duplicates
    similarity: float


def find_duplicates(
    texts: Sequence[str], vectors: np.ndarray, threshold: float, block: int = 512
) -> list[DuplicateOf | None]:
    """For each text, ``None`` if kept, else which earlier *kept* text it duplicates.

    Greedy in order: an exact duplicate (same :func:`normalize_text`) or a near-duplicate (cosine
    at or above ``threshold``) of an earlier kept text is dropped; the first one stays.
    """
    n = len(texts)
    if vectors.shape[0] != n:
        raise ValueError(f"{vectors.shape[0]} vectors for {n} texts")
    result: list[DuplicateOf | None] = [None] * n
    kept = np.zeros(n, dtype=bool)
    first_by_text: dict[str, int] = {}
    for start in range(0, n, block):
        stop = min(n, start + block)
        sims = vectors[start:stop] @ vectors[:stop].T
        for row, index in enumerate(range(start, stop)):
            key = normalize_text(texts[index])
            if key in first_by_text:
                result[index] = DuplicateOf(DUPLICATE, first_by_text[key], 1.0)
                continue
            earlier = np.where(kept[:index], sims[row, :index], -np.inf)
            if index and earlier.size and float(earlier.max()) >= threshold:
                best = int(earlier.argmax())
                result[index] = DuplicateOf(NEAR_DUPLICATE, best, round(float(earlier[best]), 4))
                continue
            kept[index] = True
            first_by_text[key] = index
    return result


def content_words(text: str) -> list[str]:
    """Lower-cased words of three or more characters that are not stopwords, crudely singularised."""
    words = []
    for word in _WORD.findall(text.casefold()):
        if len(word) < 3 or word in STOPWORDS:
            continue
        if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        words.append(word)
    return words


def lexical_support(answer: str, contexts: Sequence[str]) -> float:
    """Share of the answer's content words that occur in the contexts (0.0 for an answer without any)."""
    words = content_words(answer)
    if not words:
        return 0.0
    vocabulary = {word for context in contexts for word in content_words(context)}
    return sum(word in vocabulary for word in words) / len(words)


def local_groundedness(
    answer: str, contexts: Sequence[str], answer_vector: np.ndarray, context_vectors: np.ndarray
) -> float:
    """Mean of lexical support and the best answer–context cosine (clipped at 0), in [0, 1]."""
    similarity = float((context_vectors @ answer_vector).max()) if len(context_vectors) else 0.0
    return round(0.5 * lexical_support(answer, contexts) + 0.5 * max(0.0, min(1.0, similarity)), 4)


def judge_groundedness(score: int) -> float:
    """A judge's 1–5 rubric score on the same [0, 1] scale as :func:`local_groundedness`."""
    return round((min(5, max(1, score)) - 1) / 4, 4)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return round(float(np.dot(a, b)), 4)
