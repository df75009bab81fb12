"""Corpus statements and same-kind distractors: plausible swaps, never another true sentence."""

from __future__ import annotations

from ragtune.core.facts import fact_terms
from ragtune.evaluate.distractors import CorpusTerms, corpus_statements, distractors
from tests.evaluate.helpers import make_item

CORPUS = [
    "Symptoms of generalized anxiety disorder must last at least six months. Panic disorder is common.",
    "A depressive episode lasts at least two weeks. Insomnia is often treated with cognitive behavioural therapy.",
    "Hypomania lasts at least four days, and mania at least one week. Bipolar disorder affects 2% of adults.",
    "Children are rarely diagnosed before the age of 7. Most people recover within three months.",
    "Lithium remains a first-line treatment. Exposure therapy helps most people with phobias.",
]
TERMS = CorpusTerms.from_texts(CORPUS)


def kinds_swapped(original: str, altered: str) -> set[str]:
    before = {(t.kind, t.text) for t in fact_terms(original, TERMS.lexicon)}
    after = {(t.kind, t.text) for t in fact_terms(altered, TERMS.lexicon)}
    return {kind for kind, _ in before ^ after}


def test_a_duration_is_swapped_for_a_duration_of_the_same_unit_first() -> None:
    made = distractors("A depressive episode lasts at least two weeks.", TERMS, 3, seed=0)
    assert made and all(
        kinds_swapped("A depressive episode lasts at least two weeks.", d) <= {"duration", "condition"}
        for d in made
    )
    durations = [d for d in made if "episode" in d]
    assert durations[0] == "A depressive episode lasts at least one week."  # the corpus's only other week


def test_a_condition_is_swapped_for_one_with_the_same_head_first() -> None:
    made = distractors("Panic disorder is common.", TERMS, 4, seed=1)
    swapped = [d for d in made if not d.startswith("Panic disorder")]
    assert swapped and swapped[0].split(" is ")[0].lower().endswith("disorder")


def test_a_quantifier_is_swapped_for_another_class_in_the_same_slot() -> None:
    made = distractors("Children are rarely diagnosed before the age of 7.", TERMS, 5, seed=0)
    adverbs = [d for d in made if "rarely" not in d]
    assert adverbs and all(" often diagnosed" in d for d in adverbs)  # "often", not "most"


def test_no_distractor_is_a_sentence_of_the_corpus_and_the_result_is_deterministic() -> None:
    sentence = "Hypomania lasts at least four days, and mania at least one week."
    made = distractors(sentence, TERMS, 6, seed=2)
    corpus_sentences = {s.lower() for text in CORPUS for s in text.split(". ")}
    assert sentence not in made and len(set(made)) == len(made)
    assert not any(d.rstrip(".").lower() in corpus_sentences for d in made)
    assert made == distractors(sentence, TERMS, 6, seed=2)


def test_a_sentence_without_a_fact_bearing_term_has_no_distractor() -> None:
    assert distractors("The clinician listens carefully to the person.", TERMS, 3, seed=0) == []


def test_statements_come_from_the_source_chunk_answer_related_first() -> None:
    item = make_item(
        "i1",
        "Mood",
        "How long does hypomania last?",
        "Hypomania lasts at least four days.",
        [CORPUS[2], CORPUS[0]],
    )
    statements = corpus_statements(item, TERMS, limit=1)
    assert statements == ["Hypomania lasts at least four days, and mania at least one week."]
    assert len(corpus_statements(item, TERMS, limit=5)) == 2  # both fact-bearing sentences of chunk 0
