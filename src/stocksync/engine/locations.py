"""A store's locations read again after the platform says they changed.

Locations matter twice: a source's level is the sum over its shared active locations, so a
location deactivated, activated or deleted changes every item's level; and a destination
receives stock at one location, which must stay active for its levels to be written."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.engine import schedule
from stocksync.engine.records import load_store
from stocksync.engine.runtime import Runtime
from stocksync.engine.stores import set_locations
from stocksync.storage import activity
from stocksync.storage.tables import connections, locations


async def refresh_locations(rt: Runtime, store_id: int) -> list[str]:
    """Record the store's current locations; returns what changed, in plain words."""
    async with rt.db.begin() as conn:
        store = await load_store(conn, store_id)
    if store is None or store.status != "active":
        return []
    found = await rt.platforms(store).list_locations()
    async with rt.db.begin() as conn:
        before = await _recorded(conn, store_id)
        await set_locations(conn, store_id, found)
        after = await _recorded(conn, store_id)
        changes = _describe(before, after)
        if not changes:
            return []
        await activity.record(
            conn,
            store_id=store_id,
            level="info",
            kind="locations_changed",
            message=f"{store.name}: " + "; ".join(changes),
        )
        counted_before = {k for k, (_, active, shared) in before.items() if active and shared}
        counted_after = {k for k, (_, active, shared) in after.items() if active and shared}
        if store.is_source and counted_before != counted_after:
            # Every item's summed level may have moved: read them all and compare every
            # destination (the same path as a reconciliation).
            await schedule.reconcile(rt, conn, store_id)
        if store.is_destination:
            active = {k for k, (_, is_active, _) in after.items() if is_active}
            rows = await conn.execute(
                select(connections.c.id, connections.c.receiving_location).where(
                    connections.c.destination_store_id == store_id,
                    connections.c.status == "active",
                )
            )
            for connection_id, receiving in rows:
                if receiving is not None and receiving not in active:
                    name = after.get(receiving, before.get(receiving, (receiving, False, False)))[0]
                    await activity.record(
                        conn,
                        store_id=store_id,
                        level="error",
                        kind="receiving_location_inactive",
                        message=f"{store.name}'s receiving location {name!r} is no longer "
                        "active: its levels cannot be written until the connection receives "
                        "at another location (`stocksync connect --location`)",
                        details={"connection_id": connection_id, "location": receiving},
                    )
    return changes


async def _recorded(conn: AsyncConnection, store_id: int) -> dict[str, tuple[str, bool, bool]]:
    """(name, active, shared) of each location recorded for the store."""
    rows = await conn.execute(
        select(
            locations.c.external_id, locations.c.name, locations.c.active, locations.c.shared
        ).where(locations.c.store_id == store_id)
    )
    return {r[0]: (r[1], bool(r[2]), bool(r[3])) for r in rows}


def _describe(
    before: dict[str, tuple[str, bool, bool]], after: dict[str, tuple[str, bool, bool]]
) -> list[str]:
    changes = []
    for key, (name, active, _) in sorted(after.items()):
        old = before.get(key)
        if old is None:
            changes.append(f"location {name!r} added" + ("" if active else " (inactive)"))
            continue
        if old[0] != name:
            changes.append(f"location {old[0]!r} renamed {name!r}")
        if old[1] != active:
            changes.append(f"location {name!r} " + ("activated" if active else "deactivated"))
    return changes
