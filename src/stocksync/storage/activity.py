"""The activity log: what the system did for a store, and every failure with its reason."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.storage.tables import activity_log

Level = Literal["info", "warning", "error"]


def utcnow() -> datetime:
    return datetime.now(UTC)


async def record(
    conn: AsyncConnection,
    *,
    store_id: int | None,
    level: Level,
    kind: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    retry: Mapping[str, Any] | None = None,
) -> None:
    """Append one entry in the caller's transaction.

    ``message`` is a plain sentence for a merchant; ``details`` holds ids for operators;
    ``retry`` (a task name and its arguments) says how the failure can be retried.
    """
    await conn.execute(
        activity_log.insert().values(
            store_id=store_id,
            at=utcnow(),
            level=level,
            kind=kind,
            message=message,
            details=dict(details or {}),
            retry=dict(retry) if retry is not None else None,
        )
    )
