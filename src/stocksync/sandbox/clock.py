"""Injectable clocks.

Everything in the sandbox that depends on time (rate-limit buckets, webhook retry backoff,
bulk operation completion, timestamps) reads one clock, so that tests can drive time by
hand and benchmarks can run Shopify's hours-long schedules in minutes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time in seconds since the epoch (virtual when scaled or manual)."""

    def monotonic(self) -> float:
        """A monotonic time in virtual seconds."""

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of virtual time."""


class ScaledClock:
    """Real time, optionally running `time_scale` times faster than the wall clock."""

    def __init__(self, time_scale: float = 1.0, start: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._wall0 = time.time() if start is None else start
        self._mono0 = time.monotonic()

    def monotonic(self) -> float:
        return (time.monotonic() - self._mono0) * self.time_scale

    def now(self) -> float:
        return self._wall0 + self.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.time_scale)


class ManualClock:
    """A clock that only moves when `advance` is called; safe to advance from another thread.

    Sleepers are woken on their own event loop, so a sandbox served from a background thread
    can be driven by a test running in the main thread.
    """

    def __init__(self, start: float = 1_735_689_600.0) -> None:  # 2025-01-01T00:00:00Z
        self._now = start
        self._start = start
        self._elapsed = 0.0  # kept apart so that small steps do not drown in epoch seconds
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._sleepers: list[
            tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._elapsed

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), loop, future))
        await future

    def pending_sleepers(self) -> int:
        with self._lock:
            return sum(1 for *_, f in self._sleepers if not f.done())

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._now += seconds
            self._elapsed += seconds
            due = []
            while self._sleepers and self._sleepers[0][0] <= self._now:
                due.append(heapq.heappop(self._sleepers))
        for _, _, loop, future in due:
            loop.call_soon_threadsafe(_wake, future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
