"""Test doubles for the evaluate stage: scripted answerers, a scripted judge, a tiny encoder."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ragtune.core.llm import ChatModel, ChatRequest, ChatResponse
from tests.llm.fake_openai import last_user_message


class ScriptedAnswerer(ChatModel):
    """Answers each question with ``answer(question)``; counts the questions it was asked."""

    def __init__(self, name: str, answer: Callable[[str], str], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.answer = answer
        self.asked: list[str] = []

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        question = next(m["content"] for m in reversed(request.messages) if m["role"] == "user")
        self.asked.append(question)
        return ChatResponse(text=self.answer(question), model=self.name)


class WordHashEncoder:
    """Bag of hashed words: texts sharing words are similar. Stands in for the embedder in fast tests."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.sha256(word.encode()).hexdigest(), 16) % 64] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def between(text: str, tag: str) -> str:
    match = re.search(rf"<{tag}>\n(.*?)\n</{tag}>", text, re.DOTALL)
    return match.group(1) if match else ""


def judge_responder(body: dict[str, Any]) -> str:
    """A judge with known behaviour, for :class:`tests.llm.fake_openai.FakeOpenAI`.

    Contender answers (model ``contender-model``) are ``"contender: <question>"``. As judge it scores
    answers containing ``TUNED`` 9, ``GARBAGE`` answers with prose (a judge failure) and anything
    else 3; pairwise, it prefers the ``TUNED`` answer against ``base`` whatever the order, and
    always picks position A against the contender (pure position bias, which must cancel to a tie).
    """
    prompt = last_user_message(body)
    if body.get("model") == "contender-model":
        return f"contender GARBAGE: {prompt}"
    if "<answer>" in prompt:
        answer = between(prompt, "answer")
        if "TUNED" in answer:
            return json.dumps({"score": 9, "reason": "matches the reference"})
        if "GARBAGE" in answer:
            return "I am unable to grade this answer, sorry."
        return "```json\n" + json.dumps({"score": 3, "reason": "vague"}) + "\n```"
    if "<answer_a>" in prompt:
        a, b = between(prompt, "answer_a"), between(prompt, "answer_b")
        if "GARBAGE" in a or "GARBAGE" in b:
            return json.dumps({"winner": "A", "reason": "first is best"})
        return json.dumps({"winner": "A" if "TUNED" in a else "B", "reason": "cites the context"})
    return "unexpected prompt"


class PrefillJudge(ChatModel):
    """Plays the weak local judge: continues the prefill it is given (only weak judges get one).

    Scores answers containing ``TUNED`` 9, others 2 with a reply cut off mid-reason (the partial
    JSON path); pairwise it picks the ``TUNED`` answer whatever its position.
    """

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        assert request.prefill in {'{"score": ', '{"winner": "'}, request.prefill
        prompt = request.messages[-1]["content"]
        if request.prefill == '{"score": ':
            tail = '9, "reason": "ok"}' if "TUNED" in between(prompt, "answer") else '2, "reason": "cut off'
        else:
            tail = 'A"}' if "TUNED" in between(prompt, "answer_a") else 'B"}'
        return ChatResponse(text=request.prefill + tail, model=self.name)
