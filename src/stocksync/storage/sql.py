"""Portable statements that differ by dialect: insert-or-ignore and upsert."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert


def _insert(conn: AsyncConnection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def insert_ignore(
    conn: AsyncConnection,
    table: Table,
    values: Mapping[str, Any],
    conflict: Sequence[str],
    returning: Sequence[str] = (),
) -> Any | None:
    """Insert a row unless one with the same ``conflict`` key exists.

    Returns the requested ``returning`` row (or True) when inserted, None when it existed.
    The conflict never aborts the surrounding transaction."""
    stmt = _insert(conn, table).values(**values).on_conflict_do_nothing(index_elements=conflict)
    if returning:
        stmt = stmt.returning(*(table.c[name] for name in returning))
        return (await conn.execute(stmt)).first()
    result = await conn.execute(stmt)
    return True if result.rowcount else None


async def upsert(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict: Sequence[str],
    update: Mapping[str, Any],
    where: Callable[[Any], Any] | None = None,
) -> None:
    """Insert ``rows``; on conflict apply ``update`` (column -> value or expression, where
    ``excluded(name)`` refers to the proposed row), only where ``where`` (a function of the
    statement, like the values) holds when given."""
    if not rows:
        return
    # executemany, not one multi-row VALUES: compiling a statement with thousands of bound
    # parameters costs far more than the database's work.
    stmt: Insert = _insert(conn, table)
    resolved = {k: (v(stmt) if callable(v) else v) for k, v in update.items()}
    stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]  # on the dialect insert _insert chose
        index_elements=conflict,
        set_=resolved,
        where=where(stmt) if where is not None else None,
    )
    await conn.execute(stmt, [dict(r) for r in rows])


def excluded(name: str) -> Any:
    """Refer to the proposed row's column in an :func:`upsert` update."""
    return lambda stmt: stmt.excluded[name]


async def insert_many_ignore(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict: Sequence[str],
    returning: Sequence[str],
) -> list[Any]:
    """Insert ``rows`` in one statement, skipping those whose ``conflict`` key exists; returns
    the ``returning`` columns of the rows actually inserted."""
    if not rows:
        return []
    stmt = (
        _insert(conn, table)
        .on_conflict_do_nothing(index_elements=conflict)
        .returning(*(table.c[name] for name in returning))
    )
    # executemany with RETURNING: SQLAlchemy batches it as "insertmanyvalues".
    return list((await conn.execute(stmt, [dict(r) for r in rows])).all())
