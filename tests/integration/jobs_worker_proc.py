"""A job worker in its own process, for the fault tests; and what those tests share with it.

Run as ``python -m tests.integration.jobs_worker_proc BACKEND URL --mode MODE``. Handlers
write to ``job_events`` (a table of the tests' own), so that the test process sees what a
worker did even after the worker was killed.

- ``--mode block``: task ``block`` records ``started`` and then never returns (until killed).
- ``--mode record``: task ``record`` records ``run`` once per execution and returns.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.jobs.embedded import EmbeddedJobQueue
from stocksync.jobs.pg import ProcrastinateJobQueue, ensure_procrastinate_schema
from stocksync.jobs.queue import JobContext, TaskRegistry
from stocksync.jobs.retry import ExponentialBackoff
from stocksync.storage.db import create_engine
from stocksync.storage.schema import create_all

# "sqlite": the embedded queue on SQLite; "postgres": procrastinate; "postgres-embedded": the
# embedded queue on PostgreSQL.
BACKENDS = ("sqlite", "postgres", "postgres-embedded")

test_metadata = MetaData()

job_events = Table(
    "job_events",
    test_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("key", String(64), nullable=False),
    Column("job_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(64), nullable=False),
    Column("at", Float, nullable=False),
)

Queue = EmbeddedJobQueue | ProcrastinateJobQueue


def make_queue(
    backend: str,
    engine: AsyncEngine,
    url: str,
    *,
    max_attempts: int = 3,
    seed: int = 0,
    lease_seconds: float = 1.0,
    poll_interval: float = 0.05,
    **embedded_options: Any,
) -> Queue:
    """A queue tuned for tests: fast polls, short leases and heartbeats, seeded backoff."""
    backoff = ExponentialBackoff(base=0.05, cap=0.2, rng=random.Random(seed))
    if backend == "postgres":
        return ProcrastinateJobQueue(
            engine,
            url,
            max_attempts=max_attempts,
            backoff=backoff,
            poll_interval=poll_interval,
            heartbeat_interval=0.2,
            stalled_worker_timeout=1.0,
            sweep_interval=0.2,
            drain_horizon=0.5,
        )
    return EmbeddedJobQueue(
        engine,
        lease_seconds=lease_seconds,
        max_attempts=max_attempts,
        backoff=backoff,
        poll_interval=poll_interval,
        drain_horizon=0.5,
        **embedded_options,
    )


async def prepare_database(backend: str, engine: AsyncEngine) -> None:
    await create_all(engine)
    async with engine.begin() as conn:
        await conn.run_sync(test_metadata.create_all)
    if backend == "postgres":
        await ensure_procrastinate_schema(engine)


async def record_event(
    engine: AsyncEngine, kind: str, key: str, context: JobContext, worker: str
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            job_events.insert().values(
                kind=kind,
                key=key,
                job_id=context.job_id,
                attempt=context.attempt,
                worker=worker,
                at=time.time(),
            )
        )


async def events(engine: AsyncEngine) -> list[tuple[str, str, int, str]]:
    """(kind, key, attempt, worker) in the order they were recorded."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                job_events.c.kind, job_events.c.key, job_events.c.attempt, job_events.c.worker
            ).order_by(job_events.c.id)
        )
        return [(r.kind, r.key, r.attempt, r.worker) for r in rows]


async def wait_until(
    condition: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.02
) -> None:
    """Poll ``condition`` until true; fail with ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)


def _registry(engine: AsyncEngine, mode: str, worker: str) -> TaskRegistry:
    registry = TaskRegistry()

    async def block(context: JobContext, args: dict[str, Any]) -> None:
        await record_event(engine, "started", args["key"], context, worker)
        await asyncio.Event().wait()

    async def record(context: JobContext, args: dict[str, Any]) -> None:
        await record_event(engine, "run", args["key"], context, worker)
        # Stands for the work of a real job, so that the processes' jobs overlap in time.
        await asyncio.sleep(float(args.get("work", 0.0)))

    if mode == "block":
        registry.register("block", block)
    else:
        registry.register("record", record)
    return registry


async def _main(backend: str, url: str, mode: str, concurrency: int, lease: float) -> None:
    engine = create_engine(url)
    worker = f"proc-{os.getpid()}"
    try:
        queue = make_queue(backend, engine, url, lease_seconds=lease)
        registry = _registry(engine, mode, worker)
        async with engine.begin() as conn:
            await conn.execute(
                job_events.insert().values(
                    kind="ready", key=worker, job_id=0, attempt=0, worker=worker, at=time.time()
                )
            )
        await queue.run_worker(registry, concurrency=concurrency, name=worker)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("backend", choices=BACKENDS)
    parser.add_argument("url")
    parser.add_argument("--mode", choices=("block", "record"), required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--lease", type=float, default=1.0)
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(
        _main(options.backend, options.url, options.mode, options.concurrency, options.lease)
    )


if __name__ == "__main__":
    main()
