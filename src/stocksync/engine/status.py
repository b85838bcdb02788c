"""Sync health at a glance (stores, connections, work waiting, the latest failure per store),
and finding stores by the names an operator types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.engine.records import StoreRecord, load_store
from stocksync.storage.tables import (
    activity_log,
    connections,
    flush_pending,
    ledger,
    locations,
    orders_to_sync,
    stores,
    variant_links,
)


@dataclass(frozen=True)
class StoreStatus:
    id: int
    platform: str
    external_id: str
    name: str
    role: str
    status: str
    pending_flush: int  # destination variants waiting for a level write
    pending_ledger: int  # order, edit and refund changes not yet applied to this root source
    oldest_pending_ledger: datetime | None  # when the oldest of them was counted
    orders_to_sync: int  # orders a backfill found on this destination, not yet applied
    last_error_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class ConnectionStatus:
    id: int
    source: str
    destination: str
    status: str
    receiving_location: str | None
    linked_variants: int


@dataclass(frozen=True)
class SyncStatus:
    stores: list[StoreStatus]
    connections: list[ConnectionStatus]


def role_of(is_source: bool, is_destination: bool) -> str:
    if is_source and is_destination:
        return "hub"
    return "source" if is_source else "destination"


async def sync_status(conn: AsyncConnection) -> SyncStatus:
    flush_counts: dict[int, int] = dict(
        (
            await conn.execute(
                select(connections.c.destination_store_id, func.count())
                .select_from(flush_pending)
                .join(connections, connections.c.id == flush_pending.c.connection_id)
                .group_by(connections.c.destination_store_id)
            )
        ).all()
    )
    ledger_counts: dict[int, tuple[int, datetime | None]] = {
        r[0]: (int(r[1]), r[2])
        for r in await conn.execute(
            select(ledger.c.root_store_id, func.count(), func.min(ledger.c.created_at))
            .where(ledger.c.status == "pending")
            .group_by(ledger.c.root_store_id)
        )
    }
    unsynced: dict[int, int] = dict(
        (
            await conn.execute(
                select(orders_to_sync.c.store_id, func.count()).group_by(orders_to_sync.c.store_id)
            )
        ).all()
    )
    latest = (
        select(activity_log.c.store_id, func.max(activity_log.c.id).label("last_id"))
        .where(activity_log.c.level == "error", activity_log.c.store_id.is_not(None))
        .group_by(activity_log.c.store_id)
        .subquery()
    )
    errors = {
        r.store_id: (r.at, r.message)
        for r in await conn.execute(
            select(activity_log.c.store_id, activity_log.c.at, activity_log.c.message).join(
                latest, latest.c.last_id == activity_log.c.id
            )
        )
    }
    found_stores = [
        StoreStatus(
            id=r.id,
            platform=r.platform,
            external_id=r.external_id,
            name=r.name,
            role=role_of(r.is_source, r.is_destination),
            status=r.status,
            pending_flush=int(flush_counts.get(r.id, 0)),
            pending_ledger=ledger_counts.get(r.id, (0, None))[0],
            oldest_pending_ledger=ledger_counts.get(r.id, (0, None))[1],
            orders_to_sync=int(unsynced.get(r.id, 0)),
            last_error_at=errors.get(r.id, (None, None))[0],
            last_error=errors.get(r.id, (None, None))[1],
        )
        for r in await conn.execute(select(stores).order_by(stores.c.id))
    ]
    names = {s.id: s.name for s in found_stores}
    linked: dict[int, int] = dict(
        (
            await conn.execute(
                select(variant_links.c.connection_id, func.count())
                .where(variant_links.c.status == "active")
                .group_by(variant_links.c.connection_id)
            )
        ).all()
    )
    found_connections = [
        ConnectionStatus(
            id=r.id,
            source=names.get(r.source_store_id, str(r.source_store_id)),
            destination=names.get(r.destination_store_id, str(r.destination_store_id)),
            status=r.status,
            receiving_location=r.receiving_location,
            linked_variants=int(linked.get(r.id, 0)),
        )
        for r in await conn.execute(select(connections).order_by(connections.c.id))
    ]
    return SyncStatus(found_stores, found_connections)


class AmbiguousStoreError(ValueError):
    pass


async def find_store(conn: AsyncConnection, ref: str) -> StoreRecord | None:
    """A store by its id, or by its external id (a shop domain) when unique across platforms."""
    ref = ref.strip()
    if ref.isdigit():
        return await load_store(conn, int(ref))
    ids = (await conn.execute(select(stores.c.id).where(stores.c.external_id == ref.lower()))).all()
    if len(ids) > 1:
        raise AmbiguousStoreError(f"{ref} names stores on several platforms; give the store id")
    return await load_store(conn, ids[0][0]) if ids else None


async def store_locations(conn: AsyncConnection, store_id: int) -> list[tuple[str, str, bool]]:
    """(external id, name, active) of a store's recorded locations."""
    return [
        (r.external_id, r.name, r.active)
        for r in await conn.execute(
            select(locations.c.external_id, locations.c.name, locations.c.active)
            .where(locations.c.store_id == store_id)
            .order_by(locations.c.id)
        )
    ]


async def active_connections_of(conn: AsyncConnection, destination_store_id: int) -> list[int]:
    return [
        r[0]
        for r in await conn.execute(
            select(connections.c.id)
            .where(
                connections.c.destination_store_id == destination_store_id,
                connections.c.status == "active",
            )
            .order_by(connections.c.id)
        )
    ]
