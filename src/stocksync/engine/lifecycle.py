"""App lifecycle and privacy (B5): uninstall, and the mandatory privacy webhooks."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.engine.records import StoreRecord
from stocksync.engine.stores import uninstall_store
from stocksync.storage import activity
from stocksync.storage.tables import (
    inbox,
    ledger,
    order_lines,
    orders_seen,
    source_dirty,
    stores,
    sync_state,
)


async def app_uninstalled(conn: AsyncConnection, store: StoreRecord) -> None:
    """Suspend the store's connections and erase its access token."""
    await uninstall_store(
        conn,
        store.id,
        f"{store.name} uninstalled the app: its connections are suspended and its access "
        "token erased; reinstalling resumes them as they were (a paused one stays paused)",
    )


async def shop_redact(conn: AsyncConnection, store: StoreRecord) -> None:
    """Erase the store's data: credentials, keys, order records and inbox payloads. The
    store row stays, anonymised and marked redacted, so that later events for it are known
    to be ignorable and links of other stores keep their history."""
    for table, column in (
        (orders_seen, orders_seen.c.destination_store_id),
        (order_lines, order_lines.c.destination_store_id),
        (ledger, ledger.c.destination_store_id),
        (sync_state, sync_state.c.store_id),
        (source_dirty, source_dirty.c.store_id),
    ):
        await conn.execute(delete(table).where(column == store.id))
    await conn.execute(
        update(inbox)
        .where(inbox.c.platform == store.platform, inbox.c.store_ref == store.external_id)
        .values(payload="{}", event=None)
    )
    await conn.execute(
        update(stores)
        .where(stores.c.id == store.id)
        .values(
            status="redacted",
            credentials=None,
            key_hash=None,
            key_encrypted=None,
            settings={},
        )
    )
    await uninstall_store(conn, store.id, f"{store.name}'s data was erased at the shop's request")


async def customer_privacy(conn: AsyncConnection, store: StoreRecord, topic: str) -> None:
    """stocksync stores no customer data (orders are kept as ids and quantities only), so a
    data request or a customer erasure has nothing to return or erase; it is recorded."""
    await activity.record(
        conn,
        store_id=store.id,
        level="info",
        kind="privacy_request",
        message=f"{topic}: stocksync keeps no customer data for {store.name}; nothing to do",
    )
