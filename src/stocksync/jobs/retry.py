"""When a failed job runs again, and when it is given up: shared by both queue backends.

Backoff is exponential with *full jitter* (a uniform draw between zero and the capped
exponential ceiling). Jitter spreads the retries of jobs that failed together (a platform
outage fails every flush at once), so they do not come back as one synchronised burst.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.jobs.queue import PermanentJobError
from stocksync.storage.activity import record
from stocksync.storage.tables import connections, stores

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
) -> None:
    """Log a given-up job in ``conn``'s transaction, with what it takes to run it again.

    A job naming an existing store (``store_id`` in its arguments) or connection (logged
    against its destination) is logged against that store, so that the merchant sees it; any
    other job is logged system-wide.
    """
    store_id: int | None = None
    candidate = args.get("store_id")
    via_connection = args.get("connection_id")
    if isinstance(candidate, int) and not isinstance(candidate, bool):
        found = await conn.scalar(select(stores.c.id).where(stores.c.id == candidate))
        store_id = int(found) if found is not None else None
    elif isinstance(via_connection, int) and not isinstance(via_connection, bool):
        # A connection's job writes to its destination: that is whose log shows it.
        found = await conn.scalar(
            select(connections.c.destination_store_id).where(connections.c.id == via_connection)
        )
        store_id = int(found) if found is not None else None
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
