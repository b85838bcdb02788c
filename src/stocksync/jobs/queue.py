"""The job queue interface shared by the embedded (SQLite) and procrastinate (PostgreSQL) backends.

The job model is procrastinate's:

- ``lock``: at most one job with a given lock runs at a time; jobs with the same lock run in
  the order they were enqueued.
- ``queueing_lock``: an enqueue that finds a job with the same queueing lock still waiting
  (status ``todo``) is dropped and ``enqueue`` returns ``False``. This is how bursts coalesce;
  it is safe because jobs carry identities, never quantities (a handler reads current state).
- ``schedule_at``: not before this instant.
- retries: a handler that raises is retried with exponential backoff and jitter up to
  ``max_attempts``; then the job is dead-lettered and an error reaches the activity log.
- leases (embedded) / stalled-job sweep (procrastinate): a job of a killed worker runs again.

Enqueueing always happens on the caller's open connection, inside the caller's transaction, so
that the state change and the job that acts on it commit or vanish together.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

JsonArgs = Mapping[str, Any]


def worker_name(role: str = "worker") -> str:
    """A name no other worker has: what it is, its host and process, and a random suffix.

    Leases (embedded) and heartbeats (procrastinate) belong to a worker by name, so two
    processes sharing one would renew each other's claims and hide a dead worker."""
    return f"{role}@{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class JobContext:
    """What a handler learns about the job it runs."""

    job_id: int
    task: str
    attempt: int  # 1 for the first run
    max_attempts: int


Handler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]


@dataclass
class TaskRegistry:
    """Task names mapped to their handlers; both backends run the same registry."""

    handlers: dict[str, Handler] = field(default_factory=dict)

    def register(self, name: str, handler: Handler) -> None:
        if name in self.handlers:
            raise ValueError(f"task {name!r} registered twice")
        self.handlers[name] = handler

    def get(self, name: str) -> Handler:
        try:
            return self.handlers[name]
        except KeyError:
            raise LookupError(f"no handler for task {name!r}") from None


class PermanentJobError(Exception):
    """Raised by a handler for a failure that no retry can fix: dead-letter at once."""


class JobQueue(Protocol):
    """Enqueue inside the caller's transaction; run workers over a registry."""

    async def enqueue(
        self,
        conn: AsyncConnection,
        task: str,
        args: JsonArgs,
        *,
        lock: str | None = None,
        queueing_lock: str | None = None,
        schedule_at: datetime | None = None,
        priority: int = 0,
    ) -> bool:
        """Add a job in ``conn``'s transaction. False when coalesced by ``queueing_lock``."""
        ...

    async def run_worker(
        self,
        registry: TaskRegistry,
        *,
        concurrency: int = 1,
        stop_when_idle: bool = False,
        name: str | None = None,
    ) -> None:
        """Run jobs until cancelled (or, with ``stop_when_idle``, until none is runnable)."""
        ...

    async def drain(
        self,
        registry: TaskRegistry,
        timeout: float = 30.0,  # noqa: ASYNC109 - a deadline is what drain is called with
        *,
        concurrency: int = 1,
    ) -> None:
        """Run jobs until the queue is quiet, or raise ``TimeoutError`` after ``timeout``.

        Quiet: no job is running in any worker and no waiting job is due within the
        backend's short drain horizon (a job scheduled later does not keep it running).
        For tests, tools and the one-shot CLI.
        """
        ...

    async def counts(self) -> dict[str, int]:
        """Jobs per status, for doctor, metrics and tests."""
        ...


# The statuses both backends report in ``counts()``, present even when zero.
JOB_STATUSES = ("todo", "doing", "succeeded", "failed")
