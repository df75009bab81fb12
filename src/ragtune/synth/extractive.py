"""Extractive answers: the source sentences that answer a question, joined, so no fact is invented.

A weak teacher (the packaged 135M SmolLM2) writes fluent sentences from a chunk's words that say
something the chunk does not. In extractive mode (``synth.answer_mode``) the answer is instead
made of the retrieved chunks' own sentences: each complete sentence is scored by the embedding
cosine with the question, the best one is taken with up to ``max_sentences - 1`` more that score
within ``margin`` of it, and they are joined in source order with nothing added but spaces. With
``synth.extractive_choice: model`` the generator picks among the best-scored sentences, numbered,
instead (a strong model tells which sentences answer better than a cosine does); a reply that
names none of them falls back to the retrieval pick. Either way the answer cites the chunks its
sentences came from, and which sentences were used is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field, field_validator

from ragtune.core.llm import ChatRequest
from ragtune.core.templates import Template
from ragtune.synth.faithfulness import SourceSentence
from ragtune.synth.filters import source_reference
from ragtune.synth.prompts import json_request

CHOICE_PREFILL = '{"sentences": ['
MIN_SENTENCE_CHARS = 20
_COMPLETE = re.compile(r"^[A-Z0-9\"'(].*[.!?][\"')\]]*$", re.DOTALL)
# A sentence about the document itself ("This chapter covers ...") answers no question about the subject.
_ABOUT_THE_DOCUMENT = re.compile(
    r"\b(?:this|the|these|our|example) (?:chapters?|sections?|book|reference|corpus|documents?|guide)\b", re.I
)
# A sentence opening with one of these leans on the one before it for what it is about.
_NEEDS_ANTECEDENT = re.compile(r"^(?:It|They|These|This|Those|Such|Its|Their|He|She|Both)\b")


class ChoiceReply(BaseModel):
    """The generator's pick: 1-based numbers of the listed sentences."""

    sentences: list[int] = Field(default_factory=list)

    @field_validator("sentences", mode="before")
    @classmethod
    def _as_int_list(cls, value: object) -> object:
        if isinstance(value, int | str):
            value = [value]
        if isinstance(value, list):
            return [
                int(v) for v in value if isinstance(v, int) or (isinstance(v, str) and v.strip().isdigit())
            ]
        return value


def answerable(sentence: SourceSentence) -> bool:
    """A complete sentence of the document's own (a chunk may open or close mid-sentence)."""
    text = sentence.text
    return (
        len(text) >= MIN_SENTENCE_CHARS
        and _COMPLETE.match(text) is not None
        and source_reference(text) is None
        and _ABOUT_THE_DOCUMENT.search(text) is None
    )


def with_antecedents(sources: Sequence[SourceSentence], picked: Sequence[int]) -> list[int]:
    """``picked``, each sentence that opens with a pronoun preceded by the sentence before it.

    "It combines stimulus control ..." says nothing on its own; with "Cognitive behavioural therapy
    for insomnia is the first-line treatment." before it, it does. Where that sentence is not among
    ``sources`` (cut off by the chunk, or not a complete sentence), the pronoun sentence is dropped.
    """
    position = {(s.chunk_id, s.index): n for n, s in enumerate(sources)}
    out: list[int] = []
    for i in picked:
        sentence = sources[i]
        if _NEEDS_ANTECEDENT.match(sentence.text):
            before = position.get((sentence.chunk_id, sentence.index - 1))
            if before is None:
                continue
            if before not in out:
                out.append(before)
        if i not in out:
            out.append(i)
    return out


def retrieval_pick(scores: np.ndarray, max_sentences: int, margin: float) -> list[int]:
    """The best-scored sentence and up to ``max_sentences - 1`` more within ``margin`` of it."""
    if not len(scores):
        return []
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    floor = float(scores[order[0]]) - margin
    return [i for i in order[:max_sentences] if float(scores[i]) >= floor]


def shortlist(scores: np.ndarray, size: int) -> list[int]:
    """Positions of the ``size`` best-scored sentences, best first (what the model chooses among)."""
    return [int(i) for i in np.argsort(-scores, kind="stable")[:size]]


def model_pick(reply: ChoiceReply, listed: Sequence[int], max_sentences: int) -> list[int]:
    """The listed sentences the reply names (1-based), first ``max_sentences``, without repeats."""
    picked: list[int] = []
    for number in reply.sentences:
        if 1 <= number <= len(listed) and listed[number - 1] not in picked:
            picked.append(listed[number - 1])
    return picked[:max_sentences]


@dataclass(frozen=True)
class Extract:
    answer: str
    citations: list[str]
    sentences: list[SourceSentence]


def compose(sources: Sequence[SourceSentence], picked: Sequence[int], chunk_order: Sequence[str]) -> Extract:
    """Join the picked sentences in source order (chunk as retrieved, then position in the chunk)."""
    rank = {chunk_id: n for n, chunk_id in enumerate(chunk_order)}
    chosen = sorted((sources[i] for i in picked), key=lambda s: (rank.get(s.chunk_id, len(rank)), s.index))
    citations = list(dict.fromkeys(s.chunk_id for s in chosen))
    return Extract(answer=" ".join(s.text for s in chosen), citations=citations, sentences=chosen)


def choice_request(
    template: Template, question: str, sentences: Sequence[str], seed: int, max_tokens: int
) -> ChatRequest:
    """Ask the generator which of the numbered sentences answer the question (greedy, short reply)."""
    prompt = template.render(question=question, sentences=list(sentences))
    return json_request(prompt, CHOICE_PREFILL, seed, temperature=0.0, max_tokens=max_tokens)
