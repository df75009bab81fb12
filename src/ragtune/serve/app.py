"""The OpenAI-compatible HTTP API (FastAPI): ``/v1/models``, ``/v1/chat/completions``, ``/health``.

Handlers validate the request, turn it into the generator's request and await the batching engine;
generation itself never runs on the event loop. A malformed request is a 400 in OpenAI's error
envelope naming the field and what is wrong; an unknown model is a 404 naming the one served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from openai.types.chat.chat_completion_chunk import ChoiceDelta

from ragtune.core.llm.base import ChatResponse
from ragtune.serve import protocol
from ragtune.serve.engine import BatchingEngine
from ragtune.serve.loader import ServedModel


def _problem(status: int, message: str, param: str | None = None) -> JSONResponse:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return JSONResponse(protocol.error_body(message, kind, param), status_code=status)


def _validation_message(err: RequestValidationError) -> tuple[str, str | None]:
    """``field: what is wrong`` for every problem (``body`` dropped from the location)."""
    parts, first_param = [], None
    for item in err.errors():
        location = [str(p) for p in item.get("loc", ()) if p != "body"]
        key = ".".join(location) or "body"
        first_param = first_param or key
        message = "unknown field" if item.get("type") == "extra_forbidden" else item.get("msg", "invalid")
        parts.append(f"{key}: {message}")
    return "invalid request: " + "; ".join(parts), first_param


def create_app(
    engine: BatchingEngine, served: ServedModel, *, default_max_tokens: int, max_tokens_limit: int
) -> FastAPI:
    """The app; the engine's worker runs for the app's lifespan."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="ragtune serve", lifespan=lifespan)
    app.state.engine = engine  # its batch sizes show how requests in flight were grouped

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(err)
        return _problem(400, message, param)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        info = served.info
        return {"status": "ok", "model": served.name, "version": info.version, "batches": len(engine.batches)}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = protocol.model_card(served.name, served.created).model_dump(exclude_none=True)
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{model_id:path}", response_model=None)
    async def model(model_id: str) -> dict[str, Any] | JSONResponse:
        if model_id != served.name:
            return _problem(
                404, f"model {model_id!r} is not served here (this server serves {served.name!r})"
            )
        return protocol.model_card(served.name, served.created).model_dump(exclude_none=True)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: protocol.CompletionRequest) -> Any:
        if body.model != served.name:
            return _problem(
                404, f"model {body.model!r} is not served here (this server serves {served.name!r})", "model"
            )
        request = body.chat_request(default_max_tokens, seed=0)
        if request.max_tokens > max_tokens_limit:
            return _problem(
                400,
                f"max_tokens {request.max_tokens} is above this server's limit {max_tokens_limit}"
                " (serve.max_tokens_limit)",
                "max_tokens",
            )
        too_long = engine.context_problem(request)
        if too_long:
            return _problem(400, too_long, "messages")
        ident, created = protocol.completion_id(), protocol.now()
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = _stream(engine, request, ident, served.name, created, include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        try:
            response = await engine.complete(request)
        except Exception as err:  # the batch failed; the server goes on
            failure = protocol.error_body(f"generation failed: {type(err).__name__}: {err}", "server_error")
            return JSONResponse(failure, status_code=500)
        return protocol.completion(ident, served.name, created, response, request.max_tokens).model_dump(
            exclude_none=True
        )

    return app


async def _stream(
    engine: BatchingEngine,
    request: Any,
    ident: str,
    model: str,
    created: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The role, the text deltas as decoded, the finish reason, (the usage), then ``[DONE]``."""
    yield protocol.sse(protocol.chunk(ident, model, created, delta=ChoiceDelta(role="assistant", content="")))
    async for event in engine.stream(request):
        if isinstance(event, ChatResponse):
            reason = protocol.finish_reason(event, request.max_tokens)
            yield protocol.sse(protocol.chunk(ident, model, created, delta=ChoiceDelta(), finish=reason))
            if include_usage:
                yield protocol.sse(protocol.chunk(ident, model, created, usage_=protocol.usage(event)))
        else:
            yield protocol.sse(protocol.chunk(ident, model, created, delta=ChoiceDelta(content=event)))
    yield protocol.sse("[DONE]")
