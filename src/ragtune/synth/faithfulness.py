"""Faithfulness per answer sentence: each one must be supported by a sentence of its cited chunks.

The groundedness filter scores the answer as a whole, and a wrong sentence built from the chunk's
own words scores high ("ADHD is a rare condition" beside "ADHD is one of the most frequently
diagnosed conditions of childhood"). Here every answer sentence is aligned, by embedding, with its
closest sentence in the chunks it cites, and then its fact-bearing terms (:mod:`ragtune.core.facts`:
numbers, durations, ages, quantifiers, negations, names of conditions and treatments) must be
present in, or entailed by, that support:

* a number, duration, age or name must appear in the support (its sentence or the ``window``
  sentences around it in the same chunk); where the support holds another of the same kind
  instead, the term is *contradicted* (a swapped number, a condition swapped for another);
* a quantifier must be entailed by one in the support's sentence ("common" by "most"); an opposed
  one ("rare" against "most") contradicts it; a hedge ("some", "several") needs nothing;
* a negation needs one in the support's sentence; and a support that negates what an answer
  sentence repeats word for word without the negation contradicts it.

A sentence below the similarity threshold, or with a missing or contradicted term, is unsupported,
and one unsupported sentence rejects the item (``unsupported_claim``). Pure functions over texts and
vectors; the stage embeds and records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ragtune.core.facts import (
    ENTAILED_BY,
    NAMED_KINDS,
    NEGATION,
    OPPOSED,
    QUANTIFIER,
    FactTerm,
    Lexicon,
    fact_terms,
    name_key,
    split_sentences,
    text_sentences,
)
from ragtune.core.records import SentenceSupport
from ragtune.synth.filters import content_words

UNSUPPORTED_CLAIM = "unsupported_claim"
# A support this close to the answer sentence, word for word, negates it when it alone says "not".
ECHO_OVERLAP = 0.8


@dataclass(frozen=True)
class SourceSentence:
    """One sentence of a cited chunk, with its position there."""

    chunk_id: str
    index: int
    text: str


def source_sentences(chunks: Sequence[tuple[str, str]], quotes: bool = True) -> list[SourceSentence]:
    """The sentences of ``(chunk_id, text)`` pairs, in chunk order."""
    return [
        SourceSentence(chunk_id, index, sentence)
        for chunk_id, text in chunks
        for index, sentence in enumerate(text_sentences(text, quotes=quotes))
    ]


@dataclass(frozen=True)
class TermVerdict:
    missing: list[str]
    contradicted: list[str]


def _numeric_supported(term: FactTerm, support: Sequence[FactTerm]) -> bool:
    """Same value, or its numbers inside a range the support states ("2 week" in "2 to 4 week")."""
    tokens = set(term.key.split())
    return any(s.key == term.key or (s.kind == term.kind and tokens <= set(s.key.split())) for s in support)


def _name_supported(term: FactTerm, support: Sequence[FactTerm], support_text: str) -> bool:
    if any(s.key == term.key for s in support):
        return True
    return f" {term.key} " in f" {name_key(support_text)} "


def _quantifier_verdict(term: FactTerm, support: Sequence[FactTerm]) -> str | None:
    """None when entailed (or a hedge), else "missing" or "contradicted"."""
    if term.key == "some":
        return None
    classes = {s.key for s in support if s.kind == QUANTIFIER}
    if classes & ENTAILED_BY[term.key]:
        return None
    return "contradicted" if classes & OPPOSED[term.key] else "missing"


def compare_terms(claim: str, support_sentence: str, window_text: str, lexicon: Lexicon) -> TermVerdict:
    """Which fact-bearing terms of ``claim`` its support lacks or states otherwise.

    Names and numbers are looked for in ``window_text`` (the support sentence and its neighbours);
    quantifiers and negations only in ``support_sentence``, where they belong to the same claim.
    """
    claim_terms = fact_terms(claim, lexicon)
    near = fact_terms(support_sentence, lexicon)
    window = fact_terms(window_text, lexicon)
    missing: list[str] = []
    contradicted: list[str] = []
    for term in claim_terms:
        if term.kind == QUANTIFIER:
            verdict = _quantifier_verdict(term, near)
        elif term.kind == NEGATION:
            verdict = None if any(s.kind == NEGATION for s in near) else "missing"
        elif term.kind in NAMED_KINDS:
            ok = _name_supported(term, window, window_text)
            verdict = (
                None if ok else ("contradicted" if any(s.kind == term.kind for s in near) else "missing")
            )
        else:
            ok = _numeric_supported(term, window)
            verdict = (
                None if ok else ("contradicted" if any(s.kind == term.kind for s in window) else "missing")
            )
        if verdict == "missing":
            missing.append(term.text)
        elif verdict == "contradicted":
            contradicted.append(term.text)
    if _drops_negation(claim_terms, near, claim, support_sentence):
        contradicted.append("(not)")
    return TermVerdict(missing, contradicted)


def _drops_negation(
    claim_terms: Sequence[FactTerm], near: Sequence[FactTerm], claim: str, support_sentence: str
) -> bool:
    """The support says "not" about what the claim repeats nearly word for word without it."""
    if any(t.kind == NEGATION for t in claim_terms) or not any(s.kind == NEGATION for s in near):
        return False
    support_words = set(content_words(support_sentence))
    if not support_words:
        return False
    return len(support_words & set(content_words(claim))) / len(support_words) >= ECHO_OVERLAP


def check_sentence(
    sentence: str,
    vector: np.ndarray,
    sources: Sequence[SourceSentence],
    source_vectors: np.ndarray,
    lexicon: Lexicon,
    threshold: float,
    window: int,
) -> SentenceSupport:
    """Align ``sentence`` with its closest source sentence and compare their fact-bearing terms."""
    if not sources:
        return SentenceSupport(sentence=sentence, supported=False)
    similarities = source_vectors @ vector
    best = int(np.argmax(similarities))
    support = sources[best]
    neighbours = [
        s.text for s in sources if s.chunk_id == support.chunk_id and abs(s.index - support.index) <= window
    ]
    verdict = compare_terms(sentence, support.text, " ".join(neighbours), lexicon)
    similarity = round(float(similarities[best]), 4)
    return SentenceSupport(
        sentence=sentence,
        supported=similarity >= threshold and not verdict.missing and not verdict.contradicted,
        chunk_id=support.chunk_id,
        support=support.text,
        similarity=similarity,
        missing_terms=verdict.missing,
        contradicted_terms=verdict.contradicted,
    )


def answer_sentences(answer: str) -> list[str]:
    return split_sentences(" ".join(answer.split()))


def check_answer(
    claims: Sequence[str],
    claim_vectors: np.ndarray,
    sources: Sequence[SourceSentence],
    source_vectors: np.ndarray,
    lexicon: Lexicon,
    threshold: float,
    window: int,
) -> list[SentenceSupport]:
    """:func:`check_sentence` for each answer sentence (rows of ``claim_vectors``, unit length)."""
    return [
        check_sentence(claim, vector, sources, source_vectors, lexicon, threshold, window)
        for claim, vector in zip(claims, claim_vectors, strict=True)
    ]


def first_unsupported(checks: Sequence[SentenceSupport], threshold: float) -> str | None:
    """The rejection detail naming the first unsupported sentence and why, or None when all hold."""
    for number, check in enumerate(checks, start=1):
        if check.supported:
            continue
        why = []
        if check.similarity < threshold:
            why.append(f"closest source sentence at cosine {check.similarity} < {threshold}")
        if check.contradicted_terms:
            why.append("contradicted: " + ", ".join(check.contradicted_terms))
        if check.missing_terms:
            why.append("not in the source: " + ", ".join(check.missing_terms))
        if check.judge:
            why.append(f"judge: {check.judge}")
        return f"sentence {number} {check.sentence!r}: " + "; ".join(why or ["no source sentence"])
    return None
