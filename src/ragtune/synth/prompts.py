"""The requests the synthesis stage sends, and the JSON replies it expects.

Every request is a pure function of its inputs — the chunk (for a question), the question and its
retrieved chunks (for an answer), the template and the sampling parameters — and never of run ids
or timestamps, so the LLM response cache answers any request already made by an earlier or
interrupted run, and a changed document only changes the requests that read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from ragtune.core.llm import ChatRequest
from ragtune.core.records import Chunk
from ragtune.core.templates import Template, TemplateSet
from ragtune.synth.categories import SEPARATOR

QUESTION_PREFILL = '{"question": "'
ANSWER_PREFILL = '{"answer": "'
JUDGE_PREFILL = '{"score": '
ENTAILMENT_PREFILL = '{"unsupported": ['


def synth_templates(templates_dir: str | Path | None = None) -> TemplateSet:
    """The packaged synthesis templates, each replaced by a same-named file in ``templates_dir``."""
    return TemplateSet("ragtune.synth", templates_dir, setting="synth.templates_dir")


class QuestionReply(BaseModel):
    question: str


class AnswerReply(BaseModel):
    answer: str
    citations: list[str] = Field(default_factory=list)

    @field_validator("citations", mode="before")
    @classmethod
    def _as_string_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str | int):
            value = [value]
        if isinstance(value, list):
            return [str(item) for item in value if isinstance(item, str | int)]
        return value


class JudgeReply(BaseModel):
    score: float = Field(ge=1, le=5)
    reason: str = ""


class EntailmentReply(BaseModel):
    """The judge's verdict on numbered claims: which are not supported by their source sentence."""

    unsupported: list[int] = Field(default_factory=list)


def heading_path(chunk: Chunk) -> str:
    return SEPARATOR.join(chunk.section_path)


def _context_values(chunks: Sequence[Chunk]) -> list[dict[str, str]]:
    return [{"id": c.chunk_id, "heading_path": heading_path(c), "text": c.text} for c in chunks]


def json_request(
    prompt: str, prefill: str, seed: int, *, temperature: float | None = None, max_tokens: int | None = None
) -> ChatRequest:
    """One user message asking for JSON, the reply prefilled; unset sampling takes the endpoint's."""
    sampling: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
    return ChatRequest(
        messages=[{"role": "user", "content": prompt}],
        prefill=prefill,
        json_mode=True,
        seed=seed,
        **{key: value for key, value in sampling.items() if value is not None},
    )


def question_request(
    template: Template,
    chunk: Chunk,
    question_type: str,
    seed: int,
    temperature: float,
    max_tokens: int,
) -> ChatRequest:
    prompt = template.render(
        chunk_text=chunk.text, heading_path=heading_path(chunk), question_type=question_type
    )
    return json_request(prompt, QUESTION_PREFILL, seed, temperature=temperature, max_tokens=max_tokens)


def answer_request(
    template: Template,
    question: str,
    contexts: Sequence[Chunk],
    seed: int,
    temperature: float,
    max_tokens: int,
) -> ChatRequest:
    prompt = template.render(question=question, contexts=_context_values(contexts))
    return json_request(prompt, ANSWER_PREFILL, seed, temperature=temperature, max_tokens=max_tokens)


def judge_request(template: Template, question: str, answer: str, contexts: Sequence[Chunk]) -> ChatRequest:
    """Temperature and max_tokens are left to the judge endpoint's configuration."""
    prompt = template.render(question=question, answer=answer, contexts=_context_values(contexts))
    return json_request(prompt, JUDGE_PREFILL, seed=0)


def entailment_request(template: Template, pairs: Sequence[tuple[str, str]]) -> ChatRequest:
    """One request per answer: its sentences beside their aligned source sentences (judge settings)."""
    prompt = template.render(pairs=[{"claim": claim, "source": source} for claim, source in pairs])
    return json_request(prompt, ENTAILMENT_PREFILL, seed=0)


def resolve_citations(citations: Sequence[str], contexts: Sequence[Chunk]) -> list[str]:
    """Chunk ids the citations name: a full id, an id prefix of 6+ characters, or a 1-based position."""
    ids = [c.chunk_id for c in contexts]
    found: list[str] = []
    for raw in citations:
        token = raw.strip().strip("[]()<>#").strip()
        match: str | None = None
        if token in ids:
            match = token
        elif token.isdigit() and 1 <= int(token) <= len(ids):
            match = ids[int(token) - 1]
        elif len(token) >= 6:
            prefixed = [i for i in ids if i.startswith(token)]
            match = prefixed[0] if len(prefixed) == 1 else None
        if match is not None and match not in found:
            found.append(match)
    return found
