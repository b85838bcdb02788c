"""The per-store cost bucket that keeps requests under Shopify's GraphQL rate limit.

Shopify relies on: the Admin GraphQL API charges each request its *requested* query cost up
front (and refunds the difference with the actual cost afterwards) from a leaky bucket per
app and store; every answer reports ``extensions.cost.throttleStatus`` with
``maximumAvailable``, ``currentlyAvailable`` and ``restoreRate`` (points per second). A
request whose requested cost exceeds what is available is refused with ``THROTTLED``.

The bucket mirrors the last reported status, restored at the reported rate since then, and
makes a caller wait until its request's expected cost is available, so that a well-behaved
client is almost never throttled. It is per instance: one store's bucket never delays
another store's requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class CostBucket:
    def __init__(self, clock: Clock, sleep: Sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self.maximum: float | None = None  # unknown until the first answer
        self.restore_rate = 0.0
        self._available = 0.0
        self._at = 0.0
        # Callers queue here so that concurrent requests of one store do not all see the same
        # points and overdraw the bucket together.
        self._lock = asyncio.Lock()

    def estimate(self) -> float | None:
        """Points available now, by our reckoning; None before Shopify reported any."""
        if self.maximum is None:
            return None
        elapsed = max(0.0, self._clock() - self._at)
        return min(self.maximum, self._available + elapsed * self.restore_rate)

    def delay_for(self, cost: float) -> float:
        """Seconds to wait before ``cost`` points are available (0 when unknown)."""
        available = self.estimate()
        if available is None or self.maximum is None or self.restore_rate <= 0:
            return 0.0
        wanted = min(cost, self.maximum)  # more than the bucket holds: wait for a full one
        return max(0.0, (wanted - available) / self.restore_rate)

    async def acquire(self, cost: float) -> float:
        """Wait until ``cost`` points should be available and reserve them; returns the wait."""
        async with self._lock:
            delay = self.delay_for(cost)
            if delay > 0:
                await self._sleep(delay)
            available = self.estimate()
            if available is not None:
                # Reserved until the answer reports the real level (which replaces this).
                self._available = available - cost
                self._at = self._clock()
            return delay

    def update(self, status: Mapping[str, Any]) -> None:
        """Adopt a ``throttleStatus`` reported by Shopify."""
        try:
            maximum = float(status["maximumAvailable"])
            available = float(status["currentlyAvailable"])
            rate = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return  # a malformed status teaches us nothing; keep the last good one
        self.maximum, self._available, self.restore_rate = maximum, available, rate
        self._at = self._clock()

    def wait_for_throttled(self, requested: float) -> float:
        """After a THROTTLED answer: seconds until ``requested`` points are back."""
        delay = self.delay_for(requested)
        return delay if delay > 0 else 1.0 / max(self.restore_rate, 1.0)
