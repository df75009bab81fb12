"""The LLM judge: a 1–10 score per answer, and pairwise verdicts asked in both orders.

Requests go through the LLM layer's structured-output path like every other structured request
(template, pydantic schema, prefill for the weak local judge, one repair request): a reply that is
not valid JSON for the schema is first read by the tolerant parsers in
:mod:`ragtune.evaluate.parsing` (``Score: 7/10``, JSON cut off after the score), and only garbage
costs a repair. A failed request or a reply unreadable even after its repair is a
:class:`JudgeFailure` with its reason and the raw reply, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ragtune.core.config import LLMEndpoint
from ragtune.core.llm import MALFORMED, ChatModel, ChatRequest, LLMFailure
from ragtune.core.templates import TemplateSet
from ragtune.evaluate.parsing import (
    JudgeScore,
    PairVerdict,
    parse_judge_score,
    parse_pairwise_verdict,
)
from ragtune.evaluate.prompts import PAIRWISE_TEMPLATE, SCORE_TEMPLATE, clip_context, evaluation_templates
from ragtune.evaluate.stats import Outcome, Verdict, combine_orders

SCORE_PREFILL = '{"score": '
PAIRWISE_PREFILL = '{"winner": "'
_RAW_CHARS = 500

SCORE_SCHEMA: dict[str, Any] = {
    "name": "judge_score",
    "schema": {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 1, "maximum": 10},
            "reason": {"type": "string"},
        },
        "required": ["score", "reason"],
        "additionalProperties": False,
    },
}
PAIRWISE_SCHEMA: dict[str, Any] = {
    "name": "judge_pairwise",
    "schema": {
        "type": "object",
        "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]}, "reason": {"type": "string"}},
        "required": ["winner", "reason"],
        "additionalProperties": False,
    },
}


class JudgeFailure(BaseModel):
    """No usable judgement: the request failed, or the reply could not be parsed."""

    reason: str
    raw: str | None = None

    @classmethod
    def of(cls, failure: LLMFailure) -> JudgeFailure:
        """Why the structured request gave no judgement: unreadable replies keep their text."""
        if failure.reason.startswith(MALFORMED):
            return cls(reason="unparseable judge reply", raw=(failure.raw or "")[:_RAW_CHARS] or None)
        return cls(reason=f"judge request failed: {failure.reason}")


class Case(BaseModel):
    """What the judge sees of one eval item besides the answer(s)."""

    question: str
    reference: str
    context: list[str]


class PairJudgement(BaseModel):
    """Both orderings of one comparison and their combination, from the first answer's side."""

    first_as_a: Verdict | None
    first_as_b: Verdict | None
    outcome: Outcome | None
    error: str | None = None


def is_weak_judge(endpoint: LLMEndpoint) -> bool:
    """The packaged local model judges when no endpoint is set: too small to trust its scores."""
    return not endpoint.base_url


class Judge:
    """Builds the judge's requests for ``model`` and reads its replies."""

    def __init__(
        self,
        model: ChatModel,
        *,
        weak: bool,
        max_tokens: int | None = None,
        context_chars: int = 6000,
        seed: int = 0,
        templates: TemplateSet | None = None,
    ) -> None:
        self.model = model
        self.templates = templates or evaluation_templates()
        self.weak = weak
        self.max_tokens = max_tokens
        self.context_chars = context_chars
        self.seed = seed

    def _request(self, prompt: str, prefill: str, schema: dict[str, Any]) -> ChatRequest:
        fields: dict[str, Any] = {
            "messages": [{"role": "user", "content": prompt}],
            "seed": self.seed,
            "json_mode": True,
            "json_schema": schema,
        }
        if self.weak:
            fields["prefill"] = prefill  # a 135M model only writes JSON when its reply is started
        if self.max_tokens is not None:
            fields["max_tokens"] = self.max_tokens  # unset: the endpoint's max_tokens
        return ChatRequest(**fields)

    def score_request(self, case: Case, answer: str) -> ChatRequest:
        context = clip_context(case.context, self.context_chars)
        prompt = self.templates.get(SCORE_TEMPLATE).render(
            question=case.question, reference=case.reference, context=context, answer=answer
        )
        return self._request(prompt, SCORE_PREFILL, SCORE_SCHEMA)

    def pair_request(self, case: Case, answer_a: str, answer_b: str) -> ChatRequest:
        context = clip_context(case.context, self.context_chars)
        prompt = self.templates.get(PAIRWISE_TEMPLATE).render(
            question=case.question,
            reference=case.reference,
            context=context,
            answer_a=answer_a,
            answer_b=answer_b,
        )
        return self._request(prompt, PAIRWISE_PREFILL, PAIRWISE_SCHEMA)

    def score(
        self, jobs: Sequence[tuple[Case, str]], desc: str = "judge scores"
    ) -> list[JudgeScore | JudgeFailure]:
        """A score (or a failure) for each ``(case, answer)``, in order."""
        requests = [self.score_request(case, answer) for case, answer in jobs]
        replies = self.model.structured_many(requests, JudgeScore, desc, lenient=parse_judge_score)
        return [JudgeFailure.of(r) if isinstance(r, LLMFailure) else r for r in replies]

    def compare(
        self, jobs: Sequence[tuple[Case, str, str]], desc: str = "judge pairwise"
    ) -> list[PairJudgement]:
        """For each ``(case, first, second)``: ask with first as A, then with first as B; combine."""
        requests = []
        for case, first, second in jobs:
            requests += [self.pair_request(case, first, second), self.pair_request(case, second, first)]
        replies = self.model.structured_many(requests, PairVerdict, desc, lenient=parse_pairwise_verdict)
        results = []
        for index in range(len(jobs)):
            verdicts: list[Verdict | None] = []
            errors: list[str] = []
            for order, reply in zip(
                ("first as A", "first as B"), replies[2 * index : 2 * index + 2], strict=True
            ):
                if isinstance(reply, LLMFailure):
                    failure = JudgeFailure.of(reply)
                    verdicts.append(None)
                    detail = f": {failure.raw!r}" if failure.raw else ""
                    errors.append(f"{order}: {failure.reason}{detail}")
                else:
                    verdicts.append(reply.winner)
            results.append(
                PairJudgement(
                    first_as_a=verdicts[0],
                    first_as_b=verdicts[1],
                    outcome=combine_orders(verdicts[0], verdicts[1]),
                    error="; ".join(errors) or None,
                )
            )
        return results
