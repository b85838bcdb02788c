"""Creating the schema: Alembic for operators (``stocksync migrate``), ``create_all`` for tests."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.storage.tables import metadata


async def create_all(engine: AsyncEngine) -> None:
    """Create every table directly (fast path for tests; production uses migrations)."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def drop_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
