"""Adaptive concurrency for one endpoint: as many requests in flight as the server can take.

A real synthesis run is bounded by the endpoint (a vLLM queue, a provider's rate limit), not by
the client. A fixed ``concurrency`` set too high turns into a 429 storm (every extra request is
rejected, retried and finally lost); set too low it leaves the server idle. The
:class:`AdaptiveLimiter` finds the level the server sustains, with ``concurrency`` as the ceiling:

* **start at the ceiling** — the configured concurrency is what a user expects when the server
  can take it, so a healthy endpoint loses nothing to a ramp-up;
* **cut** on overload (429, 503, a timeout, a refused connection): back to the highest level that
  held a full window without overload, or to ``backoff`` × the current level when none did. One
  cut per overload episode: requests sent before the cut report the same overload, not a new one;
* **grow** by one request per window of successes (additive increase) while latency stays flat
  (its moving average within ``latency_tolerance`` × the lowest that average has been: a server
  that queues, like vLLM past its batch size, answers slower before it refuses). The level just below a recent overload
  is a plateau: growing past it is a *probe*, tried again only after ``probe_interval_s`` (which
  doubles after each failed probe), so a settled run sees an overload once in a long while
  instead of once per window;
* **pause the whole endpoint** for a ``Retry-After``: no request is sent to it until then, since
  the server said so for the client, not for one request.

State is kept across runs of the same model (the limit it learned stays learned); the waiting
itself happens in whichever event loop is running (overlapping runs in threads share the count
of requests in flight; a slot freed in another loop is noticed within ``_POLL_S``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: A waiter re-checks at least this often: a slot freed in another event loop (overlapping runs in
#: threads) cannot wake it. Slots freed in its own loop wake it at once.
_POLL_S = 0.5


@dataclass
class Slot:
    """One request's permission to be sent, and what it reports back."""

    epoch: int  # the limiter's overload episode when the request was sent
    started: float
    outcome: str = "none"  # "ok", "overload" or "other"


class AdaptiveLimiter:
    """AIMD concurrency limit with plateaus, endpoint-wide pauses and a fixed ceiling.

    ``adaptive=False`` keeps the limit at the ceiling (a plain semaphore with Retry-After pauses);
    ``pause_endpoint=False`` leaves each ``Retry-After`` to the request that got it.
    """

    def __init__(
        self,
        ceiling: int,
        *,
        adaptive: bool = True,
        backoff: float = 0.5,
        latency_tolerance: float = 2.0,
        probe_interval_s: float = 5.0,
        max_probe_interval_s: float = 120.0,
        pause_endpoint: bool = True,
        name: str = "llm",
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"concurrency ceiling must be at least 1, got {ceiling}")
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.backoff = backoff
        self.latency_tolerance = latency_tolerance
        self.base_probe_interval_s = probe_interval_s
        self.max_probe_interval_s = max_probe_interval_s
        self.pause_endpoint = pause_endpoint
        self.name = name
        self.limit = float(ceiling)
        self.in_flight = 0
        self.epoch = 0
        self.cuts = 0
        self.pauses = 0
        self.peak_in_flight = 0
        self._good = 0  # highest level that held a full window without overload
        self._plateau = ceiling + 1  # growing to this level (or above) is a probe
        self._window_ok = 0  # successes at the current level
        self._last_cut = -math.inf
        self._probe_interval_s = probe_interval_s
        self._latency = 0.0  # moving average of reply latency (replies vary in length: smoothed)
        self._baseline = math.inf  # the lowest that average has been: the unloaded server
        self._paused_until = 0.0
        self._lock = threading.Lock()
        # one condition per event loop (a condition belongs to the loop it is used in)
        self._conditions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Condition] = (
            weakref.WeakKeyDictionary()
        )

    # -- what callers use ----------------------------------------------------------------------

    @property
    def level(self) -> int:
        """Requests allowed in flight now."""
        return max(1, min(self.ceiling, int(self.limit)))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Wait for a free slot (and for any pause to end), hold it while the request runs."""
        await self._acquire()
        slot = Slot(epoch=self.epoch, started=time.monotonic())
        try:
            yield slot
        finally:
            with self._lock:
                self.in_flight -= 1
            if slot.outcome == "ok":
                self._on_success(time.monotonic() - slot.started)
            elif slot.outcome == "overload":
                self._on_overload(slot)
            await self._wake()

    def pause(self, seconds: float) -> bool:
        """Send nothing to the endpoint for ``seconds`` (a ``Retry-After``), from now.

        Returns whether the endpoint is now paused; ``False`` when this limiter leaves each
        ``Retry-After`` to the request that got it (``pause_endpoint=False``: how a client
        without an endpoint-wide pause behaves, kept as the benchmark's baseline).
        """
        if not self.pause_endpoint:
            return False
        until = time.monotonic() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1
            log.debug("%s: endpoint paused for %.2f s (Retry-After)", self.name, seconds)
        return True

    def summary(self) -> str:
        return (
            f"concurrency {self.level} of {self.ceiling} (peak in flight {self.peak_in_flight}, "
            f"{self.cuts} cuts, {self.pauses} Retry-After pauses)"
        )

    # -- internals -----------------------------------------------------------------------------

    def _get_condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        condition = self._conditions.get(loop)
        if condition is None:
            condition = self._conditions[loop] = asyncio.Condition()
        return condition

    async def _acquire(self) -> None:
        condition = self._get_condition()
        while True:
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            with self._lock:  # overlapping runs in other threads share the count
                admitted = self.in_flight < self.level
                if admitted:
                    self.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            if admitted:
                return
            async with condition:
                with suppress(TimeoutError):
                    await asyncio.wait_for(condition.wait(), _POLL_S)

    async def _wake(self) -> None:
        condition = self._get_condition()
        async with condition:
            condition.notify_all()

    def _on_success(self, latency_s: float) -> None:
        self._latency = latency_s if self._baseline == math.inf else 0.8 * self._latency + 0.2 * latency_s
        self._baseline = min(self._baseline, self._latency)
        if not self.adaptive or self.limit >= self.ceiling:
            return
        level = self.level
        self._window_ok += 1
        if self._window_ok >= level:
            self._good = max(self._good, level)
            if level >= self._plateau:  # a probe held: the server takes more now
                self._plateau = self.ceiling + 1
                self._probe_interval_s = self.base_probe_interval_s
        if self._latency > self.latency_tolerance * self._baseline:
            return  # the server is queueing: hold the level
        if level + 1 >= self._plateau and time.monotonic() - self._last_cut < self._probe_interval_s:
            return
        before = level
        self.limit = min(float(self.ceiling), self.limit + 1.0 / level)
        if self.level != before:
            self._window_ok = 0

    def _on_overload(self, slot: Slot) -> None:
        if not self.adaptive or slot.epoch != self.epoch:
            return  # one cut per overload episode
        level = self.level
        probing = level >= self._plateau
        if self._good and self._good < level:
            new = self._good
        else:
            new = max(1, int(level * self.backoff))
            self._good = 0  # what held before does not hold now
        self._plateau = level
        if probing:
            self._probe_interval_s = min(self.max_probe_interval_s, self._probe_interval_s * 2)
        self.limit = float(new)
        self.epoch += 1
        self.cuts += 1
        self._window_ok = 0
        self._last_cut = time.monotonic()
        log.info("%s: endpoint overloaded at %d in flight; concurrency now %d", self.name, level, new)
