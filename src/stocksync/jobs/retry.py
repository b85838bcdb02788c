"""When a failed job runs again, and when it is given up: shared by both queue backends.

Backoff is exponential with *full jitter* (a uniform draw between zero and the capped
exponential ceiling). Jitter spreads the retries of jobs that failed together (a platform
outage fails every flush at once), so they do not come back as one synchronised burst.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.jobs.queue import PermanentJobError
from stocksync.storage.activity import record

StoreOfJob = Callable[[AsyncConnection, Mapping[str, Any]], Awaitable[int | None]]
"""The store a job works for, from its arguments, read in the caller's transaction; None when
it works for none. The engine gives it (``engine.failures.store_of_dead_letter``): what a
store or a connection is, and which store a job's arguments name, is the engine's to know."""

# 2**62 seconds is far beyond any cap; bounding the exponent keeps the float finite.
_MAX_EXPONENT = 62


@dataclass
class ExponentialBackoff:
    """Delay before retry number ``n``: ``uniform(0, min(cap, base * 2 ** (n - 1)))`` seconds.

    ``rng`` is injectable so that tests draw a known sequence (``random.Random(seed)``).
    """

    base: float = 1.0
    cap: float = 300.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff base and cap must not be negative")

    def ceiling(self, failed_attempt: int) -> float:
        """The largest delay after the ``failed_attempt``-th run failed (1 for the first)."""
        exponent = min(max(failed_attempt - 1, 0), _MAX_EXPONENT)
        return min(self.cap, self.base * 2.0**exponent)

    def delay(self, failed_attempt: int) -> float:
        return self.rng.uniform(0.0, self.ceiling(failed_attempt))


def is_final(exc: BaseException, attempt: int, max_attempts: int) -> bool:
    """Whether a run that raised ``exc`` on attempt ``attempt`` (1-based) ends the job.

    Both backends ask this one question so that they dead-letter at the same moment.
    """
    return isinstance(exc, PermanentJobError) or attempt >= max_attempts


def describe_error(exc: BaseException) -> str:
    """The error as one line for the activity log and the job row."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def record_dead_letter(
    conn: AsyncConnection,
    *,
    job_id: int,
    task: str,
    args: Mapping[str, Any],
    error: str,
    attempts: int,
    store_of_job: StoreOfJob | None = None,
) -> None:
    """Log a given-up job in ``conn``'s transaction, with what it takes to run it again.

    It is logged against the store ``store_of_job`` finds for it, so that the merchant sees
    it; without one, or for a job of no store, system-wide.
    """
    store_id = await store_of_job(conn, args) if store_of_job is not None else None
    await record(
        conn,
        store_id=store_id,
        level="error",
        kind="job_dead_lettered",
        message=f"Background task {task} was given up after {attempts} attempt(s): {error}",
        details={
            "job_id": job_id,
            "task": task,
            "args": dict(args),
            "error": error,
            "attempts": attempts,
        },
        retry={"task": task, "args": dict(args)},
    )
