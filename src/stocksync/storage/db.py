"""Database engines: SQLite (WAL, busy timeout, BEGIN IMMEDIATE) or PostgreSQL."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from stocksync.config import async_url

SQLITE_BUSY_TIMEOUT_MS = 30_000


_READ_ONLY = "stocksync_read_only"


def is_sqlite(engine: AsyncEngine | AsyncConnection) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """Create the async engine for ``url``, with the per-connection settings each backend needs."""
    url = async_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            echo=echo,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite would otherwise open transactions itself, lazily and as DEFERRED: a
        # deferred reader that later writes gets "database is locked" at once instead of
        # waiting. We emit BEGIN IMMEDIATE ourselves (below). WAL must be set outside a
        # transaction, hence here.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # SQLite has one writer. Left to its busy handler, waiting writers sleep and poll, and a
    # process that commits and begins again at once wins every time: a steady stream of
    # webhook transactions would starve the job worker. In one process, writers queue on a
    # fair lock instead; between processes, the busy timeout still applies.
    writers = asyncio.Lock()
    # The connections holding ``writers``: a reader's commit must not release a writer's lock.
    # (Not ``conn.info``: an invalidated connection, say one cancelled mid-query, raises on
    # access to it while its rollback is being handled.)
    holders: weakref.WeakSet[Any] = weakref.WeakSet()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(_READ_ONLY):
            # A reader takes a snapshot at its first read and never waits for the writer.
            conn.exec_driver_sql("BEGIN")
            return
        await_only(writers.acquire())
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.release()
            raise
        holders.add(conn)

    def _release(conn: Any) -> None:
        if conn in holders:
            holders.discard(conn)
            writers.release()

    event.listen(engine.sync_engine, "commit", _release)
    event.listen(engine.sync_engine, "rollback", _release)


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that only reads: on SQLite it neither takes nor waits for the write lock
    (WAL readers see the last committed state), so it is never delayed by a writer."""
    async with engine.connect() as conn:
        await conn.execution_options(**{_READ_ONLY: True})
        yield conn


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One write transaction: committed on success, rolled back on any exception."""
    async with engine.begin() as conn:
        yield conn
