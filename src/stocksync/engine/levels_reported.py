"""Stock levels as the platform reports them, per location, ordered by the platform's time.

Reading a level costs API points (three per item and location on Shopify) and a source at 50
changes per second would spend more on reads than its plan restores. Every level webhook
already carries the new level and the time of the change, so a report is taken as the level
when it is the newest seen for that item and location:

- a report older than the one recorded is stale (webhooks arrive out of order) and is ignored;
- a newer one replaces the recorded level;
- two reports of the same second that disagree cannot be ordered (the platform's time has
  whole seconds): the row is flagged ``needs_read`` and the next refresh reads the level.

A read stores what it saw if no report arrived while it was in flight, or if the platform
gave the level's time of change and the report is older; it then carries that time, so that
a report from before it, delivered late, is stale. Otherwise the report stands. Reports the
platform never delivered leave a level behind until the next change or the periodic
reconciliation, as before: reconciliation reads.

These rows use the location's own id as their ``location``; a source's summed level over its
shared locations stays in the ``*`` row (``engine/inventory.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, false, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.inventory import Standing, against_reports, time_after_ours
from stocksync.domain.ports import LevelsRead
from stocksync.storage.sql import excluded, upsert
from stocksync.storage.tables import sync_state


@dataclass(frozen=True)
class Report:
    item_id: str
    location_id: str
    available: int
    changed_at: int
    # Not the echo of a write of ours: a destination confirms it by writing over it.
    unconfirmed: bool = True


@dataclass(frozen=True)
class LocationLevel:
    level: int | None  # None: the location does not stock the item
    reported_at: int | None
    needs_read: bool


def _newer(stmt: Any) -> Any:
    return or_(
        sync_state.c.reported_at.is_(None),
        sync_state.c.reported_at < stmt.excluded.reported_at,
    )


async def record_reports(
    conn: AsyncConnection, reports: Sequence[tuple[int, Report]], now: datetime
) -> None:
    """Take each (store id, report) that is the newest for its level (see the module doc)."""
    if not reports:
        return
    # Key order, as every transaction takes sync_state rows (PostgreSQL deadlocks otherwise);
    # one statement per row (executemany), so that two reports of one level in a batch are
    # applied one after the other, each compared with the last.
    rows = [
        {
            "store_id": store_id,
            "item_id": r.item_id,
            "location": r.location_id,
            "last_read": r.available,
            "read_version": 1,
            "reported_at": r.changed_at,
            "needs_read": False,
            "unconfirmed": r.unconfirmed,
            "updated_at": now,
        }
        for store_id, r in sorted(
            set(reports),
            key=lambda x: (
                x[0],
                x[1].item_id,
                x[1].location_id,
                x[1].changed_at,
                x[1].available,
                x[1].unconfirmed,
            ),
        )
    ]

    def disagrees(stmt: Any) -> Any:
        return and_(
            sync_state.c.reported_at == stmt.excluded.reported_at,
            sync_state.c.last_read.is_distinct_from(stmt.excluded.last_read),
        )

    await upsert(
        conn,
        sync_state,
        rows,
        conflict=("store_id", "item_id", "location"),
        update={
            "last_read": lambda s: case(
                (_newer(s), s.excluded.last_read), else_=sync_state.c.last_read
            ),
            "reported_at": lambda s: case(
                (_newer(s), s.excluded.reported_at), else_=sync_state.c.reported_at
            ),
            "needs_read": lambda s: case(
                (_newer(s), false()), (disagrees(s), True), else_=sync_state.c.needs_read
            ),
            "unconfirmed": lambda s: case(
                (_newer(s), s.excluded.unconfirmed), else_=sync_state.c.unconfirmed
            ),
            "read_version": sync_state.c.read_version + 1,
            "updated_at": excluded("updated_at"),
        },
    )


async def location_levels(
    conn: AsyncConnection, store_id: int, items: Sequence[str], locations: Sequence[str]
) -> dict[tuple[str, str], LocationLevel]:
    if not items or not locations:
        return {}
    rows = await conn.execute(
        select(
            sync_state.c.item_id,
            sync_state.c.location,
            sync_state.c.last_read,
            sync_state.c.reported_at,
            sync_state.c.needs_read,
        ).where(
            sync_state.c.store_id == store_id,
            sync_state.c.item_id.in_(list(items)),
            sync_state.c.location.in_(list(locations)),
        )
    )
    return {(r[0], r[1]): LocationLevel(r[2], r[3], bool(r[4])) for r in rows}


def known_levels(
    rows: Mapping[tuple[str, str], LocationLevel], item: str, locations: Sequence[str]
) -> dict[str, int | None] | None:
    """The item's level at each location, or None when one of them must be read first."""
    levels: dict[str, int | None] = {}
    for loc in locations:
        row = rows.get((item, loc))
        if row is None or row.needs_read:
            return None
        levels[loc] = row.level
    return levels


async def record_reads(
    conn: AsyncConnection,
    store_id: int,
    seen: Mapping[tuple[str, str], LocationLevel | None],
    levels: Mapping[tuple[str, str], int | None],
    now: datetime,
) -> set[tuple[str, str]]:
    """Store levels read at ``seen``'s keys, ordered against the reports that arrived since
    ``seen`` was taken (``domain/levels.against_reports``): with the level's time of change
    (``LevelsRead.updated_at``) a read later than such a report still stands, and carries its
    time so that older reports delivered later are stale; without it, the report stands.
    Returns the keys stored."""
    if not seen:
        return set()
    times = levels.updated_at if isinstance(levels, LevelsRead) else {}
    keys = sorted(seen)
    query = (
        select(sync_state.c.item_id, sync_state.c.location, sync_state.c.reported_at)
        .where(
            sync_state.c.store_id == store_id,
            tuple_(sync_state.c.item_id, sync_state.c.location).in_(keys),
        )
        .order_by(sync_state.c.item_id, sync_state.c.location)
    )
    if conn.dialect.name == "postgresql":
        # Locked in key order, as every transaction takes sync_state rows, until the rows
        # below are written: no report slips in between this look and the write.
        query = query.with_for_update()
    current = {(r[0], r[1]): r[2] for r in await conn.execute(query)}
    rows: list[dict[str, Any]] = []
    stored: set[tuple[str, str]] = set()
    for key in keys:
        before = seen[key]
        reported_now = current.get(key)
        at = times.get(key)
        standing = against_reports(before.reported_at if before else None, reported_now, at)
        if standing is not Standing.OURS:
            continue
        stored.add(key)
        rows.append(
            {
                "store_id": store_id,
                "item_id": key[0],
                "location": key[1],
                "last_read": levels.get(key),
                "read_version": 1,
                "reported_at": time_after_ours(reported_now, at),
                "needs_read": False,
                "unconfirmed": False,
                "updated_at": now,
            }
        )
    await upsert(
        conn,
        sync_state,
        rows,
        conflict=("store_id", "item_id", "location"),
        update={
            "last_read": excluded("last_read"),
            "reported_at": excluded("reported_at"),
            "needs_read": False,
            "unconfirmed": False,
            "read_version": sync_state.c.read_version + 1,
            "updated_at": excluded("updated_at"),
        },
    )
    return stored
