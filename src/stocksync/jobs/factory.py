"""Choosing the job queue backend from the database URL."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.config import Settings, async_url
from stocksync.jobs.embedded import EmbeddedJobQueue
from stocksync.jobs.pg import ProcrastinateJobQueue
from stocksync.jobs.queue import JobQueue
from stocksync.jobs.retry import StoreOfJob


def is_postgres_url(database_url: str) -> bool:
    return make_url(async_url(database_url)).get_backend_name() == "postgresql"


def make_job_queue(
    engine: AsyncEngine,
    database_url: str,
    settings: Settings | None = None,
    *,
    store_of_job: StoreOfJob | None = None,
) -> JobQueue:
    """procrastinate on PostgreSQL, the embedded queue on anything else (SQLite).

    ``settings`` supplies the lease and the attempt budget; without it, the defaults.
    ``store_of_job`` says whose activity log shows a job given up (see ``jobs.retry``).
    """
    max_attempts = settings.job_max_attempts if settings is not None else 8
    if is_postgres_url(database_url):
        if settings is None:
            return ProcrastinateJobQueue(
                engine, database_url, max_attempts=max_attempts, store_of_job=store_of_job
            )
        return ProcrastinateJobQueue(
            engine,
            database_url,
            max_attempts=max_attempts,
            heartbeat_interval=settings.job_heartbeat_seconds,
            stalled_worker_timeout=settings.job_stalled_seconds,
            poll_interval=settings.job_poll_seconds,
            store_of_job=store_of_job,
        )
    lease_seconds = settings.job_lease_seconds if settings is not None else 30.0
    if settings is None:
        return EmbeddedJobQueue(
            engine,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            store_of_job=store_of_job,
        )
    return EmbeddedJobQueue(
        engine,
        lease_seconds=lease_seconds,
        max_attempts=max_attempts,
        poll_interval=settings.job_poll_seconds,
        store_of_job=store_of_job,
    )
