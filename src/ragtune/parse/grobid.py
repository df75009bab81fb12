"""A small client for a GROBID server's ``processFulltextDocument`` service.

``POST {grobid_url}/api/processFulltextDocument`` with the PDF in the multipart field ``input``
answers TEI XML. Transient failures are retried through :mod:`ragtune.core.retry` (exponential
backoff with jitter, or the server's ``Retry-After``), up to ``parse.grobid_max_retries`` times:
GROBID answers 503 when all its workers are busy and asks the client to resubmit, and a server
restarting behind a load balancer refuses or resets connections or answers another 5xx. Any 4xx
fails that file at once with the status and the start of the answer. At most
``parse.grobid_concurrency`` requests are in flight at once, however many threads share the client.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from types import TracebackType

import httpx

from ragtune.core.config import ParseConfig
from ragtune.core.errors import ConfigError, RagtuneError
from ragtune.core.retry import RetriesExhausted, Retryable, RetryPolicy, call_with_retries
from ragtune.parse.sections import clean

logger = logging.getLogger(__name__)

SERVICE_PATH = "/api/processFulltextDocument"
BACKOFF_BASE_S = 1.0  # first retry waits 0.5-1 s, then 1-2 s, 2-4 s ...
BACKOFF_MAX_S = 60.0
EXCERPT_CHARS = 200


class GrobidError(RagtuneError):
    """GROBID could not turn one file into TEI; the message says how it answered."""


class GrobidClient:
    """Thread-safe; use as a context manager (or call :meth:`close`) to release connections."""

    def __init__(
        self,
        config: ParseConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not config.grobid_url:
            raise ConfigError("parse.grobid_url: not set")
        self.url = config.grobid_url.rstrip("/") + SERVICE_PATH
        self.timeout_s = config.grobid_timeout_s
        self.max_retries = config.grobid_max_retries
        self.consolidate_header = config.grobid_consolidate_header
        self._slots = threading.BoundedSemaphore(config.grobid_concurrency)
        self.retry = RetryPolicy(
            config.grobid_max_retries,
            base_s=BACKOFF_BASE_S,
            max_s=BACKOFF_MAX_S,
            sleep=sleep,
            rng=rng or random.Random(),
        )
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout_s),
            limits=httpx.Limits(max_connections=config.grobid_concurrency),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GrobidClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def backoff_s(self, attempt: int, retry_after: str | None = None) -> float:
        """Wait before retry number ``attempt + 1``: the server's Retry-After, else backoff with jitter."""
        return self.retry.backoff_s(attempt, retry_after)

    def _attempt(self, filename: str, data: bytes, form: dict[str, str]) -> bytes:
        """One request: the TEI, :class:`Retryable` for a transient failure, else :class:`GrobidError`."""
        try:
            with self._slots:
                response = self._client.post(
                    self.url,
                    files={"input": (filename, data, "application/pdf")},
                    data=form,
                    headers={"Accept": "application/xml"},
                )
        except httpx.TimeoutException as err:
            raise Retryable(
                f"GROBID timed out (no answer within the {self.timeout_s:g} s timeout: {type(err).__name__})"
            ) from None
        except httpx.UnsupportedProtocol as err:
            raise GrobidError(f"cannot reach GROBID at {self.url} ({err})") from None
        except httpx.TransportError as err:  # refused, reset, DNS, broken answer: may heal
            raise Retryable(f"cannot reach GROBID at {self.url} ({type(err).__name__}: {err})") from None
        status = response.status_code
        if status == 200:
            if not response.content.strip():
                raise GrobidError("GROBID answered HTTP 200 with an empty body")
            return response.content
        if status == 204:
            raise GrobidError("GROBID found no content to extract (HTTP 204)")
        excerpt = clean(response.text)[:EXCERPT_CHARS] or "(empty body)"
        if status == 503:
            raise Retryable("GROBID busy (HTTP 503)", response.headers.get("Retry-After"))
        if status >= 500:
            raise Retryable(
                f"GROBID failed with HTTP {status}: {excerpt}", response.headers.get("Retry-After")
            )
        raise GrobidError(f"GROBID failed with HTTP {status}: {excerpt}")

    def process_fulltext(self, name: str, data: bytes) -> bytes:
        """TEI XML for one PDF, or :class:`GrobidError` saying why not."""
        filename = PurePosixPath(name).name or "document.pdf"
        form = {"consolidateHeader": "1" if self.consolidate_header else "0"}
        try:
            return call_with_retries(lambda: self._attempt(filename, data, form), self.retry, name)
        except RetriesExhausted as err:
            raise GrobidError(str(err)) from None
