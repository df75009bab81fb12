"""Sentence splitting and fact-bearing terms (``ragtune.core.facts``)."""

from __future__ import annotations

from ragtune.core.facts import (
    AGE,
    CONDITION,
    DURATION,
    NEGATION,
    NUMBER,
    PERCENT,
    QUANTIFIER,
    TREATMENT,
    build_lexicon,
    corpus_terms,
    fact_terms,
    replace_term,
    split_sentences,
    text_sentences,
)

CORPUS = [
    "## Overview\n\nObsessive-compulsive disorder (OCD) involves obsessions and compulsions. "
    "Exposure and response prevention (ERP) is the leading psychological treatment.",
    "- Hoarding disorder: persistent difficulty discarding possessions.\n"
    "Attention-deficit/hyperactivity disorder (ADHD) is one of the most frequently diagnosed conditions "
    "of childhood. Symptoms start before age 12 and last at least six months; about 5% of children have it.",
    "Selective serotonin reuptake inhibitors and lithium are medicines; panic disorder is not rare.",
]


def kinds(sentence: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for term in fact_terms(sentence, build_lexicon(CORPUS)):
        found.setdefault(term.kind, []).append(term.text)
    return found


def test_sentences_split_after_closing_punctuation_and_document_lines() -> None:
    assert split_sentences('He said "stop." Then (he left.) Done') == [
        'He said "stop."',
        "Then (he left.)",
        "Done",
    ]
    assert text_sentences(CORPUS[1]) == [
        "Hoarding disorder: persistent difficulty discarding possessions.",
        "Attention-deficit/hyperactivity disorder (ADHD) is one of the most frequently diagnosed conditions"
        " of childhood.",
        "Symptoms start before age 12 and last at least six months; about 5% of children have it.",
    ]
    assert text_sentences(CORPUS[0])[0].startswith("Obsessive-compulsive")  # the heading is no sentence


def test_lexicon_harvests_names_abbreviations_and_lists_them_by_kind() -> None:
    lexicon = build_lexicon(CORPUS)
    conditions, treatments = lexicon.terms(CONDITION), lexicon.terms(TREATMENT)
    assert {"obsessive-compulsive disorder", "hoarding disorder", "panic disorder"} <= set(conditions)
    assert "attention-deficit/hyperactivity disorder" in conditions
    assert {"exposure and response prevention", "selective serotonin reuptake inhibitors", "lithium"} <= set(
        treatments
    )
    assert lexicon.kind_of("OCD") == CONDITION and lexicon.kind_of("ERP") == TREATMENT
    assert "persistent difficulty" not in conditions and "difficulty discarding" not in conditions


def test_terms_of_every_kind_with_comparable_keys() -> None:
    found = kinds(
        "ADHD is a rare condition that usually starts before age 12 and lasts two weeks in 5% of cases."
    )
    assert found[CONDITION] == ["ADHD"] and found[QUANTIFIER] == ["rare", "usually"]
    assert found[AGE] == ["age 12"] and found[DURATION] == ["two weeks"] and found[PERCENT] == ["5%"]
    assert kinds("Lithium is not used in 3 cases.") == {
        TREATMENT: ["Lithium"],
        NEGATION: ["not"],
        NUMBER: ["3"],
    }
    lexicon = build_lexicon(CORPUS)
    (weeks,) = fact_terms("for 2 weeks", lexicon)
    (words,) = fact_terms("for two weeks", lexicon)
    assert weeks.key == words.key == "2 week"
    ocd, name = fact_terms("OCD or obsessive compulsive disorders", lexicon)
    assert ocd.key == name.key  # the abbreviation stands for its name; plural and hyphen do not matter


def test_corpus_terms_and_replace_term_build_same_kind_distractors() -> None:
    lexicon = build_lexicon(CORPUS)
    by_kind = corpus_terms(CORPUS, lexicon)
    assert "panic disorder" in by_kind[CONDITION] and "5%" in by_kind[PERCENT]
    sentence = "Panic disorder is not rare."
    term = next(t for t in fact_terms(sentence, lexicon) if t.kind == CONDITION)
    assert replace_term(sentence, term, "hoarding disorder") == "Hoarding disorder is not rare."
    fragment = "frequently losing keys;"
    opening = fact_terms(fragment, build_lexicon([]))[0]
    assert replace_term(fragment, opening, "rarely") == "rarely losing keys;"
