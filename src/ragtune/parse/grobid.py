"""A small client for a GROBID server's ``processFulltextDocument`` service.

``POST {grobid_url}/api/processFulltextDocument`` with the PDF in the multipart field ``input``
answers TEI XML. GROBID answers 503 when all its workers are busy and asks the client to wait and
resubmit, so 503s and timeouts are retried with exponential backoff plus jitter (or after the
server's ``Retry-After``), up to ``parse.grobid_max_retries`` times. Any other error status fails
that file with the status and the start of the answer. At most ``parse.grobid_concurrency``
requests are in flight at once, however many threads share the client.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import PurePosixPath
from types import TracebackType

import httpx

from ragtune.core.config import ParseConfig
from ragtune.core.errors import ConfigError, RagtuneError
from ragtune.parse.sections import clean

logger = logging.getLogger(__name__)

SERVICE_PATH = "/api/processFulltextDocument"
BACKOFF_BASE_S = 1.0  # first retry waits 0.5-1 s, then 1-2 s, 2-4 s ...
BACKOFF_MAX_S = 60.0
RETRY_AFTER_MAX_S = 300.0
EXCERPT_CHARS = 200


class GrobidError(RagtuneError):
    """GROBID could not turn one file into TEI; the message says how it answered."""


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


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
        self._sleep = sleep
        self._rng = rng or random.Random()
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
        asked = retry_after_seconds(retry_after)
        if asked is not None:
            return asked
        ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def process_fulltext(self, name: str, data: bytes) -> bytes:
        """TEI XML for one PDF, or :class:`GrobidError` saying why not."""
        filename = PurePosixPath(name).name or "document.pdf"
        form = {"consolidateHeader": "1" if self.consolidate_header else "0"}
        attempts = self.max_retries + 1
        problem = ""
        for attempt in range(attempts):
            try:
                with self._slots:
                    response = self._client.post(
                        self.url,
                        files={"input": (filename, data, "application/pdf")},
                        data=form,
                        headers={"Accept": "application/xml"},
                    )
            except httpx.TimeoutException as err:
                problem = f"GROBID timed out (no answer within the {self.timeout_s:g} s timeout: {type(err).__name__})"
                wait = self.backoff_s(attempt)
            except httpx.HTTPError as err:
                raise GrobidError(
                    f"cannot reach GROBID at {self.url} ({type(err).__name__}: {err})"
                ) from None
            else:
                status = response.status_code
                if status == 200:
                    if not response.content.strip():
                        raise GrobidError("GROBID answered HTTP 200 with an empty body")
                    return response.content
                if status == 204:
                    raise GrobidError("GROBID found no content to extract (HTTP 204)")
                if status != 503:
                    excerpt = clean(response.text)[:EXCERPT_CHARS] or "(empty body)"
                    raise GrobidError(f"GROBID failed with HTTP {status}: {excerpt}")
                problem = "GROBID busy (HTTP 503)"
                wait = self.backoff_s(attempt, response.headers.get("Retry-After"))
            if attempt + 1 < attempts:
                logger.info(
                    "%s: %s; retry %d/%d in %.1f s", name, problem, attempt + 1, self.max_retries, wait
                )
                self._sleep(wait)
        raise GrobidError(f"{problem}; gave up after {attempts} attempt(s)")
