"""``ragtune serve``: the registered version behind an OpenAI-compatible endpoint, on uvicorn.

The model is resolved, fetched, checked and loaded before the server binds its port, so a version
that cannot be served fails at start with one line, never on the first request.
"""

from __future__ import annotations

import logging

import uvicorn

from ragtune.core.config import RagtuneConfig
from ragtune.serve.app import create_app
from ragtune.serve.engine import BatchingEngine
from ragtune.serve.loader import ServedModel, describe, load_served

log = logging.getLogger(__name__)


def build_server(
    config: RagtuneConfig,
    *,
    alias: str | None = None,
    version: int | None = None,
    host: str | None = None,
    port: int | None = None,
) -> tuple[uvicorn.Server, ServedModel]:
    """A uvicorn server (not started) answering with the version ``version`` or ``alias`` names."""
    served, chat, tokenizer = load_served(config, alias, version)
    options = config.serve
    engine = BatchingEngine(
        chat,
        tokenizer,
        batch_size=options.batch_size,
        wait_s=options.batch_wait_ms / 1000,
        context_tokens=served.context_tokens,
    )
    app = create_app(
        engine, served, default_max_tokens=options.max_tokens, max_tokens_limit=options.max_tokens_limit
    )
    server_config = uvicorn.Config(
        app,
        host=host or options.host,
        port=options.port if port is None else port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(server_config), served


def serve(
    config: RagtuneConfig,
    *,
    alias: str | None = None,
    version: int | None = None,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """Serve until interrupted."""
    server, served = build_server(config, alias=alias, version=version, host=host, port=port)
    where = f"http://{server.config.host}:{server.config.port}/v1"
    log.info("serving %s as model %r at %s", describe(served.info), served.name, where)
    server.run()
