"""The one LLM interface every stage talks to, whichever backend answers.

Backends (``openai_backend.OpenAIChat`` for any OpenAI-compatible server, ``local_backend.LocalChat``
for the packaged SmolLM2) implement :meth:`ChatModel._complete`; everything around it — the
persistent response cache, the token ledger and budget, structured output with one repair retry,
bounded concurrency and progress — lives here once, so both backends behave the same.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ChatRequest(BaseModel):
    """One chat completion. ``prefill`` starts the assistant's reply (steers weak models to JSON)."""

    messages: list[dict[str, str]]
    max_tokens: int = 512
    temperature: float = 0.7
    seed: int | None = None
    prefill: str | None = None
    json_mode: bool = False


class ChatResponse(BaseModel):
    text: str = Field(description="The reply, including the prefill if one was given.")
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


class LLMFailure(BaseModel):
    """A request that could not be answered after retries; recorded, never dropped."""

    reason: str
    attempts: int = 1
