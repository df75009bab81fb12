"""The faithfulness check per answer sentence, with the packaged MiniLM (``ragtune.synth.faithfulness``)."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.core.config import EmbedderConfig, build_config
from ragtune.core.embedding import Embedder, load_embedder
from ragtune.core.facts import build_lexicon
from ragtune.core.records import SentenceSupport
from ragtune.synth.faithfulness import (
    answer_sentences,
    check_answer,
    compare_terms,
    first_unsupported,
    source_sentences,
)

SETTINGS = build_config({}).synth
THRESHOLD, WINDOW = SETTINGS.faithfulness_threshold, SETTINGS.faithfulness_window
CHUNKS = {
    "adhd": (
        "## Overview\n\nAttention-deficit/hyperactivity disorder (ADHD) is one of the most frequently diagnosed"
        " conditions of childhood. Symptoms must be present before age 12 and persist for at least six months."
        " Stimulant medication and parent training are first-line treatments."
    ),
    "ocd": (
        "Obsessive-compulsive disorder (OCD) is built around obsessions and compulsions. Exposure and response"
        " prevention (ERP) is the leading psychological treatment for OCD. It is not a neurodevelopmental"
        " disorder."
    ),
}
LEXICON = build_lexicon(CHUNKS.values())


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_embedder(EmbedderConfig())


def check(embedder: Embedder, answer: str) -> list[SentenceSupport]:
    claims = answer_sentences(answer)
    sources = source_sentences(list(CHUNKS.items()))
    return check_answer(
        claims,
        embedder.encode(claims),
        sources,
        embedder.encode([s.text for s in sources]),
        LEXICON,
        THRESHOLD,
        WINDOW,
    )


@pytest.mark.parametrize(
    "answer",
    [
        "ADHD is one of the most frequently diagnosed conditions of childhood.",
        "ADHD is among the most commonly diagnosed childhood conditions.",
        "Symptoms must be present before age 12 and persist for at least 6 months.",
        "The leading psychological treatment for OCD is exposure and response prevention. OCD is built"
        " around obsessions and compulsions.",
    ],
)
def test_right_sentences_are_supported(embedder: Embedder, answer: str) -> None:
    checks = check(embedder, answer)
    assert all(c.supported for c in checks), checks
    assert first_unsupported(checks, THRESHOLD) is None
    assert {c.chunk_id for c in checks} <= set(CHUNKS)


@pytest.mark.parametrize(
    ("answer", "contradicted", "close"),
    [
        # a swapped number, a swapped age
        ("Symptoms must persist for at least two months.", "two months", True),
        ("Symptoms must be present before age 7 and persist for at least six months.", "age 7", True),
        # a wrong quantifier
        ("ADHD is one of the rarely diagnosed conditions of childhood.", "rarely", True),
        ("ADHD is a rare condition of childhood.", "rare", True),
        # a condition swapped for another
        (
            "Exposure and response prevention is the leading psychological treatment for depression.",
            "depression",
            False,
        ),
        # a condition the source denies
        ("OCD is a neurodevelopmental disorder.", "neurodevelopmental disorder", True),
    ],
)
def test_subtly_wrong_sentences_are_contradicted(
    embedder: Embedder, answer: str, contradicted: str, close: bool
) -> None:
    (result,) = check(embedder, answer)
    assert not result.supported
    assert contradicted in result.contradicted_terms
    # the close ones pass the similarity threshold: only their terms tell them from the source
    assert (result.similarity >= THRESHOLD) == close
    detail = first_unsupported([result], THRESHOLD)
    assert detail is not None and detail.startswith(f"sentence 1 {answer!r}") and contradicted in detail


def test_a_term_the_support_does_not_state_is_missing(embedder: Embedder) -> None:
    (result,) = check(embedder, "Stimulant medication and parent training are not first-line treatments.")
    assert not result.supported and result.missing_terms == ["not"]


def test_off_topic_and_mixed_answers_name_the_unsupported_sentence(embedder: Embedder) -> None:
    (off,) = check(embedder, "The Eiffel Tower in Paris was completed in 1889 for the World Fair.")
    assert not off.supported and off.similarity < THRESHOLD
    checks = check(
        embedder, "OCD is built around obsessions and compulsions. ADHD usually disappears within two weeks."
    )
    assert [c.supported for c in checks] == [True, False]
    detail = first_unsupported(checks, THRESHOLD)
    assert detail is not None and detail.startswith("sentence 2 'ADHD usually disappears within two weeks.'")


def test_terms_compare_by_kind_and_entailment() -> None:
    support = "Most people recover within 2 to 4 weeks; a few need lithium."
    assert compare_terms("Many people recover within 3 weeks.", support, support, LEXICON).contradicted == [
        "3 weeks"
    ]
    verdict = compare_terms("Commonly, people recover in two weeks.", support, support, LEXICON)
    assert (verdict.missing, verdict.contradicted) == ([], [])  # "most" entails "commonly"; 2 is in 2–4
    assert compare_terms("Some people need lithium.", support, support, LEXICON).missing == []  # a hedge
    assert compare_terms("All people need lithium.", support, support, LEXICON).contradicted == ["All"]
    assert compare_terms("Every patient needs lithium.", "Patients need lithium.", "", LEXICON).missing == [
        "Every"
    ]
    negated = "Lithium is not a first-line treatment for insomnia."
    assert compare_terms(
        "Lithium is a first-line treatment for insomnia.", negated, negated, LEXICON
    ).contradicted == ["(not)"]
    assert compare_terms("People need clozapine.", support, support, LEXICON).contradicted == ["clozapine"]


def test_no_source_sentence_supports_nothing() -> None:
    (result,) = check_answer(["A claim."], np.ones((1, 3)), [], np.zeros((0, 3)), LEXICON, THRESHOLD, WINDOW)
    assert not result.supported and result.support is None
    assert (
        first_unsupported([result], THRESHOLD)
        == f"sentence 1 'A claim.': closest source sentence at cosine 0.0 < {THRESHOLD}"
    )
