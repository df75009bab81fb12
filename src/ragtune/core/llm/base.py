"""The one LLM interface every stage talks to, whichever backend answers.

Backends (``openai_backend.OpenAIChat`` for any OpenAI-compatible server, ``local_backend.LocalChat``
for the packaged SmolLM2) implement :meth:`ChatModel._complete` (and may override
:meth:`ChatModel._complete_batch` to answer several requests at once); everything around it — the
persistent response cache, the token ledger and budget, structured output with one repair retry,
order-preserving bounded concurrency, progress and stats — lives here once, so both backends
behave the same.

Guarantees of :meth:`ChatModel.chat_many`: one result per request, in request order, each a
:class:`ChatResponse` or an :class:`LLMFailure` with its reason; it never raises for a bad request.
Each response is written to the cache as soon as it arrives, so a killed run repeats no finished
call. Requests with the same cache key are sent once (vary ``seed`` for independent samples).
Every attempt is admitted by the ledger against the budget (see ``ledger.py``: its worst case is
reserved while it runs, so concurrency cannot multiply the overshoot); once the budget is reached
no new request is sent: the rest end as ``LLMFailure(reason="budget exhausted")`` while cached
responses are still served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError
from tqdm import tqdm

from ragtune.core.cache import ContentCache, cache_key
from ragtune.core.config import LLMEndpoint
from ragtune.core.llm.jsonparse import parse_json_object
from ragtune.core.llm.ledger import Admission, Reservation, TokenLedger, estimate_prompt_tokens

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")

BUDGET_EXHAUSTED = "budget exhausted"
MALFORMED = "malformed output"
#: Between a malformed reply and the reply to its repair request in :attr:`LLMFailure.raw`.
REPAIR_SEPARATOR = "\n--- repair reply ---\n"
#: How often a request waiting for the budget (this worker's requests in flight) checks again.
ADMIT_POLL_S = 0.01


class ChatRequest(BaseModel):
    """One chat completion. ``prefill`` starts the assistant's reply (steers weak models to JSON).

    ``temperature`` and ``max_tokens`` left unset take the endpoint's configured values.
    ``json_schema`` (``{"name": ..., "schema": {...}}``) is set by ``structured_many``; servers that
    support it constrain the reply to the schema, others fall back to plain JSON mode.
    """

    messages: list[dict[str, str]]
    max_tokens: int = 512
    temperature: float = 0.7
    seed: int | None = None
    prefill: str | None = None
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None


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
    raw: str | None = Field(None, description="The reply (and its repair) that could not be read, if any.")


class LLMCallError(Exception):
    """Raised by a backend's ``_complete`` for a request that failed for good (after its retries)."""

    def __init__(self, reason: str, attempts: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


def failure_from(err: BaseException) -> LLMFailure:
    """The :class:`LLMFailure` recording an exception raised while answering a request."""
    if isinstance(err, LLMCallError):
        return LLMFailure(reason=err.reason, attempts=err.attempts)
    message = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    return LLMFailure(reason=f"{type(err).__name__}: {message}" if message else type(err).__name__)


def run_sync(coro: Coroutine[Any, Any, R]) -> R:
    """Run ``coro`` to completion from synchronous code, even when called inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # a loop is running: use a fresh one
        return pool.submit(asyncio.run, coro).result()


def validation_summary(err: ValidationError, limit: int = 3) -> str:
    parts = []
    for item in err.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "<object>"
        parts.append(f"{where}: {item['msg']}")
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def validate_reply(text: str, schema: type[T]) -> tuple[T | None, str]:
    """Parse the first JSON object in ``text`` and validate it; ``(value, "")`` or ``(None, error)``."""
    obj = parse_json_object(text)
    if obj is None:
        return None, "no complete JSON object found in the reply"
    try:
        return schema.model_validate(obj), ""
    except ValidationError as err:
        return None, validation_summary(err)


class ChatModel(ABC):
    """A chat model with caching, budget, structured output and bounded concurrency.

    Subclasses set :attr:`concurrency` (batches in flight at once) and :attr:`batch_size` and
    implement :meth:`_complete`; a batching backend overrides :meth:`_complete_batch` and
    :meth:`_plan_batches`. :meth:`_session` brackets each run that sends requests (one event
    loop), e.g. to create and close an HTTP client.
    """

    concurrency: int = 1
    batch_size: int = 1
    #: True when the backend reserves and settles each attempt itself (retries cost money too);
    #: otherwise each batch is admitted and settled here.
    meters_attempts: bool = False

    def __init__(
        self,
        name: str,
        *,
        cache: ContentCache | None = None,
        ledger: TokenLedger | None = None,
        seed: int = 0,
        endpoint: LLMEndpoint | None = None,
    ) -> None:
        """``endpoint``: the configured temperature and max_tokens fill what a request leaves unset."""
        self.name = name
        self.cache = cache
        self.ledger = ledger or TokenLedger(stage="llm")
        self.seed = seed
        self.default_temperature = endpoint.temperature if endpoint else None
        self.default_max_tokens = endpoint.max_tokens if endpoint else None
        self._stats = {
            "requests": 0,  # requests handed to chat_many (repair requests included)
            "cache_hits": 0,
            "cache_misses": 0,
            "calls": 0,  # completions sent to the backend (retries not counted)
            "failures": 0,
            "retries": 0,  # transport retries (429, 5xx, timeouts, connection errors)
            "repairs": 0,  # structured-output repair requests
            "malformed": 0,  # structured requests still invalid after the repair
            "budget_skipped": 0,  # requests not sent because the budget was reached
            "rounds": 0,  # runs of chat_many that sent requests: round trips one after another
            "busy_ms": 0,  # wall time of those runs, first request to last answer (summed)
        }
        self._budget_logged = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def stats(self) -> dict[str, int]:
        """Counters of the requests so far, and ``concurrency``: the level in use (or settled on)."""
        return {**self._stats, "concurrency": self.concurrency_level()}

    def concurrency_level(self) -> int:
        """Batches allowed in flight now; adaptive backends report the level they settled on."""
        return self.concurrency

    # -- what a backend implements -------------------------------------------------------------

    @abstractmethod
    async def _complete(self, request: ChatRequest) -> ChatResponse:
        """Answer one request (with its retries); raise :class:`LLMCallError` when it fails for good."""

    async def _complete_batch(self, requests: list[ChatRequest]) -> list[ChatResponse | LLMFailure]:
        """Answer a batch planned by :meth:`_plan_batches`; default: each request on its own."""
        outcomes = await asyncio.gather(*(self._complete(r) for r in requests), return_exceptions=True)
        return [o if isinstance(o, ChatResponse) else failure_from(o) for o in outcomes]

    def _plan_batches(self, requests: list[ChatRequest]) -> list[list[int]]:
        """Group request positions into batches for :meth:`_complete_batch`; default: consecutive runs."""
        size = max(1, self.batch_size)
        return [list(range(i, min(i + size, len(requests)))) for i in range(0, len(requests), size)]

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        """Brackets each run that sends requests, inside its event loop (e.g. an HTTP client's life).

        Runs may overlap (concurrent ``achat_many`` calls, several threads), so per-run state
        belongs in a context variable, not on ``self``.
        """
        yield

    # -- budget ----------------------------------------------------------------------------------

    async def _admit(self, prompt_tokens: int, completion_tokens: int) -> Reservation | None:
        """Wait until the ledger admits an attempt of at most these tokens; ``None`` once the budget is spent."""
        while True:
            if self.ledger.shared is None:
                outcome = self.ledger.reserve(prompt_tokens, completion_tokens)
            else:  # reads the shared spend log: keep the event loop free
                outcome = await asyncio.to_thread(self.ledger.reserve, prompt_tokens, completion_tokens)
            if isinstance(outcome, Reservation):
                return outcome
            if outcome == Admission.EXHAUSTED:
                if not self._budget_logged:
                    log.warning(
                        "%s: %s; sending no further requests", self.name, self.ledger.exhausted_reason()
                    )
                    self._budget_logged = True
                return None
            await asyncio.sleep(ADMIT_POLL_S)  # this worker's own requests in flight may leave room

    async def _settle(
        self, reservation: Reservation, prompt_tokens: int, completion_tokens: int, calls: int
    ) -> None:
        """Record what an admitted attempt cost (0 and ``calls=0`` when nothing was paid)."""
        if self.ledger.shared is None:
            self.ledger.settle(reservation, prompt_tokens, completion_tokens, calls)
        else:
            await asyncio.to_thread(self.ledger.settle, reservation, prompt_tokens, completion_tokens, calls)

    @staticmethod
    def worst_case(requests: Sequence[ChatRequest]) -> tuple[int, int]:
        """Prompt tokens (estimated) and completion tokens (``max_tokens``) these requests can cost."""
        return (
            sum(estimate_prompt_tokens(r.messages) for r in requests),
            sum(r.max_tokens for r in requests),
        )

    # -- keys and cache ------------------------------------------------------------------------

    def resolve(self, request: ChatRequest) -> ChatRequest:
        """The request with the endpoint's defaults for unset temperature/max_tokens and the model seed."""
        update: dict[str, Any] = {}
        fields = request.model_fields_set
        if "temperature" not in fields and self.default_temperature is not None:
            update["temperature"] = self.default_temperature
        if "max_tokens" not in fields and self.default_max_tokens is not None:
            update["max_tokens"] = self.default_max_tokens
        if request.seed is None:
            update["seed"] = self.seed
        return request.model_copy(update=update) if update else request

    def request_key(self, request: ChatRequest) -> str:
        """Cache key of a resolved request: everything that determines the reply."""
        parts: list[Any] = [
            self.name,
            request.messages,
            request.prefill,
            request.max_tokens,
            request.temperature,
            request.seed,
            request.json_mode,
        ]
        if request.json_schema is not None:
            parts.append(request.json_schema)
        return cache_key(*parts)

    def _cache_get(self, key: str) -> ChatResponse | None:
        if self.cache is None:
            return None
        try:
            data = self.cache.get_json(key)
            return None if data is None else ChatResponse.model_validate({**data, "cached": True})
        except Exception as err:  # an unreadable entry is a miss, not a failed run
            log.warning("llm cache entry %s unreadable (%s); asking the model again", key[:12], err)
            return None

    async def _cache_put(self, key: str, response: ChatResponse) -> None:
        if self.cache is None:
            return
        try:
            await asyncio.to_thread(self.cache.put_json, key, response.model_dump(exclude={"cached"}))
        except Exception as err:
            log.warning("could not write llm cache entry %s: %s", key[:12], err)

    # -- many requests ---------------------------------------------------------------------------

    def chat_many(
        self, requests: Sequence[ChatRequest], desc: str = "llm"
    ) -> list[ChatResponse | LLMFailure]:
        """Answer every request; results in request order (see the module docstring)."""
        return run_sync(self.achat_many(requests, desc))

    async def achat_many(
        self, requests: Sequence[ChatRequest], desc: str = "llm"
    ) -> list[ChatResponse | LLMFailure]:
        """Async form of :meth:`chat_many`."""
        resolved = [self.resolve(r) for r in requests]
        results: list[ChatResponse | LLMFailure | None] = [None] * len(resolved)
        self._stats["requests"] += len(resolved)
        quiet: dict[str, Any] = {} if resolved else {"disable": True}  # else tqdm's defaults (and TQDM_* env)
        with tqdm(total=len(resolved), desc=desc, unit="req", mininterval=0.5, **quiet) as bar:
            # cached answers first; identical uncached requests share one call
            waiting: dict[str, list[int]] = {}
            served: dict[str, ChatResponse] = {}
            for index, request in enumerate(resolved):
                key = self.request_key(request)
                if key in waiting:
                    waiting[key].append(index)
                    continue
                hit = served.get(key) or self._cache_get(key)
                if hit is not None:
                    served[key] = hit
                    results[index] = hit
                    self._stats["cache_hits"] += 1
                    self.ledger.add_cached()
                    bar.update(1)
                    continue
                if self.cache is not None:
                    self._stats["cache_misses"] += 1
                waiting[key] = [index]
            if waiting:
                await self._run_pending(resolved, waiting, results, bar)
        final = [r if r is not None else LLMFailure(reason="not answered", attempts=0) for r in results]
        failed = sum(isinstance(r, LLMFailure) for r in final)
        self._stats["failures"] += failed
        if failed:
            reasons: dict[str, int] = {}
            for r in final:
                if isinstance(r, LLMFailure):
                    reasons[r.reason] = reasons.get(r.reason, 0) + 1
            top = ", ".join(
                f"{n}x {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
            )
            log.warning("%s (%s): %d of %d requests failed: %s", desc, self.name, failed, len(final), top)
        return final

    async def _run_pending(
        self,
        resolved: list[ChatRequest],
        waiting: dict[str, list[int]],
        results: list[ChatResponse | LLMFailure | None],
        bar: tqdm,
    ) -> None:
        keys = list(waiting)
        unique = [resolved[waiting[key][0]] for key in keys]
        semaphore = asyncio.Semaphore(max(1, self.concurrency))

        async def run_batch(batch: list[int]) -> None:
            async with semaphore:
                requests = [unique[i] for i in batch]
                reservation = None
                if not self.meters_attempts:
                    reservation = await self._admit(*self.worst_case(requests))
                outcomes: list[ChatResponse | LLMFailure]
                if reservation is None and not self.meters_attempts:
                    outcomes = [LLMFailure(reason=BUDGET_EXHAUSTED, attempts=0) for _ in batch]
                else:
                    try:
                        outcomes = await self._complete_batch(requests)
                        if len(outcomes) != len(batch):
                            raise RuntimeError(f"backend answered {len(outcomes)} of {len(batch)} requests")
                    except Exception as err:
                        outcomes = [failure_from(err) for _ in batch]
                answered = [o for o in outcomes if isinstance(o, ChatResponse)]
                if reservation is not None:
                    await self._settle(
                        reservation,
                        sum(o.prompt_tokens for o in answered),
                        sum(o.completion_tokens for o in answered),
                        len(answered),
                    )
                skipped = sum(
                    isinstance(o, LLMFailure) and o.reason == BUDGET_EXHAUSTED and o.attempts == 0
                    for o in outcomes
                )
                self._stats["budget_skipped"] += skipped
                self._stats["calls"] += len(batch) - skipped
                # stored before the slot is freed: a killed run loses no answered request
                for position, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, ChatResponse):
                        await self._cache_put(keys[position], outcome)
                    for index in waiting[keys[position]]:
                        results[index] = outcome
                    bar.update(len(waiting[keys[position]]))
            bar.set_postfix(cost=f"${self.ledger.cost_usd:.4f}", refresh=False)

        started = time.perf_counter()
        async with self._session():
            await asyncio.gather(*(run_batch(batch) for batch in self._plan_batches(unique)))
        # what a run spent waiting on the model: the part of a stage's wall time that its own
        # work cannot shorten (a rerun of few requests still pays one latency per round)
        self._stats["rounds"] += 1
        self._stats["busy_ms"] += round((time.perf_counter() - started) * 1000)
        self._log_concurrency()

    def _log_concurrency(self) -> None:
        """Say which concurrency a run that sent requests used (adaptive backends: what it settled on)."""
        log.info("%s: concurrency %d", self.name, self.concurrency_level())

    # -- structured output ---------------------------------------------------------------------

    def structured_many(
        self,
        requests: Sequence[ChatRequest],
        schema: type[T],
        desc: str = "llm",
        *,
        lenient: Callable[[str], T | None] | None = None,
    ) -> list[T | LLMFailure]:
        """Ask for JSON matching ``schema``; validate, repair once, else ``LLMFailure("malformed output: ...")``.

        ``lenient`` reads what strict validation refused (a judge's ``Score: 7/10``, JSON cut off
        after the score) before a repair request is spent on it; it returns ``None`` for garbage.
        A malformed result keeps the model's replies in :attr:`LLMFailure.raw` for the record.
        """
        return run_sync(self.astructured_many(requests, schema, desc, lenient=lenient))

    async def astructured_many(
        self,
        requests: Sequence[ChatRequest],
        schema: type[T],
        desc: str = "llm",
        *,
        lenient: Callable[[str], T | None] | None = None,
    ) -> list[T | LLMFailure]:
        """Async form of :meth:`structured_many`."""

        def read(text: str) -> tuple[T | None, str]:
            value, error = validate_reply(text, schema)
            if value is None and lenient is not None:
                value = lenient(text)
            return value, error

        first = [structured_request(r, schema) for r in requests]
        replies = await self.achat_many(first, desc)
        results: list[T | LLMFailure | None] = [None] * len(first)
        to_repair: list[tuple[int, ChatRequest, str]] = []
        for index, reply in enumerate(replies):
            if isinstance(reply, LLMFailure):
                results[index] = reply
                continue
            value, error = read(reply.text)
            if value is not None:
                results[index] = value
            else:
                to_repair.append((index, repair_request(first[index], reply.text, error), reply.text))
        if to_repair:
            self._stats["repairs"] += len(to_repair)
            second = await self.achat_many([r for _, r, _ in to_repair], f"{desc} (repair)")
            for (index, _, bad), reply in zip(to_repair, second, strict=True):
                if isinstance(reply, LLMFailure):
                    results[index] = LLMFailure(reason=reply.reason, attempts=reply.attempts + 1, raw=bad)
                    continue
                value, error = read(reply.text)
                if value is None:
                    self._stats["malformed"] += 1
                    raw = f"{bad}{REPAIR_SEPARATOR}{reply.text}"
                    results[index] = LLMFailure(reason=f"{MALFORMED}: {error}", attempts=2, raw=raw)
                else:
                    results[index] = value
        return [r if r is not None else LLMFailure(reason="not answered", attempts=0) for r in results]


def _mentions_json(messages: list[dict[str, str]]) -> bool:
    return any("json" in str(m.get("content", "")).lower() for m in messages)


@functools.cache
def response_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """``{"name", "schema"}`` of a reply model, made once per class (pydantic takes ~4 ms each time)."""
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in schema.__name__)[:64] or "reply"
    return {"name": name, "schema": schema.model_json_schema()}


def structured_request(request: ChatRequest, schema: type[BaseModel]) -> ChatRequest:
    """``request`` set up to ask for a JSON object matching ``schema``.

    JSON mode is switched on and the schema attached (for servers that constrain output to it). If no
    message mentions JSON, the last message gets a one-line instruction naming the keys (OpenAI's
    JSON mode refuses prompts that never say "JSON").
    """
    update: dict[str, Any] = {"json_mode": True}
    if request.json_schema is None:
        update["json_schema"] = response_schema(schema)
    if not _mentions_json(request.messages) and request.messages:
        keys = ", ".join(f'"{k}"' for k in schema.model_fields)
        messages = [dict(m) for m in request.messages]
        messages[-1]["content"] = (
            f"{messages[-1].get('content', '')}\n\nReply with one JSON object with the keys {keys}."
        )
        update["messages"] = messages
    return request.model_copy(update=update)


def repair_request(request: ChatRequest, bad_reply: str, error: str) -> ChatRequest:
    """Follow-up asking the model to correct ``bad_reply`` (same settings, prefill kept)."""
    messages = [
        *request.messages,
        {"role": "assistant", "content": bad_reply},
        {
            "role": "user",
            "content": (
                f"That reply is not valid: {error}. "
                "Reply again with only the corrected JSON object, no other text."
            ),
        },
    ]
    return request.model_copy(update={"messages": messages})
