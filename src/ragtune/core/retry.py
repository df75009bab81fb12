"""One retry loop for every HTTP client we write (GROBID, embeddings, OpenAI-compatible chat).

A caller wraps one attempt in a function that either returns the result, raises :class:`Retryable`
for a transient failure (a timeout, a reset or refused connection, HTTP 429 or 5xx; with the
server's ``Retry-After`` when it sent one), or raises anything else to fail at once.
:func:`call_with_retries` makes at most ``max_retries + 1`` attempts; between them it waits for the
server's ``Retry-After`` when that is a finite number of seconds or an HTTP date (capped at
:data:`RETRY_AFTER_MAX_S`), and otherwise for exponential backoff with jitter: retry ``n`` (from 0)
waits a uniform time in ``[c/2, c]`` with ``c = min(max_s, base_s * 2**n)``, so concurrent clients
that failed together do not retry together. When the attempts run out it raises
:class:`RetriesExhausted` with the last problem and the attempt count.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from ragtune.core.errors import RagtuneError

logger = logging.getLogger(__name__)

RETRY_AFTER_MAX_S = 300.0
T = TypeVar("T")


class Retryable(Exception):
    """Raised by an attempt to ask for another one; the message says what went wrong."""

    def __init__(self, problem: str, retry_after: str | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


class RetriesExhausted(RagtuneError):
    """Every attempt failed transiently; the message ends with how many were made."""

    def __init__(self, problem: str, attempts: int) -> None:
        super().__init__(f"{problem}; gave up after {attempts} attempt(s)")
        self.problem = problem
        self.attempts = attempts


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP date), capped at
    :data:`RETRY_AFTER_MAX_S`; None when absent or not a finite time (then the backoff decides)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


@dataclass
class RetryPolicy:
    """How often and how long to retry; ``sleep`` and ``rng`` are injectable for tests."""

    max_retries: int
    base_s: float = 1.0
    max_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def backoff_s(self, attempt: int, retry_after: str | None = None) -> float:
        """Wait before retry number ``attempt + 1``: the server's Retry-After, else backoff with jitter."""
        asked = retry_after_seconds(retry_after)
        if asked is not None:
            return asked
        ceiling = min(self.max_s, self.base_s * 2 ** min(attempt, 62))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)


def call_with_retries(attempt: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    """``attempt()``'s result, retrying it on :class:`Retryable` (see the module docstring).

    ``what`` names the request in log lines (e.g. the file being sent).
    """
    attempts = policy.max_retries + 1
    for number in range(attempts):
        try:
            return attempt()
        except Retryable as err:
            if number + 1 >= attempts:
                raise RetriesExhausted(str(err), attempts) from None
            wait = policy.backoff_s(number, err.retry_after)
            logger.info("%s: %s; retry %d/%d in %.1f s", what, err, number + 1, policy.max_retries, wait)
            policy.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
