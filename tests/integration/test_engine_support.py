"""What the engine behaviour tests (``test_engine_*.py``) share; this module holds no tests.

Each of those modules runs on SQLite and on PostgreSQL, like every test using the ``db_url``
fixture, but with one database per module and backend, emptied before each test: creating a
PostgreSQL database per test would cost more than the tests themselves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.storage.tables import activity_log, metadata
from tests.conftest import PG_ADMIN_URL, require_postgres
from tests.harness import Harness

BACKENDS = ["sqlite", "postgres"]


@contextmanager
def module_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database URL for one test module: a SQLite file, or a PostgreSQL database dropped
    afterwards (the PostgreSQL suite is skipped, or failed in CI, when no server answers)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('engine') / 'stocksync.db'}"
        return
    require_postgres()
    name = f"stocksync_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def empty_database(db: AsyncEngine) -> None:
    """Delete every row. A test leaves a few rows behind, for which DELETE is much faster than
    PostgreSQL's TRUNCATE (which locks and recreates every table)."""
    async with db.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(table.delete())
        if db.dialect.name == "postgresql":
            # its events go with it (ON DELETE CASCADE)
            await conn.execute(text("DELETE FROM procrastinate_jobs"))


@asynccontextmanager
async def fresh_harness(url: str) -> AsyncIterator[Harness]:
    """A harness on an emptied database and a new in-memory world."""
    harness = await Harness.create(url)
    try:
        await empty_database(harness.db)
        yield harness
    finally:
        await harness.close()


async def activity(h: Harness, kind: str) -> list[dict[str, Any]]:
    """The activity log entries of one kind, oldest first."""
    async with h.db.connect() as conn:
        rows = await conn.execute(
            select(
                activity_log.c.store_id,
                activity_log.c.level,
                activity_log.c.message,
                activity_log.c.details,
            )
            .where(activity_log.c.kind == kind)
            .order_by(activity_log.c.id)
        )
        return [dict(r._mapping) for r in rows]
