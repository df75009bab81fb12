"""Counting the tokens and money a stage spends on an LLM, and stopping it at a budget.

Every attempt sent to a paid endpoint first *reserves* its worst case (the prompt's estimated tokens
plus ``max_tokens``) and then *settles* what it cost: the reply's usage, the estimate again when the
server was paid but did not say (a timeout, a garbled body), nothing when it refused (429, 5xx, a
refused connection). An attempt is admitted only while the spend so far plus the reservations of
the requests in flight stays under the budget, so a worker with many requests in flight overshoots
by at most its last admitted request.

Workers that share one budget (the shards of a synthesis run, each with its own concurrency) share
a :class:`SpendLog`: append-only records in the shared cache store, one per reservation and one per
settlement, never modified. Each worker counts the others' settled spend and their open
reservations before it admits an attempt; two workers admitting at the same moment can each
overshoot by one request, no more. A reservation of a worker that died stays open and counts as
spent (its request may well have been paid).
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ragtune.core.cache import cache_key
from ragtune.core.config import LLMEndpoint
from ragtune.core.errors import RagtuneError
from ragtune.core.storage import Storage

log = logging.getLogger(__name__)

SPEND_PREFIX = "spend"
_RESERVE, _SETTLE = ".reserve.json", ".settle.json"


class BudgetExceeded(RagtuneError):
    """The stage's LLM budget (``budget_usd`` or ``budget_tokens``) is used up."""


def estimate_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Rough prompt size (4 characters a token) where a server does not report usage."""
    return sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1


@dataclass(frozen=True)
class Reservation:
    """An admitted attempt's worst-case tokens, held against the budget until it is settled."""

    name: str
    prompt_tokens: int
    completion_tokens: int


class Admission:
    """Why :meth:`TokenLedger.reserve` did not admit: the budget is spent, or wait for requests in flight."""

    EXHAUSTED = "exhausted"
    WAIT = "wait"


class SpendLog:
    """The paid attempts of one budget scope, shared by every worker through a :class:`Storage`.

    Records live under ``spend/<scope>/``: ``<worker>-<n>.reserve.json`` when an attempt is
    admitted, ``<worker>-<n>.settle.json`` with what it cost. Each record is written once (an atomic
    write of a new key), so concurrent workers never overwrite each other and each record is read
    at most once.
    """

    def __init__(self, storage: Storage, scope: str, worker: str | None = None) -> None:
        self.storage = storage
        self.prefix = f"{SPEND_PREFIX}/{scope}/"
        self.worker = worker or uuid.uuid4().hex[:12]
        self._numbers = itertools.count()
        self._records: dict[str, tuple[int, int]] = {}  # record name -> (prompt, completion) tokens

    def _write(self, name: str, prompt_tokens: int, completion_tokens: int) -> None:
        body = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        self.storage.write_bytes(self.prefix + name, json.dumps(body).encode("utf-8"))
        self._records[name] = (prompt_tokens, completion_tokens)

    def _read(self, name: str) -> tuple[int, int]:
        try:
            data = json.loads(self.storage.read_bytes(self.prefix + name))
            return int(data["prompt_tokens"]), int(data["completion_tokens"])
        except Exception as err:  # a record is written atomically; one that is not readable is not ours
            log.warning("spend record %s%s unreadable (%s); not counted", self.prefix, name, err)
            return 0, 0

    def reserve(self, prompt_tokens: int, completion_tokens: int) -> str:
        name = f"{self.worker}-{next(self._numbers):08d}"
        self._write(name + _RESERVE, prompt_tokens, completion_tokens)
        return name

    def settle(self, name: str, prompt_tokens: int, completion_tokens: int) -> None:
        self._write(name + _SETTLE, prompt_tokens, completion_tokens)

    def others(self) -> tuple[int, int]:
        """Prompt and completion tokens of the other workers: settled spend plus open reservations."""
        names = {
            key[len(self.prefix) :]
            for key in self.storage.list(self.prefix.rstrip("/"))
            if key.endswith((_RESERVE, _SETTLE))
        }
        prompt = completion = 0
        for name in names:
            if name.startswith(self.worker + "-"):
                continue
            if name.endswith(_RESERVE) and name[: -len(_RESERVE)] + _SETTLE in names:
                continue  # settled: the settlement counts instead
            if name not in self._records:
                self._records[name] = self._read(name)
            p, c = self._records[name]
            prompt, completion = prompt + p, completion + c
        return prompt, completion


class TokenLedger:
    """Prompt/completion tokens and their cost for one stage, priced by ``endpoint``.

    Prices are per million tokens (``price_prompt_per_m``, ``price_completion_per_m``). The budget
    (``budget_usd``, ``budget_tokens``) is *reached* once spending is at or above it. The counters
    (``prompt_tokens``, ``cost_usd``, ...) are this ledger's own spend; with a ``shared``
    :class:`SpendLog` the budget covers every worker of the scope (see the module docstring).
    Responses served from the cache cost nothing. Thread-safe.
    """

    def __init__(
        self, stage: str, endpoint: LLMEndpoint | None = None, shared: SpendLog | None = None
    ) -> None:
        self.stage = stage
        self.endpoint = endpoint or LLMEndpoint()
        self.shared = shared
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.calls = 0
        self.cached_calls = 0
        self._reserved = [0, 0]  # open reservations of this ledger: prompt, completion tokens
        self._others = (0, 0)  # the other workers' spend, as last read
        self._lock = threading.Lock()

    @property
    def has_budget(self) -> bool:
        return self.endpoint.budget_usd is not None or self.endpoint.budget_tokens is not None

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Record one paid call."""
        with self._lock:
            self.prompt_tokens += max(0, prompt_tokens)
            self.completion_tokens += max(0, completion_tokens)
            self.calls += 1

    def add_cached(self, count: int = 1) -> None:
        """Record responses served from the cache (free)."""
        with self._lock:
            self.cached_calls += count

    # -- admission -------------------------------------------------------------------------------

    def reserve(self, prompt_tokens: int, completion_tokens: int) -> Reservation | str:
        """Admit an attempt of at most these tokens: a :class:`Reservation`, or an :class:`Admission` reason.

        ``Admission.WAIT`` means only this ledger's own requests in flight stand in the way: try again
        once one of them is settled. Blocking (reads the shared log); call it off the event loop then.
        """
        if not self.has_budget:
            return Reservation("", 0, 0)
        with self._lock:
            if self.shared is not None:
                self._others = self.shared.others()
            spent = (self.prompt_tokens + self._others[0], self.completion_tokens + self._others[1])
            if self._over_budget(*spent) is not None:
                return Admission.EXHAUSTED
            if self._over_budget(spent[0] + self._reserved[0], spent[1] + self._reserved[1]) is not None:
                return Admission.WAIT
            name = self.shared.reserve(prompt_tokens, completion_tokens) if self.shared is not None else ""
            self._reserved[0] += prompt_tokens
            self._reserved[1] += completion_tokens
            return Reservation(name, prompt_tokens, completion_tokens)

    def settle(
        self, reservation: Reservation, prompt_tokens: int, completion_tokens: int, calls: int = 1
    ) -> None:
        """Close ``reservation`` with what the attempt cost (0 tokens and ``calls=0`` if nothing was paid)."""
        with self._lock:
            self.prompt_tokens += max(0, prompt_tokens)
            self.completion_tokens += max(0, completion_tokens)
            self.calls += calls
            self._reserved[0] -= reservation.prompt_tokens
            self._reserved[1] -= reservation.completion_tokens
            if self.shared is not None and reservation.name:
                self.shared.settle(reservation.name, max(0, prompt_tokens), max(0, completion_tokens))

    # -- totals ----------------------------------------------------------------------------------

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.endpoint.price_prompt_per_m
            + completion_tokens * self.endpoint.price_completion_per_m
        ) / 1_000_000

    @property
    def cost_usd(self) -> float:
        return self._cost(self.prompt_tokens, self.completion_tokens)

    def _over_budget(self, prompt_tokens: int, completion_tokens: int) -> str | None:
        budget_usd, budget_tokens = self.endpoint.budget_usd, self.endpoint.budget_tokens
        cost = self._cost(prompt_tokens, completion_tokens)
        if budget_usd is not None and cost >= budget_usd:
            return f"cost ${cost:.4f} reached budget_usd ${budget_usd:.4f}"
        if budget_tokens is not None and prompt_tokens + completion_tokens >= budget_tokens:
            return f"{prompt_tokens + completion_tokens} tokens reached budget_tokens {budget_tokens}"
        return None

    def exhausted_reason(self) -> str | None:
        """Why the budget is reached (by this ledger and, when shared, the other workers as last read)."""
        return self._over_budget(
            self.prompt_tokens + self._others[0], self.completion_tokens + self._others[1]
        )

    @property
    def exhausted(self) -> bool:
        return self.exhausted_reason() is not None

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` if the budget is reached."""
        reason = self.exhausted_reason()
        if reason is not None:
            raise BudgetExceeded(f"{self.stage}: LLM budget exhausted ({reason})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "model": self.endpoint.model,
            "calls": self.calls,
            "cached_calls": self.cached_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "budget_usd": self.endpoint.budget_usd,
            "budget_tokens": self.endpoint.budget_tokens,
            "exhausted": self.exhausted,
        }


def shared_ledger(stage: str, endpoint: LLMEndpoint, storage: Storage, run_scope: str) -> TokenLedger:
    """The ledger of ``stage`` whose budget every worker of ``run_scope`` (e.g. the shards of one run) shares.

    ``run_scope`` names the run, the same string in every worker (the synthesis stage uses its index
    folder, which is one per pipeline run). Without a budget there is nothing to share: a plain ledger.
    """
    ledger = TokenLedger(stage, endpoint)
    if ledger.has_budget:
        ledger.shared = SpendLog(storage, cache_key(stage, endpoint.model, run_scope)[:24])
    return ledger
