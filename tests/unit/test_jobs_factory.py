"""Choosing the backend from the URL (no connection is opened)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stocksync.config import Settings
from stocksync.jobs.embedded import EmbeddedJobQueue
from stocksync.jobs.factory import is_postgres_url, make_job_queue
from stocksync.jobs.pg import ProcrastinateJobQueue, libpq_conninfo
from stocksync.storage.db import create_engine


@pytest.mark.parametrize(
    ("url", "postgres"),
    [
        ("postgresql://u@db:5432/stocksync", True),
        ("postgres://u@db/stocksync", True),
        ("postgresql+psycopg://u@db/stocksync", True),
        ("sqlite:///data/stocksync.db", False),
        ("sqlite+aiosqlite:///data/stocksync.db", False),
    ],
)
def test_postgres_urls_are_recognised(url: str, postgres: bool) -> None:
    assert is_postgres_url(url) is postgres


async def test_postgres_gets_procrastinate() -> None:
    url = "postgresql://stocksync:secret@db.internal:5432/stocksync"
    engine = create_engine(url)
    try:
        queue = make_job_queue(engine, url, Settings(job_max_attempts=4))
        assert isinstance(queue, ProcrastinateJobQueue)
        assert queue.max_attempts == 4
        assert queue.conninfo == url
    finally:
        await engine.dispose()


async def test_sqlite_gets_the_embedded_queue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stocksync.db'}"
    engine = create_engine(url)
    try:
        queue = make_job_queue(engine, url, Settings(job_lease_seconds=12.5, job_max_attempts=2))
        assert isinstance(queue, EmbeddedJobQueue)
        assert queue.lease.total_seconds() == 12.5
        assert queue.max_attempts == 2
    finally:
        await engine.dispose()


def test_sqlalchemy_urls_become_libpq_uris_with_their_password() -> None:
    assert (
        libpq_conninfo("postgresql+psycopg://u:p%40ss@h:5433/db")
        == "postgresql://u:p%40ss@h:5433/db"
    )
    assert libpq_conninfo("postgres://u@h/db") == "postgresql://u@h/db"
