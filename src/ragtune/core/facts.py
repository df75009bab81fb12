"""Sentences and the fact-bearing terms in them: what a claim says that a paraphrase must keep.

A wrong sentence built from a passage's own words is close to the passage in embedding space and
in word overlap ("ADHD is a rare condition" beside "ADHD is one of the most frequently diagnosed
conditions"). What makes it wrong is a handful of terms: a number, a duration, a quantifier, a
negation, the name of a condition or a treatment. This module finds those terms, typed by kind, so
a checker can ask whether each one is present in (or entailed by) a supporting sentence, and a
distractor builder can swap one term for another of the same kind.

Condition and treatment names come from a :class:`Lexicon` harvested from the corpus itself
(phrases ending in "disorder", "syndrome", "therapy", ... and the abbreviations written after them
in brackets), over a short seed list of names that carry no such suffix ("schizophrenia",
"lithium"). Pure functions over text; no model, no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Term kinds (stable strings: recorded in provenance, used to pick same-kind distractors).
NUMBER = "number"
PERCENT = "percent"
DURATION = "duration"
AGE = "age"
CONDITION = "condition"
TREATMENT = "treatment"
QUANTIFIER = "quantifier"
NEGATION = "negation"
KINDS = (NUMBER, PERCENT, DURATION, AGE, CONDITION, TREATMENT, QUANTIFIER, NEGATION)
NAMED_KINDS = (CONDITION, TREATMENT)

# ---- sentences ---------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*(?=\s|$)")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s")


def split_sentences(text: str) -> list[str]:
    """``text`` split after each ``.``, ``!`` or ``?`` (closing quotes and brackets stay attached)."""
    parts: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        parts.append(text[start : match.end()].strip())
        start = match.end()
    if text[start:].strip():
        parts.append(text[start:].strip())
    return [p for p in parts if p]


def text_sentences(text: str) -> list[str]:
    """The sentences of a document text: per line, without list markers, headings or quote marks.

    Markdown-shaped chunks hold headings (skipped: a heading states no fact), bullets (each item is
    a sentence of its own) and ``>`` quotes; a line without closing punctuation is one sentence.
    """
    found: list[str] = []
    for line in text.splitlines():
        if not line.strip() or _HEADING.match(line):
            continue
        line = _BULLET.sub("", line.lstrip("> ").strip())
        found += split_sentences(line)
    return found


# ---- terms -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactTerm:
    """One fact-bearing term of a sentence: its text, kind and character span.

    ``key`` is the comparable form: the unit-normalised value of a number ("2 week" for "two
    weeks"), the polarity class of a quantifier ("high" for "most"), the stemmed, canonical
    (abbreviation-expanded) name of a condition or treatment.
    """

    text: str
    kind: str
    start: int
    end: int
    key: str = ""


_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "hundred": 100, "dozen": 12, "half": 0.5,
}  # fmt: skip
_NUM = r"(?:\d+(?:[.,]\d+)?|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
_RANGE = rf"{_NUM}(?:\s*(?:-|–|to|or|and)\s*{_NUM})?"
_UNIT = r"(?:second|minute|hour|day|night|week|month|year|decade)s?"
_PERCENT_RE = re.compile(rf"\b{_RANGE}\s*(?:%|percent\b|per cent\b)", re.I)
_AGE_RE = re.compile(
    rf"\b(?:(?:aged?|ages)\s+(?:of\s+)?(?:about\s+)?{_RANGE}|{_RANGE}[\s-]+years?[\s-]+old)\b", re.I
)
_DURATION_RE = re.compile(rf"\b(?:(?:a|an|one|a few|several)\s+{_UNIT}|{_RANGE}[\s-]+{_UNIT})\b", re.I)
# A bare "one" or "half" is mostly not a count ("one of the most ...", "one person"); in a duration it is.
_NUMBER_RE = re.compile(
    r"\b(?:\d+(?:[.,]\d+)?|" + "|".join(w for w in _NUMBER_WORDS if w not in ("one", "half")) + r")\b", re.I
)

# Quantifiers by class; a claim's class must be entailed by the support's (see ``entails``).
QUANTIFIER_CLASSES: dict[str, tuple[str, ...]] = {
    "high": ("most", "many", "common", "commonly", "frequent", "frequently", "often", "usually",
             "majority", "widespread", "widely", "typical", "typically", "prevalent", "mostly"),
    "low": ("rare", "rarely", "few", "uncommon", "seldom", "minority", "unusual", "infrequent",
            "infrequently", "occasionally"),
    "all": ("all", "always", "every", "each", "invariably"),
    "some": ("some", "several", "sometimes"),
}  # fmt: skip
_QUANTIFIER_OF = {word: cls for cls, words in QUANTIFIER_CLASSES.items() for word in words}
# What each claimed class needs in the support (a weaker claim is entailed by a stronger one).
ENTAILED_BY = {
    "high": {"high", "all"},
    "low": {"low"},
    "all": {"all"},
    "some": {"some", "high", "all", "low"},
}
# Pairs that say opposite things.
OPPOSED = {"high": {"low"}, "low": {"high", "all"}, "all": {"low", "some"}, "some": set[str]()}
_QUANTIFIER_RE = re.compile(r"\b(" + "|".join(sorted(_QUANTIFIER_OF, key=len, reverse=True)) + r")\b", re.I)
_NEGATION_RE = re.compile(r"\b(?:not|no|never|none|neither|nor|without|cannot|nothing)\b|n't\b", re.I)

# Heads that make a phrase a named condition or treatment ("panic disorder", "light therapy").
CONDITION_HEADS = ("disorder", "disorders", "syndrome", "syndromes", "disease", "phobia", "phobias",
                   "nervosa", "apnoea", "apnea", "dementia", "delirium", "psychosis", "insomnia", "mania",
                   "hypomania", "depression", "dependence", "intoxication", "withdrawal", "episode", "episodes")  # fmt: skip
TREATMENT_HEADS = ("therapy", "therapies", "psychotherapy", "inhibitors", "inhibitor",
                   "activation", "training", "counselling", "counseling", "prevention", "stabilisers", "stabilizers", "antidepressants", "antipsychotics",
                   "stimulants", "hygiene", "restriction", "psychoeducation", "interviewing", "detoxification")  # fmt: skip
# Single-word names without such a head.
SEED_CONDITIONS = ("schizophrenia", "autism", "depression", "anorexia", "bulimia", "trichotillomania",
                   "excoriation", "narcolepsy", "agoraphobia", "dysthymia", "cyclothymia", "catatonia",
                   "delirium", "dementia", "insomnia", "psychosis", "mania", "hypomania", "hoarding")  # fmt: skip
SEED_TREATMENTS = ("lithium", "antidepressants", "antidepressant", "antipsychotics", "antipsychotic",
                   "stimulants", "benzodiazepines", "melatonin", "clozapine", "naltrexone", "methadone",
                   "buprenorphine", "valproate", "lamotrigine", "methylphenidate", "ketamine",
                   "psychotherapy", "psychoeducation", "exposure and response prevention")  # fmt: skip
# Modifiers that do not name anything: a harvested phrase stops before them.
_GENERIC_TEXT = """a an the and or of for to in on with by as is are was be its their this that these those such other
    related psychiatric mental many several various similar specific certain different some any each
    every most more common rare serious severe mild usual main first best new both all which who also help
    helps include includes including treat treats treating precede precedes resemble resembles least one
    own from than rather full form whichever stopping support supports evidence leading early current
    accepted widely effective standard preferred recommended used using use into like called can cause
    causes persist persists between there have has been involves involve when quickly possible"""
_GENERIC = frozenset(_GENERIC_TEXT.split()) | frozenset(_QUANTIFIER_OF)
_WORDISH = re.compile(r"[A-Za-z][A-Za-z'/-]*")
_ABBREVIATION = re.compile(r"\(([A-Z][A-Za-z]{1,6}s?)\)")
_SUFFIXES = ("ations", "ation", "ions", "ion", "ives", "ive", "ing", "ies", "es", "ed", "s", "al", "ly")


def stem(word: str) -> str:
    """A crude English stem: "depression" and "depressive" both give "depress"."""
    word = word.casefold().replace("’", "'")
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def name_key(phrase: str) -> str:
    """Comparable form of a name: words stemmed, hyphens and slashes as spaces."""
    return " ".join(stem(w) for w in re.split(r"[\s/-]+", phrase) if w)


@dataclass(frozen=True)
class Lexicon:
    """Condition and treatment names of a corpus, and the abbreviations that stand for them.

    ``names`` maps each name's :func:`name_key` to its kind; ``surface`` keeps one written form per
    key (the first seen), which is what :meth:`terms` lists for building same-kind distractors;
    ``aliases`` maps an abbreviation's key to its full name's key ("ocd" → "obsessive compulsive
    disorder").
    """

    names: dict[str, str] = field(default_factory=dict)
    surface: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def terms(self, kind: str) -> list[str]:
        """Every name of ``kind`` (condition or treatment) in the lexicon, sorted by written form."""
        return sorted(self.surface[key] for key, k in self.names.items() if k == kind)

    def canonical(self, key: str) -> str:
        return self.aliases.get(key, key)

    def kind_of(self, phrase: str) -> str | None:
        key = name_key(phrase)
        return self.names.get(self.canonical(key))


def _harvest(text: str, heads: tuple[str, ...]) -> list[tuple[int, int]]:
    """Spans of phrases ending in one of ``heads`` with 1–4 non-generic modifier words before it."""
    words = list(_WORDISH.finditer(text))
    heads_set = set(heads)
    spans: list[tuple[int, int]] = []
    for index, word in enumerate(words):
        if word.group(0).casefold() not in heads_set:
            continue
        first = index
        while first > 0 and index - first < 4:
            before = words[first - 1]
            gap = text[before.end() : words[first].start()]
            if gap not in (" ", "") or before.group(0).casefold() in _GENERIC:
                break
            first -= 1
        if first < index:
            spans.append((words[first].start(), word.end()))
    return spans


def _seed_pattern(seeds: Sequence[str]) -> re.Pattern[str]:
    return re.compile(
        r"\b(?:" + "|".join(re.escape(s) for s in sorted(seeds, key=len, reverse=True)) + r")\b", re.I
    )


_SEED_PATTERNS = ((CONDITION, _seed_pattern(SEED_CONDITIONS)), (TREATMENT, _seed_pattern(SEED_TREATMENTS)))


def _named_spans(text: str) -> list[tuple[str, int, int]]:
    """``(kind, start, end)`` of every seed name and harvested phrase in ``text``, seeds first."""
    spans = [(kind, *m.span()) for kind, pattern in _SEED_PATTERNS for m in pattern.finditer(text)]
    for kind, heads in ((CONDITION, CONDITION_HEADS), (TREATMENT, TREATMENT_HEADS)):
        spans += [(kind, start, end) for start, end in _harvest(text, heads)]
    return spans


def build_lexicon(texts: Iterable[str]) -> Lexicon:
    """Harvest condition and treatment names (and their bracketed abbreviations) from ``texts``.

    Pass the corpus's chunk texts and headings. A name is a phrase ending in a condition or
    treatment head word, or a seed name; an abbreviation is a capitalised word in brackets right
    after a harvested name ("obsessive-compulsive disorder (OCD)").
    """
    names: dict[str, str] = {}
    surface: dict[str, str] = {}
    aliases: dict[str, str] = {}
    for seeds, kind in ((SEED_CONDITIONS, CONDITION), (SEED_TREATMENTS, TREATMENT)):
        for seed in seeds:
            names.setdefault(name_key(seed), kind)
            surface.setdefault(name_key(seed), seed)
    for text in texts:
        for kind, start, end in _named_spans(text):
            phrase = text[start:end]
            key = name_key(phrase)
            names.setdefault(key, kind)
            surface.setdefault(key, phrase.casefold())
            abbreviation = _ABBREVIATION.match(text, end + 1) if text[end : end + 2] == " (" else None
            if abbreviation is not None:
                alias = name_key(abbreviation.group(1))
                aliases.setdefault(alias, key)
                surface.setdefault(alias, abbreviation.group(1))
    return Lexicon(names=names, surface=surface, aliases=aliases)


def _name_terms(sentence: str, lexicon: Lexicon) -> list[FactTerm]:
    """Condition and treatment names in ``sentence``: harvested phrases, lexicon abbreviations, seeds."""
    found = [
        FactTerm(sentence[start:end], kind, start, end, name_key(sentence[start:end]))
        for kind, start, end in _named_spans(sentence)
    ]
    for word in _WORDISH.finditer(sentence):
        text = word.group(0)
        key = lexicon.aliases.get(name_key(text))
        if text[:2].isupper() and key is not None:  # an abbreviation the corpus defines
            found.append(FactTerm(text, lexicon.names.get(key, CONDITION), word.start(), word.end(), key))
    return found


def _pattern_terms(sentence: str) -> list[FactTerm]:
    found: list[FactTerm] = []
    for kind, pattern in (
        (PERCENT, _PERCENT_RE),
        (AGE, _AGE_RE),
        (DURATION, _DURATION_RE),
        (NUMBER, _NUMBER_RE),
    ):
        for m in pattern.finditer(sentence):
            found.append(FactTerm(m.group(0), kind, m.start(), m.end(), value_key(m.group(0))))
    for m in _QUANTIFIER_RE.finditer(sentence):
        found.append(
            FactTerm(m.group(0), QUANTIFIER, m.start(), m.end(), _QUANTIFIER_OF[m.group(0).casefold()])
        )
    for m in _NEGATION_RE.finditer(sentence):
        found.append(FactTerm(m.group(0), NEGATION, m.start(), m.end(), "not"))
    return found


def value_key(text: str) -> str:
    """Numbers as digits, units singular, articles as one: "two weeks" → "2 week", "a month" → "1 month"."""
    words = re.findall(r"\d+(?:[.,]\d+)?|[A-Za-z]+|%", text.casefold())
    out: list[str] = []
    for word in words:
        if word in _NUMBER_WORDS:
            value = _NUMBER_WORDS[word]
            out.append(str(int(value)) if value == int(value) else str(value))
        elif word in ("a", "an"):
            out.append("1")
        elif word in ("percent", "per", "cent", "%"):
            if "%" not in out:
                out.append("%")
        elif word in ("of", "about", "aged", "age", "ages", "old"):
            continue
        else:
            out.append(word.rstrip("s") if len(word) > 3 else word)
    return " ".join(out)


def fact_terms(sentence: str, lexicon: Lexicon) -> list[FactTerm]:
    """The fact-bearing terms of ``sentence``, in order; where two overlap, the longer one.

    A percentage, an age or a duration wins over the bare number inside it; "panic disorder" over
    "disorder".
    """
    candidates = _pattern_terms(sentence) + _name_terms(sentence, lexicon)
    candidates.sort(key=lambda t: (-(t.end - t.start), t.start))
    kept: list[FactTerm] = []
    for term in candidates:
        if all(term.end <= k.start or term.start >= k.end for k in kept):
            kept.append(term)
    return sorted(kept, key=lambda t: t.start)


def corpus_terms(texts: Iterable[str], lexicon: Lexicon) -> dict[str, Counter[str]]:
    """Every term written in ``texts``, by kind, counted by written form (lower-cased).

    For distractors: swap a term for another of the same kind that the corpus also uses.
    """
    found: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    for text in texts:
        for sentence in text_sentences(text):
            for term in fact_terms(sentence, lexicon):
                found[term.kind][term.text.casefold()] += 1
    return found


def replace_term(sentence: str, term: FactTerm, replacement: str) -> str:
    """``sentence`` with ``term`` replaced (the first letter capitalised where a capitalised term
    opened it; a list item that opens in lower case stays so, or the case alone would give it away)."""
    if term.start == 0 and replacement and term.text[:1].isupper():
        replacement = replacement[:1].upper() + replacement[1:]
    return sentence[: term.start] + replacement + sentence[term.end :]


def terms_of_kind(terms: Sequence[FactTerm], kind: str) -> list[FactTerm]:
    return [t for t in terms if t.kind == kind]
