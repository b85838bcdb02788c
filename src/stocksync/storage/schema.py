"""Creating the schema: Alembic for operators (``stocksync migrate``), ``create_all`` for tests."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.storage.migrate import script_directory
from stocksync.storage.tables import metadata


async def create_all(engine: AsyncEngine) -> None:
    """Create every table directly (fast path for tests; production uses migrations), stamped
    at the migration head: the tables are the head's (a test compares them), and `serve` or
    `worker` started on them take them for what they are instead of migrating them again."""

    def create(sync_conn: Connection) -> None:
        metadata.create_all(sync_conn)
        MigrationContext.configure(sync_conn).stamp(script_directory(), "head")

    async with engine.begin() as conn:
        await conn.run_sync(create)


async def drop_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
