"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, TGI, llama.cpp, Ollama, LiteLLM, ...).

The client is ``openai.AsyncOpenAI`` with its own retries switched off: retries happen here, on 429
(and 408), 5xx, timeouts and connection errors, up to ``endpoint.max_retries`` times, with the
backoff and ``Retry-After`` parsing of ``core.retry`` (the loop itself is async and per attempt, so
it is not ``call_with_retries``). Any other 4xx fails the request at once with its status.

Each attempt holds a slot of the endpoint's :class:`~ragtune.core.llm.limiter.AdaptiveLimiter`:
429/503/timeouts cut the concurrency, and a ``Retry-After`` pauses the whole endpoint, not just the
request that got it. Each attempt is also admitted and settled by the ledger (``ledger.py``), so a
budget counts retries that were paid for (timeouts, garbled replies).

JSON: a request with a ``json_schema`` asks for ``response_format={"type": "json_schema", ...}``;
with only ``json_mode`` for ``{"type": "json_object"}``. A server that answers 400 to a response
format gets the next weaker one (schema -> object -> none), once per request; once a weaker format
succeeded, later requests start there.

Prefill: continuing a trailing assistant message is not part of the OpenAI API (some servers do it,
most do not), so the prefill is *not* sent as an assistant message. Instead the last message asks
the model to start its reply with the prefill text, and the reply is returned as the model wrote it
(nothing is prepended). JSON parsing looks for the object wherever it starts, so this is enough for
structured output; strong models follow the instruction anyway.

The request goes through the client's generic ``post`` (the SDK's documented way to call any
endpoint) with a plain JSON body and a plain JSON reply: the SDK's typed request transformation and
response models cost more CPU per request than everything else here together, and a plain body
passes server-specific parameters through unchanged. Auth, base URL, timeouts and the SDK's error
classes are the same as for ``chat.completions.create``.

The API key is read from ``endpoint.api_key_env`` when the client is built and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import openai

from ragtune.core.cache import ContentCache
from ragtune.core.config import LLMEndpoint
from ragtune.core.endpoints import OPENAI_URL, credential_for, plain_http
from ragtune.core.llm.base import BUDGET_EXHAUSTED, ChatModel, ChatRequest, ChatResponse, LLMCallError
from ragtune.core.llm.ledger import TokenLedger, estimate_prompt_tokens
from ragtune.core.llm.limiter import AdaptiveLimiter
from ragtune.core.retry import RetryPolicy, retry_after_seconds

log = logging.getLogger(__name__)

#: First backoff step in seconds (tests lower it); retry n waits in [c/2, c], c = min(max, base * 2**n)
#: (``core.retry.RetryPolicy``, shared with every other HTTP client).
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
#: Statuses below 500 that are retried (rate limit, request timeout); any other 4xx fails at once.
RETRY_STATUSES = frozenset({408, 429})
#: Statuses that mean "too much load": the endpoint's adaptive concurrency is cut (see limiter.py).
OVERLOAD_STATUSES = frozenset({429, 503})

# the client of the current run, per model (see ChatModel._session)
_CLIENTS: ContextVar[dict[int, openai.AsyncOpenAI]] = ContextVar("ragtune_openai_clients", default={})  # noqa: B039

# response_format levels, strongest first
_SCHEMA, _OBJECT, _NONE = 2, 1, 0


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for: ``retry-after-ms`` (OpenAI's), else ``Retry-After`` (seconds or an
    HTTP date), capped as ``core.retry`` caps it; ``None`` when absent or not a finite time."""
    try:
        milliseconds = float(headers.get("retry-after-ms") or "nan")
    except ValueError:
        milliseconds = math.nan
    if math.isfinite(milliseconds):
        return retry_after_seconds(repr(milliseconds / 1000))
    return retry_after_seconds(headers.get("retry-after"))


def _short(text: object, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _status_detail(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return _short(message)
    return _short(err.message)


class OpenAIChat(ChatModel):
    """Chat completions from an OpenAI-compatible server at ``endpoint.base_url``."""

    meters_attempts = True  # every attempt is admitted and settled: retries can cost money too

    def __init__(
        self,
        endpoint: LLMEndpoint,
        *,
        cache: ContentCache | None = None,
        ledger: TokenLedger | None = None,
        seed: int = 0,
        backoff_base_s: float | None = None,
        backoff_max_s: float | None = None,
    ) -> None:
        if not endpoint.base_url:
            raise ValueError("OpenAIChat needs endpoint.base_url")
        super().__init__(f"openai:{endpoint.model}", cache=cache, ledger=ledger, seed=seed, endpoint=endpoint)
        self.endpoint = endpoint
        self.concurrency = endpoint.concurrency
        self.limiter = AdaptiveLimiter(
            endpoint.concurrency, adaptive=endpoint.adaptive_concurrency, name=self.name
        )
        self.backoff = RetryPolicy(
            max_retries=endpoint.max_retries,
            base_s=BACKOFF_BASE_S if backoff_base_s is None else backoff_base_s,
            max_s=BACKOFF_MAX_S if backoff_max_s is None else backoff_max_s,
        )
        self._format_ceiling = _SCHEMA  # lowered once the server has refused a format

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        """One ``AsyncOpenAI`` client per run: clients belong to the event loop they were made in."""
        http_client = (
            openai.DefaultAsyncHttpxClient(verify=False) if plain_http(self.endpoint.base_url) else None
        )
        client = openai.AsyncOpenAI(
            base_url=self.endpoint.base_url,
            api_key=credential_for(self.endpoint.base_url or OPENAI_URL, self.endpoint.api_key_env)
            or "not-needed",
            timeout=self.endpoint.timeout_s,
            max_retries=0,
            http_client=http_client,
        )
        token = _CLIENTS.set({**_CLIENTS.get(), id(self): client})
        try:
            yield
        finally:
            _CLIENTS.reset(token)
            await client.close()

    def concurrency_level(self) -> int:
        return self.limiter.level

    def _log_concurrency(self) -> None:
        log.info("%s: %s", self.name, self.limiter.summary())

    def _messages(self, request: ChatRequest) -> list[dict[str, str]]:
        messages = [dict(m) for m in request.messages]
        if request.prefill and messages:
            messages[-1]["content"] = (
                f"{messages[-1].get('content', '')}\n\nStart your reply with exactly: {request.prefill}"
            )
        return messages

    @staticmethod
    def _response_format(request: ChatRequest, level: int) -> dict[str, Any] | None:
        if level >= _SCHEMA and request.json_schema is not None:
            return {"type": "json_schema", "json_schema": request.json_schema}
        if level >= _OBJECT and (request.json_mode or request.json_schema is not None):
            return {"type": "json_object"}
        return None

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        client = _CLIENTS.get().get(id(self))
        if client is None:
            raise LLMCallError("no client: requests are sent by chat_many", attempts=0)
        params: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": self._messages(request),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            params["seed"] = request.seed
        level = self._format_ceiling
        downgraded = False
        attempts = 0
        retries = 0
        while True:
            attempts += 1
            response_format = self._response_format(request, level)
            call = dict(params)
            if response_format is not None:
                call["response_format"] = response_format
            delay: float | None = None
            endpoint_paused = False  # the limiter holds every request until the Retry-After has passed
            reservation = await self._admit(*self.worst_case([request]))
            if reservation is None:
                raise LLMCallError(BUDGET_EXHAUSTED, attempts - 1)
            estimate = (reservation.prompt_tokens, reservation.completion_tokens)
            paid: tuple[int, int] | None = None  # what the attempt cost; None: the server charged nothing
            try:
                async with self.limiter.slot() as slot:
                    try:
                        async with asyncio.timeout(self.endpoint.timeout_s):
                            completion = await client.post("/chat/completions", cast_to=object, body=call)
                    except openai.APIStatusError as err:
                        status = err.status_code
                        if status == 400 and response_format is not None:
                            level = _OBJECT if response_format["type"] == "json_schema" else _NONE
                            downgraded = True
                            log.info(
                                "%s refused response_format %s; trying without",
                                self.name,
                                response_format["type"],
                            )
                            continue
                        if status not in RETRY_STATUSES and status < 500:
                            raise LLMCallError(f"HTTP {status}: {_status_detail(err)}", attempts) from None
                        problem = f"HTTP {status}: {_status_detail(err)}"
                        delay = retry_after(err.response.headers)
                        if status in OVERLOAD_STATUSES:
                            slot.outcome = "overload"
                            # the server asked the client, not one request
                            endpoint_paused = delay is not None and self.limiter.pause(delay)
                    except (openai.APITimeoutError, TimeoutError):
                        paid = estimate  # the server may have generated the whole reply
                        problem = f"timeout after {self.endpoint.timeout_s:g} s"
                        slot.outcome = "overload"
                    except openai.APIConnectionError as err:
                        problem = f"connection error: {_short(err.__cause__ or err.message)}"
                        slot.outcome = "overload"
                    except openai.APIError as err:  # e.g. a 200 whose body is not a completion
                        paid = estimate
                        raise LLMCallError(f"bad response: {_short(err.message)}", attempts) from None
                    except ValueError as err:
                        # a body cut off or garbled on the way: transient, like a dropped connection
                        paid = estimate
                        problem = f"invalid response body ({type(err).__name__})"
                    else:
                        slot.outcome = "ok"
                        if downgraded and level < self._format_ceiling:
                            self._format_ceiling = level
                        paid = estimate  # a 200 is paid even when its body is no use
                        response = self._to_response(completion, request, attempts)
                        paid = (response.prompt_tokens, response.completion_tokens)
                        return response
            finally:
                await self._settle(reservation, *(paid or (0, 0)), calls=int(paid is not None))
            if retries >= self.endpoint.max_retries:
                suffix = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
                raise LLMCallError(problem + suffix, attempts)
            retries += 1
            self._stats["retries"] += 1
            if endpoint_paused:
                log.debug("%s: %s; retry %d after the endpoint's pause", self.name, problem, retries)
                continue
            wait = delay if delay is not None else self.backoff.backoff_s(retries - 1)
            log.debug("%s: %s; retry %d in %.2f s", self.name, problem, retries, wait)
            await asyncio.sleep(wait)

    def _to_response(self, completion: Any, request: ChatRequest, attempts: int) -> ChatResponse:
        """A ``chat.completion`` JSON object as a :class:`ChatResponse`."""
        if not isinstance(completion, dict):
            raise LLMCallError(
                f"bad response: expected a JSON object, got {type(completion).__name__}", attempts
            )
        choices = completion.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise LLMCallError("bad response: no choices", attempts)
        message = choices[0].get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            refusal = message.get("refusal") if isinstance(message, dict) else None
            finish = choices[0].get("finish_reason")
            raise LLMCallError(
                f"refused: {_short(refusal)}" if refusal else f"empty reply (finish_reason={finish})",
                attempts,
            )
        usage = completion.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            prompt_tokens = usage["prompt_tokens"]
            completion_tokens = usage.get("completion_tokens") or 0
        else:  # some servers omit usage: estimate (4 characters a token) so budgets still bind
            prompt_tokens = estimate_prompt_tokens(request.messages)
            completion_tokens = len(text) // 4 + 1
        return ChatResponse(
            text=text,
            model=str(completion.get("model") or self.endpoint.model),
            prompt_tokens=prompt_tokens,
            completion_tokens=int(completion_tokens),
        )
