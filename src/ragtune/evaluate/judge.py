"""The LLM judge: a 1–10 score per answer, and pairwise verdicts asked in both orders.

Requests go through the LLM layer (cache, retries, budget, progress). Replies are read by the
tolerant parsers in :mod:`ragtune.evaluate.parsing`; a failed request or an unparseable reply is
a :class:`JudgeFailure` with its reason and the raw reply, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ragtune.core.config import LLMEndpoint
from ragtune.core.llm import ChatModel, ChatRequest, LLMFailure
from ragtune.evaluate.parsing import (
    JudgeScore,
    PairVerdict,
    parse_judge_score,
    parse_pairwise_verdict,
)
from ragtune.evaluate.prompts import clip_context, pairwise_prompt, score_prompt
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
    ) -> None:
        self.model = model
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
        prompt = score_prompt(case.question, case.reference, context, answer)
        return self._request(prompt, SCORE_PREFILL, SCORE_SCHEMA)

    def pair_request(self, case: Case, answer_a: str, answer_b: str) -> ChatRequest:
        context = clip_context(case.context, self.context_chars)
        prompt = pairwise_prompt(case.question, case.reference, context, answer_a, answer_b)
        return self._request(prompt, PAIRWISE_PREFILL, PAIRWISE_SCHEMA)

    def score(
        self, jobs: Sequence[tuple[Case, str]], desc: str = "judge scores"
    ) -> list[JudgeScore | JudgeFailure]:
        """A score (or a failure) for each ``(case, answer)``, in order."""
        replies = self.model.chat_many([self.score_request(case, answer) for case, answer in jobs], desc)
        results: list[JudgeScore | JudgeFailure] = []
        for reply in replies:
            if isinstance(reply, LLMFailure):
                results.append(JudgeFailure(reason=f"judge request failed: {reply.reason}"))
                continue
            parsed = parse_judge_score(reply.text)
            results.append(
                parsed
                if parsed is not None
                else JudgeFailure(reason="unparseable judge reply", raw=reply.text[:_RAW_CHARS])
            )
        return results

    def compare(
        self, jobs: Sequence[tuple[Case, str, str]], desc: str = "judge pairwise"
    ) -> list[PairJudgement]:
        """For each ``(case, first, second)``: ask with first as A, then with first as B; combine."""
        requests = []
        for case, first, second in jobs:
            requests += [self.pair_request(case, first, second), self.pair_request(case, second, first)]
        replies = self.model.chat_many(requests, desc)
        results = []
        for index in range(len(jobs)):
            verdicts: list[Verdict | None] = []
            errors: list[str] = []
            for order, reply in zip(
                ("first as A", "first as B"), replies[2 * index : 2 * index + 2], strict=True
            ):
                if isinstance(reply, LLMFailure):
                    verdicts.append(None)
                    errors.append(f"{order}: judge request failed: {reply.reason}")
                    continue
                parsed: PairVerdict | None = parse_pairwise_verdict(reply.text)
                verdicts.append(parsed.winner if parsed else None)
                if parsed is None:
                    errors.append(f"{order}: unparseable judge reply: {reply.text[:_RAW_CHARS]!r}")
            results.append(
                PairJudgement(
                    first_as_a=verdicts[0],
                    first_as_b=verdicts[1],
                    outcome=combine_orders(verdicts[0], verdicts[1]),
                    error="; ".join(errors) or None,
                )
            )
        return results
