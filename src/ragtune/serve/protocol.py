"""The OpenAI chat-completions wire format: what a request may hold, and the replies built from it.

Requests are validated strictly (unknown fields and features we do not implement are a 400 naming
the field, rather than silently ignored). Replies are the ``openai`` package's own models
(``ChatCompletion``, ``ChatCompletionChunk``, ``Model``), so they are the shapes its client parses.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from openai.types import CompletionUsage, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragtune.core.llm.base import ChatRequest, ChatResponse

FinishReason = Literal["stop", "length"]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class Message(BaseModel):
    """One chat message; content is text, or a list of text parts (no images: a text-only model)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class CompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: the fields this server implements, each checked.

    Sampling is greedy at temperature 0 and top-k 50 sampling above it (the local generator's
    two modes); ``top_p`` other than 1, ``n`` other than 1, ``stop`` sequences, tools and
    logprobs are refused with the field named, since answering without them would be wrong.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float | None = None
    n: int | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | None = None

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, value: float | None) -> float | None:
        if value not in (None, 1, 1.0):
            raise ValueError("only 1 is supported (top-k 50 sampling at temperature > 0)")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only n=1 is supported")
        return value

    @field_validator("stop")
    @classmethod
    def _no_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value:
            raise ValueError("stop sequences are not supported")
        return value

    @field_validator("frequency_penalty", "presence_penalty")
    @classmethod
    def _no_penalty(cls, value: float | None) -> float | None:
        if value:
            raise ValueError("penalties are not supported (0 only)")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("logprobs are not supported")
        return value

    def chat_request(self, default_max_tokens: int, seed: int) -> ChatRequest:
        """The generator's request: messages as text, the token cap, temperature and seed."""
        return ChatRequest(
            messages=[{"role": _role(m.role), "content": m.text()} for m in self.messages],
            max_tokens=self.max_completion_tokens or self.max_tokens or default_max_tokens,
            temperature=self.temperature,
            seed=self.seed if self.seed is not None else seed,
        )


def _role(role: str) -> str:
    """OpenAI's ``developer`` role is the system prompt for chat templates that know only ``system``."""
    return "system" if role == "developer" else role


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def finish_reason(response: ChatResponse, max_tokens: int) -> FinishReason:
    return "length" if response.completion_tokens >= max_tokens else "stop"


def usage(response: ChatResponse) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens,
        total_tokens=response.prompt_tokens + response.completion_tokens,
    )


def completion(
    ident: str, model: str, created: int, response: ChatResponse, max_tokens: int
) -> ChatCompletion:
    """A whole (non-streaming) reply."""
    message = ChatCompletionMessage(role="assistant", content=response.text)
    return ChatCompletion(
        id=ident,
        object="chat.completion",
        created=created,
        model=model,
        choices=[Choice(index=0, message=message, finish_reason=finish_reason(response, max_tokens))],
        usage=usage(response),
    )


def chunk(
    ident: str,
    model: str,
    created: int,
    *,
    delta: ChoiceDelta | None = None,
    finish: FinishReason | None = None,
    usage_: CompletionUsage | None = None,
) -> ChatCompletionChunk:
    """One streamed event: a text delta, the finish reason, or (with no choice) the usage."""
    choices = [] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason=finish)]
    return ChatCompletionChunk(
        id=ident, object="chat.completion.chunk", created=created, model=model, choices=choices, usage=usage_
    )


def sse(event: BaseModel | str) -> bytes:
    """One server-sent event line as the OpenAI client reads it (``data: …`` and a blank line)."""
    data = event if isinstance(event, str) else event.model_dump_json(exclude_none=True)
    return f"data: {data}\n\n".encode()


def model_card(name: str, created: int) -> Model:
    return Model(id=name, created=created, object="model", owned_by="ragtune")


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope, which its client turns into a ``BadRequestError`` with this message."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def now() -> int:
    return int(time.time())
