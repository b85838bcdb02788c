"""Rows read into typed records, so that engine code never indexes raw result tuples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.connection import ConnectionSettings
from stocksync.storage.tables import connections, stores


@dataclass(frozen=True)
class StoreRecord:
    id: int
    platform: str
    external_id: str
    name: str
    is_source: bool
    is_destination: bool
    status: str
    api_version: str | None
    base_url: str | None
    credentials: bytes | None
    hidden_tags: tuple[str, ...]
    plan_product_limit: int | None
    settings: dict[str, Any]

    @classmethod
    def from_row(cls, row: Any) -> StoreRecord:
        m = row._mapping
        return cls(
            id=m["id"],
            platform=m["platform"],
            external_id=m["external_id"],
            name=m["name"],
            is_source=m["is_source"],
            is_destination=m["is_destination"],
            status=m["status"],
            api_version=m["api_version"],
            base_url=m["base_url"],
            credentials=m["credentials"],
            hidden_tags=tuple(m["hidden_tags"] or ()),
            plan_product_limit=m["plan_product_limit"],
            settings=dict(m["settings"] or {}),
        )


@dataclass(frozen=True)
class ConnectionRecord:
    id: int
    source_store_id: int
    destination_store_id: int
    status: str
    receiving_location: str | None
    settings: ConnectionSettings

    @classmethod
    def from_row(cls, row: Any) -> ConnectionRecord:
        m = row._mapping
        return cls(
            id=m["id"],
            source_store_id=m["source_store_id"],
            destination_store_id=m["destination_store_id"],
            status=m["status"],
            receiving_location=m["receiving_location"],
            settings=ConnectionSettings.from_json(m["settings"]),
        )


async def load_store(conn: AsyncConnection, store_id: int) -> StoreRecord | None:
    row = (await conn.execute(select(stores).where(stores.c.id == store_id))).first()
    return StoreRecord.from_row(row) if row else None


async def find_store(conn: AsyncConnection, platform: str, external_id: str) -> StoreRecord | None:
    row = (
        await conn.execute(
            select(stores).where(stores.c.platform == platform, stores.c.external_id == external_id)
        )
    ).first()
    return StoreRecord.from_row(row) if row else None


async def load_connection(conn: AsyncConnection, connection_id: int) -> ConnectionRecord | None:
    row = (await conn.execute(select(connections).where(connections.c.id == connection_id))).first()
    return ConnectionRecord.from_row(row) if row else None
