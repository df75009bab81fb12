"""The one retry loop: bounded attempts, jittered exponential backoff, Retry-After when finite."""

from __future__ import annotations

import random

import pytest

from ragtune.core.retry import RetriesExhausted, Retryable, RetryPolicy, call_with_retries


def policy(waits: list[float], retries: int = 3) -> RetryPolicy:
    return RetryPolicy(retries, base_s=1.0, max_s=8.0, sleep=waits.append, rng=random.Random(7))


def test_transient_failures_are_retried_until_success() -> None:
    waits: list[float] = []
    failures = iter([Retryable("busy"), Retryable("reset", retry_after="2")])

    def attempt() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "done"

    assert call_with_retries(attempt, policy(waits), "req") == "done"
    assert 0.5 <= waits[0] <= 1.0 and waits[1] == 2.0  # backoff, then the server's Retry-After


def test_attempts_are_bounded_and_the_last_problem_is_reported() -> None:
    waits: list[float] = []
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise Retryable(f"HTTP 50{len(calls)}", retry_after="inf")

    with pytest.raises(RetriesExhausted, match=r"^HTTP 504; gave up after 4 attempt\(s\)$"):
        call_with_retries(attempt, policy(waits), "req")
    assert len(calls) == 4 and len(waits) == 3
    for number, wait in enumerate(waits):  # "inf" is not a time: the jittered backoff decides
        assert 2**number / 2 <= wait <= 2**number


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise ValueError("HTTP 400")

    with pytest.raises(ValueError):
        call_with_retries(attempt, policy([]), "req")
    assert calls == [1]


def test_backoff_is_capped_and_jittered() -> None:
    retry = policy([])
    waits = [retry.backoff_s(n) for n in range(200)]
    assert all(4.0 <= w <= 8.0 for w in waits[3:]) and len(set(waits)) > 100
    assert retry.backoff_s(0, "nan") <= 1.0 and retry.backoff_s(0, "1e12") == 300.0
