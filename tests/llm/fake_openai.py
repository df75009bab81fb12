"""An OpenAI-compatible HTTP server for tests and benchmarks, with fault injection.

``FakeOpenAI`` serves ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` (and
``GET /v1/models``) on 127.0.0.1, a thread per connection, so many concurrent requests each see
the configured ``latency_s``. What each chat request gets is decided in this order:

1. ``script``: a list of actions consumed one per chat request, in arrival order;
2. ``plan(index, body)``: a function returning an action (or ``None`` for the next rule);
3. ``rates``: ``{action: probability}`` drawn with a seeded RNG;
4. otherwise ``"ok"``.

With ``capacity`` set, the server serves at most that many chat requests at once (like a vLLM
queue or a provider's concurrency limit): one arriving beyond it is answered at once with 429 and
``Retry-After: retry_after_s`` (action ``"over_capacity"``, counted in ``over_capacity``); a slot is
freed as its answer is written, before the client can send the next request.

Actions: ``"ok"`` (the ``responder``'s answer), ``"rate_limit"`` (429 with ``Retry-After:
retry_after_s``), ``"server_error"`` (500), ``"hang"`` (no answer for ``hang_s``), ``"malformed"``
(200 whose content is not JSON), ``"broken_body"`` (200 whose body is not JSON), ``"bad_request"``
(400), ``"not_found"`` (404), ``"reject_response_format"`` (400 if the request has a
``response_format``, else ok), ``"no_choices"`` (200 with an empty ``choices`` list),
``"no_usage"`` (ok, without ``usage``).

The default responder answers a function of the request: with a JSON schema it builds an object of
that schema from the last user message, in JSON mode it returns ``{"reply": ...}``, otherwise
``"echo: <last user message>"``. Every request is recorded (``received``) with its server-side
monotonic arrival time.

Use it as a context manager, or through the ``fake_openai`` pytest fixture (import it into a test
module or a ``conftest.py``: ``from tests.llm.fake_openai import fake_openai``).
:func:`fake_openai_process` runs one in a child process instead (benchmarks: the server's threads
then do not compete with the client for the GIL).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ragtune.core.config import LLMEndpoint

ACTIONS = (
    "ok",
    "rate_limit",
    "server_error",
    "hang",
    "malformed",
    "broken_body",
    "bad_request",
    "not_found",
    "reject_response_format",
    "no_choices",
    "no_usage",
)

Responder = Callable[[dict[str, Any]], str]
Plan = Callable[[int, dict[str, Any]], str | None]


@dataclass
class Received:
    """One request the server got."""

    index: int  # arrival order among requests to the same path
    path: str
    time: float  # time.monotonic() at arrival
    body: dict[str, Any]
    action: str = "ok"


def last_user_message(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def _value_for(schema: dict[str, Any], defs: dict[str, Any], seed_text: str, name: str) -> Any:
    if "$ref" in schema:
        return _value_for(defs.get(schema["$ref"].split("/")[-1], {}), defs, seed_text, name)
    for combo in ("anyOf", "oneOf", "allOf"):
        if combo in schema:
            options = [s for s in schema[combo] if s.get("type") != "null"] or schema[combo]
            return _value_for(options[0], defs, seed_text, name)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "string")
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: _value_for(sub, defs, seed_text, key) for key, sub in properties.items()}
    if kind == "array":
        return [_value_for(schema.get("items", {}), defs, seed_text, name)]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), min(int(schema.get("maximum", 3)), 3))
    if kind == "number":
        low, high = float(schema.get("minimum", 0.0)), float(schema.get("maximum", 1.0))
        return (low + high) / 2
    if kind == "boolean":
        return True
    return f"{name}: {seed_text[:80]}".strip()


def object_for_schema(schema: dict[str, Any], seed_text: str) -> dict[str, Any]:
    """A value of a pydantic JSON schema, its strings made from ``seed_text``."""
    value = _value_for(schema, schema.get("$defs", {}), " ".join(seed_text.split()), "text")
    return value if isinstance(value, dict) else {"value": value}


def default_responder(body: dict[str, Any]) -> str:
    prompt = last_user_message(body)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema", {})
        return json.dumps(object_for_schema(schema, prompt))
    if response_format.get("type") == "json_object":
        return json.dumps({"reply": prompt[:200]})
    return f"echo: {prompt}"


@dataclass
class FakeOpenAI:
    responder: Responder = default_responder
    script: list[str] = field(default_factory=list)
    plan: Plan | None = None
    rates: dict[str, float] = field(default_factory=dict)
    latency_s: float = 0.0
    retry_after_s: float | None = 1.0
    hang_s: float = 5.0
    seed: int = 0
    embedding_dim: int = 16
    model: str = "fake-model"
    capacity: int | None = None
    api_key: str | None = None  # set: a request without "Authorization: Bearer <api_key>" gets 401
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.over_capacity = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        server.daemon_threads = True
        server.block_on_close = False
        server.request_queue_size = 256
        server.server_bind()
        server.server_activate()
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def endpoint(self, **overrides: Any) -> LLMEndpoint:
        """An endpoint pointing here, with test-friendly timeouts (override any field)."""
        return LLMEndpoint(**{**self.endpoint_defaults(self.url, self.model), **overrides})

    @staticmethod
    def endpoint_defaults(url: str, model: str = "fake-model") -> dict[str, Any]:
        return {
            "base_url": url,
            "model": model,
            "api_key_env": "RAGTUNE_TEST_FAKE_OPENAI_KEY",
            "timeout_s": 2.0,
            "max_retries": 3,
            "concurrency": 8,
            "temperature": 0.0,
            "max_tokens": 64,
        }

    # -- inspection ------------------------------------------------------------------------------

    def chat_requests(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path.endswith("/chat/completions")]

    @property
    def chat_count(self) -> int:
        return len(self.chat_requests())

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self.max_in_flight = self.in_flight
            self.over_capacity = 0

    # -- behaviour -------------------------------------------------------------------------------

    def _record(self, path: str, body: dict[str, Any]) -> Received:
        with self._lock:
            index = sum(1 for r in self.received if r.path == path)
            item = Received(index=index, path=path, time=time.monotonic(), body=body)
            self.received.append(item)
            return item

    def _choose(self, item: Received) -> str:
        with self._lock:
            if self.script:
                return self.script.pop(0)
        if self.plan is not None:
            chosen = self.plan(item.index, item.body)
            if chosen is not None:
                return chosen
        with self._lock:
            draw = self._rng.random()
        total = 0.0
        for action, rate in self.rates.items():
            total += rate
            if draw < total:
                return action
        return "ok"

    def retry_after_headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": f"{self.retry_after_s:g}"}

    def _embed(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        values = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(self.embedding_dim)]
        norm = sum(v * v for v in values) ** 0.5 or 1.0
        return [v / norm for v in values]


def usage_of(body: dict[str, Any], content: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion = len(content.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeOpenAI:
        return self.server.fake  # type: ignore[attr-defined]

    def _send(
        self, status: int, payload: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> None:
        data = raw if raw is not None else json.dumps(payload).encode("utf-8")
        self._release()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout): nothing to do
            self.close_connection = True

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": "fake_error", "code": status}}, headers)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": self.fake.model, "object": "model"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if (
            self.fake.api_key is not None
            and self.headers.get("Authorization") != f"Bearer {self.fake.api_key}"
        ):
            self.rfile.read(length)
            self._error(401, "invalid or missing API key")
            return
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error(400, "body is not JSON")
            return
        path = self.path.split("?")[0].rstrip("/")
        item = self.fake._record(path, body)
        if path.endswith("/chat/completions"):
            self._chat(item, body)
        elif path.endswith("/embeddings"):
            self._embeddings(body)
        else:
            self._error(404, f"no route {path}")

    def _chat(self, item: Received, body: dict[str, Any]) -> None:
        fake = self.fake
        with fake._lock:
            full = fake.capacity is not None and fake.in_flight >= fake.capacity
            if full:
                fake.over_capacity += 1
            else:
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        if full:
            item.action = "over_capacity"
            self._error(429, "over capacity", fake.retry_after_headers())
            return
        self._holding = True
        try:
            self._chat_reply(item, body)
        finally:
            self._release()

    def _release(self) -> None:
        """Free this request's server slot (once), before its answer reaches the client."""
        if getattr(self, "_holding", False):
            self._holding = False
            with self.fake._lock:
                self.fake.in_flight -= 1

    def _chat_reply(self, item: Received, body: dict[str, Any]) -> None:
        fake = self.fake
        action = fake._choose(item)
        item.action = action
        if fake.latency_s:
            fake._stop.wait(fake.latency_s)
        if action == "hang":
            fake._stop.wait(fake.hang_s)
            self.close_connection = True
            action = "ok"  # if the client is still there after the hang, answer
        if action == "rate_limit":
            self._error(429, "rate limited", fake.retry_after_headers())
        elif action == "server_error":
            self._error(500, "internal error")
        elif action == "bad_request":
            self._error(400, "bad request")
        elif action == "not_found":
            self._error(404, f"model {body.get('model')!r} not found")
        elif action == "reject_response_format" and body.get("response_format"):
            self._error(400, "response_format is not supported")
        elif action == "no_choices":
            self._send(200, {"id": f"chatcmpl-{item.index}", "object": "chat.completion", "choices": []})
        elif action == "broken_body":
            self._send(200, None, raw=b'{"id": "x", "choices": [ {"mess')
        else:
            content = "Sure! Here it is: {not json at all" if action == "malformed" else fake.responder(body)
            reply: dict[str, Any] = {
                "id": f"chatcmpl-{item.index}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", fake.model),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
            if action != "no_usage":
                reply["usage"] = usage_of(body, content)
            self._send(200, reply)

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": self.fake._embed(t)} for i, t in enumerate(texts)
        ]
        tokens = sum(len(t.split()) for t in texts)
        self._send(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", self.fake.model),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


class FakeOpenAIProcess:
    """Handle on a :class:`FakeOpenAI` running in a child process."""

    def __init__(self, url: str, conn: Any) -> None:
        self.url = url
        self._conn = conn

    def _ask(self, command: str, *args: Any) -> Any:
        self._conn.send((command, *args))
        return self._conn.recv()

    @property
    def chat_count(self) -> int:
        return int(self._ask("chat_count"))

    @property
    def max_in_flight(self) -> int:
        return int(self._ask("max_in_flight"))

    @property
    def over_capacity(self) -> int:
        return int(self._ask("over_capacity"))

    def reset(self) -> None:
        self._ask("reset")

    def set(self, **attributes: Any) -> None:
        """Set server attributes (``latency_s``, ``responder``, ``rates``, ...; must pickle)."""
        self._ask("set", attributes)

    def endpoint(self, **overrides: Any) -> LLMEndpoint:
        return LLMEndpoint(**{**FakeOpenAI.endpoint_defaults(self.url), **overrides})


def _serve_child(conn: Any, options: dict[str, Any]) -> None:
    with FakeOpenAI(**options) as server:
        conn.send(server.url)
        while True:
            command, *args = conn.recv()
            if command == "stop":
                conn.send(None)
                return
            if command == "set":
                for name, value in args[0].items():
                    setattr(server, name, value)
                conn.send(None)
            else:
                value = getattr(server, command)
                conn.send(value() if callable(value) else value)


@contextmanager
def fake_openai_process(**options: Any) -> Iterator[FakeOpenAIProcess]:
    """A :class:`FakeOpenAI` (constructed with ``options``, which must pickle) in a child process."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_child, args=(child, options), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("fake OpenAI server process did not start")
        handle = FakeOpenAIProcess(parent.recv(), parent)
        yield handle
        handle._ask("stop")
    finally:
        process.join(5)
        if process.is_alive():
            process.terminate()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started :class:`FakeOpenAI`; configure ``script``/``plan``/``rates``/``responder`` in the test."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Millisecond backoff for the OpenAI backend, so retry tests take no time."""
    from ragtune.core.llm import openai_backend

    monkeypatch.setattr(openai_backend, "BACKOFF_BASE_S", 0.005)
