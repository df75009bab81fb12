"""Corpus statements and their distractors: true sentences and copies with one fact swapped.

Ground truth is the corpus, not the teacher that wrote the references. For each eval item the
statements are sentences of its source chunk that carry a fact (a fact-bearing term of
:mod:`ragtune.core.facts` that can be swapped), preferring those sharing a fact with the item's
reference answer. A distractor is the statement with one term replaced by another *of the same
kind* that the corpus also uses — a duration for a duration, a condition for a condition, the
nearest other numbers for a number, a quantifier of another class ("rare" for "common") — so
only a model that knows the fact tells them apart, not one that spots a grammatical misfit or an
off-topic word. A candidate that turns the statement into another sentence of the corpus is not
a distractor (it may be true). Deterministic for a seed.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ragtune.core.facts import (
    NEGATION,
    QUANTIFIER,
    FactTerm,
    Lexicon,
    build_lexicon,
    corpus_terms,
    fact_terms,
    replace_term,
    text_sentences,
    value_key,
)
from ragtune.core.records import InstructionItem

MIN_STATEMENT_WORDS = 6
"""A shorter sentence (a list fragment) states too little to be a fact worth scoring."""
NUMERIC_KINDS = ("number", "percent", "age", "duration")
_FIRST_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DETERMINERS = frozenset({"all", "most", "many", "few", "some", "several", "each", "every"})
_ADVERBS = frozenset({"often", "always", "sometimes", "seldom", "mostly"})


@dataclass(frozen=True)
class CorpusTerms:
    """What distractors are drawn from: the corpus's lexicon, its terms by kind, its sentences."""

    lexicon: Lexicon
    by_kind: dict[str, list[str]]
    sentences: frozenset[str]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CorpusTerms:
        unique = list(dict.fromkeys(texts))
        lexicon = build_lexicon(unique)
        counts = corpus_terms(unique, lexicon)
        written = _written_forms(unique)
        by_kind = {
            kind: sorted(written.get(form, form) for form in counter) for kind, counter in counts.items()
        }
        sentences = frozenset(s.casefold() for text in unique for s in text_sentences(text))
        return cls(lexicon=lexicon, by_kind=by_kind, sentences=sentences)


def _written_forms(texts: Sequence[str]) -> dict[str, str]:
    """Lower-cased word → its upper-case spelling where the corpus writes it so (abbreviations)."""
    return {word.casefold(): word for text in texts for word in re.findall(r"\b[A-Z]{2,}s?\b", text)}


def item_texts(items: Iterable[InstructionItem]) -> list[str]:
    """Every distinct context chunk text of ``items`` (the corpus as evaluation sees it)."""
    return list({chunk.chunk_id: chunk.text for item in items for chunk in item.context}.values())


def _magnitude(key: str) -> float | None:
    match = _FIRST_NUMBER.search(key)
    return float(match.group(0)) if match else None


def _unit(key: str) -> str:
    return " ".join(
        w for w in key.split() if not _FIRST_NUMBER.fullmatch(w) and w not in ("-", "to", "or", "and")
    )


def _key(phrase: str, lexicon: Lexicon) -> str:
    """The comparable key of a term written alone (a quantifier's class, a name's canonical key)."""
    found = fact_terms(phrase, lexicon)
    return lexicon.canonical(found[0].key) if found else phrase.casefold()


def _nearest(term: FactTerm, pool: list[str]) -> list[str]:
    """Other values of a numeric kind, nearest (on a log scale) first; a duration's own unit first."""
    key = value_key(term.text)
    own = _magnitude(key) or 0.0
    pool = [c for c in pool if value_key(c) != key and _magnitude(value_key(c)) is not None]
    if term.kind == "duration":  # weeks for weeks where the corpus has them
        pool = [c for c in pool if _unit(value_key(c)) == _unit(key)] or pool

    def distance(candidate: str) -> float:
        return abs(math.log1p(_magnitude(value_key(candidate)) or 0.0) - math.log1p(own))

    return sorted(pool, key=lambda c: (distance(c), c))


def _plural(phrase: str) -> bool:
    last = phrase.split()[-1].casefold() if phrase.split() else ""
    return last.endswith("s") and not last.endswith(("ss", "is", "us"))


def _quantifier_role(word: str) -> str:
    """The slot a quantifier fills: "most people", "often happens", "is common", "each person"."""
    word = word.casefold()
    if word in _DETERMINERS:
        return word if word in ("each", "every") else "determiner"
    return "adverb" if word.endswith("ly") or word in _ADVERBS else "adjective"


def _candidates(term: FactTerm, terms: CorpusTerms, rng: np.random.Generator) -> list[str]:
    """Same-kind replacements for ``term``, most plausible first."""
    pool = [c for c in terms.by_kind.get(term.kind, []) if c.casefold() != term.text.casefold()]
    if term.kind in NUMERIC_KINDS:
        return _nearest(term, pool)
    own = _key(term.text, terms.lexicon)
    pool = [c for c in pool if _key(c, terms.lexicon) != own]  # another class, another name
    if term.kind == QUANTIFIER:  # "rarely" for "often", "few" for "most": the grammar holds
        pool = [c for c in pool if _quantifier_role(c) == _quantifier_role(term.text)]
    shuffled = [str(c) for c in rng.permutation(pool)]
    head, plural = term.text.split()[-1].casefold(), _plural(term.text)
    # "panic disorder" → "bipolar disorder" before "lithium"; a plural for a plural (the verb agrees).
    return sorted(shuffled, key=lambda c: (_plural(c) != plural, c.split()[-1].casefold() != head))


def distractors(text: str, terms: CorpusTerms, k: int, seed: int) -> list[str]:
    """Up to ``k`` copies of ``text``, each with one fact-bearing term swapped for one of its kind.

    Terms take turns (the first candidate of each term, then the second ...), so the distractors
    alter different facts where the text has several. Negations are not swapped (dropping one
    breaks the grammar more often than it changes the fact).
    """
    rng = np.random.default_rng([seed, zlib.crc32(text.encode("utf-8"))])
    found = [t for t in fact_terms(text, terms.lexicon) if t.kind != NEGATION]
    ranked = [(term, _candidates(term, terms, rng)) for term in found]
    made: list[str] = []
    for depth in range(max((len(c) for _, c in ranked), default=0)):
        for term, candidates in ranked:
            if depth >= len(candidates) or len(made) >= k:
                continue
            altered = replace_term(text, term, candidates[depth])
            if altered != text and altered not in made and altered.casefold() not in terms.sentences:
                made.append(altered)
        if len(made) >= k:
            break
    return made


def corpus_statements(item: InstructionItem, terms: CorpusTerms, limit: int) -> list[str]:
    """Up to ``limit`` fact-bearing sentences of ``item``'s source chunk, answer-related first.

    The source chunk is the context chunk the question was written from (the first context chunk
    where it is not among them). A sentence shares a fact with the answer when a term key of one
    appears among the other's.
    """
    source = next(
        (c for c in item.context if c.chunk_id == item.provenance.source_chunk_id),
        item.context[0] if item.context else None,
    )
    if source is None:
        return []
    answer_keys = {t.key for t in fact_terms(item.answer, terms.lexicon)}
    scored = []
    for position, sentence in enumerate(text_sentences(source.text)):
        keys = {t.key for t in fact_terms(sentence, terms.lexicon) if t.kind != NEGATION}
        if keys and len(sentence.split()) >= MIN_STATEMENT_WORDS:
            scored.append((-len(keys & answer_keys), position, sentence))
    return [sentence for *_, sentence in sorted(scored)[:limit]]
