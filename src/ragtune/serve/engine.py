"""Requests in flight decoded together: a queue in front of the local generator's batched decoding.

The HTTP handlers run on the server's event loop; generation runs on one worker thread, so the loop
keeps accepting requests while a batch decodes. The worker takes the first waiting request, waits
up to ``wait_s`` for more (a burst of clients arrives a few milliseconds apart), and decodes up to
``batch_size`` of them in one call of :meth:`TransformersChat.generate_batch` (the evaluation's and
synthesis's generator: shared prompt prefix computed once, a finished row leaves the batch, each row
stops at its own ``max_tokens``). Requests that arrive meanwhile form the next batch. Rows of one
batch share a temperature; a request with another temperature waits for the next batch.

A streaming request gets its text as it is decoded: the worker's per-token callback decodes the row
so far and hands the new characters to the request's queue on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ragtune.core.llm.base import ChatRequest, ChatResponse
from ragtune.core.llm.local_backend import TransformersChat

log = logging.getLogger(__name__)

REPLACEMENT_CHAR = "\ufffd"  # a multi-byte character cut in half: wait for its next token


@dataclass
class _Job:
    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    stream: bool
    events: asyncio.Queue[str | ChatResponse | BaseException] = field(default_factory=asyncio.Queue)
    sent: str = ""

    def put(self, event: str | ChatResponse | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class BatchingEngine:
    """One worker thread decoding batches of the requests in flight; ``start``/``stop`` bracket it."""

    def __init__(
        self,
        chat: TransformersChat,
        tokenizer: Any,
        *,
        batch_size: int,
        wait_s: float,
        context_tokens: int | None = None,
    ) -> None:
        self.chat = chat
        self.tokenizer = tokenizer
        self.context_tokens = context_tokens
        self.batch_size = max(1, batch_size)
        self.wait_s = wait_s
        self.batches: list[int] = []  # size of every batch decoded (the server's /health shows them)
        self._waiting: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="ragtune-serve-decoder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def context_problem(self, request: ChatRequest) -> str | None:
        """Why the prompt plus ``max_tokens`` cannot fit the model's context, or ``None`` when it fits."""
        limit = self.context_tokens
        if not limit:
            return None
        prompt = self.tokenizer.apply_chat_template(
            request.messages, add_generation_prompt=True, tokenize=False
        )
        tokens = len(self.tokenizer(str(prompt), add_special_tokens=False)["input_ids"])
        if tokens + request.max_tokens <= limit:
            return None
        return f"the prompt ({tokens} tokens) plus max_tokens ({request.max_tokens}) exceeds the model's context of {limit} tokens"

    def _submit(self, request: ChatRequest, *, stream: bool) -> _Job:
        job = _Job(request, asyncio.get_running_loop(), stream)
        with self._ready:
            self._waiting.append(job)
            self._ready.notify()
        return job

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """The whole reply (raises what generation raised)."""
        async for event in self._events(self._submit(request, stream=False)):
            if isinstance(event, ChatResponse):
                return event
        raise RuntimeError("generation ended without a reply")  # pragma: no cover - _events always ends so

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | ChatResponse]:
        """Text deltas as they are decoded, then the whole reply (its ``text`` is what was streamed)."""
        async for event in self._events(self._submit(request, stream=True)):
            yield event

    async def _events(self, job: _Job) -> AsyncIterator[str | ChatResponse]:
        while True:
            event = await job.events.get()
            if isinstance(event, BaseException):
                raise event
            yield event
            if isinstance(event, ChatResponse):
                return

    # -- the worker thread ----------------------------------------------------------------------

    def _take_batch(self) -> list[_Job]:
        """Wait for a request, then up to ``wait_s`` for more; take up to ``batch_size`` of one temperature."""
        with self._ready:
            while not self._waiting and not self._stopping:
                self._ready.wait()
            if self._stopping:
                return []
            deadline = time.monotonic() + self.wait_s
            while len(self._waiting) < self.batch_size and (left := deadline - time.monotonic()) > 0:
                self._ready.wait(left)
            temperature = self._waiting[0].request.temperature
            batch = [job for job in self._waiting if job.request.temperature == temperature]
            batch = batch[: self.batch_size]
            for job in batch:
                self._waiting.remove(job)
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            self.batches.append(len(batch))

            def on_token(row: int, tokens: list[int], batch: list[_Job] = batch) -> None:
                self._stream_delta(batch[row], tokens)

            try:
                streaming = any(job.stream for job in batch)
                responses = self.chat.generate_batch(
                    [job.request for job in batch], on_token=on_token if streaming else None
                )
            except Exception as err:  # every request of the batch gets the error, the server goes on
                log.exception("generation failed for a batch of %d", len(batch))
                for job in batch:
                    job.put(err)
                continue
            for job, response in zip(batch, responses, strict=True):
                if job.stream and response.text.startswith(job.sent):
                    rest = response.text[len(job.sent) :]  # what the final trim left unsent
                    if rest:
                        job.put(rest)
                    response = response.model_copy(update={"text": job.sent + rest})
                job.put(response)

    def _stream_delta(self, job: _Job, tokens: list[int]) -> None:
        if not job.stream:
            return
        text = str(self.tokenizer.decode(tokens, skip_special_tokens=True)).lstrip()
        if text.endswith(REPLACEMENT_CHAR) or not text.startswith(job.sent) or len(text) == len(job.sent):
            return
        job.put(text[len(job.sent) :])
        job.sent = text
