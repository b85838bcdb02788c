"""Stores, roles, unique keys and connections (B1-B4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.connection import ConnectionSettings
from stocksync.domain.graph import check_connect
from stocksync.domain.keys import KeyAttemptPolicy, key_hash, looks_like_key, new_key
from stocksync.domain.ports import PlatformLocation
from stocksync.engine import schedule
from stocksync.engine.ledger import reschedule_pending
from stocksync.engine.marks import mark_pending, mark_source_dirty
from stocksync.engine.orders import start_backfill_cursor
from stocksync.engine.records import ConnectionRecord, StoreRecord, load_connection, load_store
from stocksync.engine.runtime import Runtime
from stocksync.storage import activity
from stocksync.storage.crypto import Vault
from stocksync.storage.sql import excluded, upsert
from stocksync.storage.tables import (
    connections,
    key_attempts,
    locations,
    product_links,
    stores,
    variant_links,
)

DEFAULT_HIDDEN_TAGS = ("stocksync-hidden", "syncio-hidden")


class StoreError(ValueError):
    """A store or connection operation was refused; the message says why, plainly."""


class RateLimitedError(StoreError):
    def __init__(self, message: str, retry_after: timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WrongKeyError(StoreError):
    """The key matches no source store. The failed attempt was written in the caller's
    transaction, which must still commit it (see :func:`connect_by_key`)."""


@dataclass(frozen=True)
class Roles:
    source: bool
    destination: bool

    @classmethod
    def parse(cls, role: str) -> Roles:
        if role == "source":
            return cls(True, False)
        if role == "destination":
            return cls(False, True)
        if role == "hub":
            return cls(True, True)
        raise StoreError(f"role must be source, destination or hub, not {role!r}")


def _require_safe_version(platform: str, api_version: str | None) -> None:
    """Every path that sets a store's API version comes through here (CLI, OAuth install)."""
    if platform != "shopify" or api_version is None:
        return
    from stocksync.platforms.shopify.versions import refusal

    try:
        reason = refusal(api_version)
    except ValueError as exc:  # malformed
        raise StoreError(str(exc)) from None
    if reason is not None:
        raise StoreError(reason)


async def install_store(
    rt: Runtime,
    conn: AsyncConnection,
    *,
    vault: Vault,
    platform: str,
    external_id: str,
    name: str | None = None,
    role: str,
    credentials: str | None = None,
    base_url: str | None = None,
    api_version: str | None = None,
    plan_product_limit: int | None = None,
    hub_enabled: bool = False,
) -> tuple[StoreRecord, str | None]:
    """Install a store with its role (B1). Returns the store and, for a source, its new key.

    A hub (source and destination at once) needs the operator to enable it."""
    roles = Roles.parse(role)
    _require_safe_version(platform, api_version)
    if roles.source and roles.destination and not hub_enabled:
        raise StoreError("a store can be both source and destination only when hubs are enabled")
    existing = (
        await conn.execute(
            select(stores.c.id, stores.c.status, stores.c.is_source, stores.c.is_destination).where(
                stores.c.platform == platform, stores.c.external_id == external_id
            )
        )
    ).first()
    if existing is not None and existing[1] == "active":
        if (existing[2], existing[3]) != (roles.source, roles.destination):
            raise StoreError(
                f"{external_id} is already installed with another role; changing its role means "
                "uninstalling it first (its links are kept as unlinked products)"
            )
        reinstalled = await _reinstall(
            conn,
            vault,
            existing[0],
            name=name,
            credentials=credentials,
            base_url=base_url,
            api_version=api_version,
            plan_product_limit=plan_product_limit,
        )
        # Its jobs may have given up while its token was refused: what it owes runs again.
        await reschedule_pending(rt, conn, existing[0])
        return reinstalled, None
    key = new_key() if roles.source else None
    values = {
        "name": name or external_id,
        "is_source": roles.source,
        "is_destination": roles.destination,
        "status": "active",
        "credentials": vault.encrypt(credentials) if credentials else None,
        "base_url": base_url,
        "api_version": api_version,
        "plan_product_limit": plan_product_limit,
        "key_hash": key_hash(key) if key else None,
        "key_encrypted": vault.encrypt(key) if key else None,
        "key_rotated_at": rt.clock() if key else None,
    }
    resumed = 0
    if existing is not None:
        await conn.execute(update(stores).where(stores.c.id == existing[0]).values(**values))
        store_id = existing[0]
        if existing[1] == "uninstalled":
            resumed = await _resume_connections(rt, conn, store_id)
    else:
        store_id = (
            await conn.execute(
                stores.insert()
                .values(
                    platform=platform,
                    external_id=external_id,
                    hidden_tags=list(DEFAULT_HIDDEN_TAGS),
                    settings={},
                    created_at=rt.clock(),
                    **values,
                )
                .returning(stores.c.id)
            )
        ).scalar_one()
    if roles.destination:
        await start_backfill_cursor(conn, store_id, rt.clock())
    # Its safety nets start now, not when a worker next starts: the queueing lock keeps one.
    await schedule.periodic(rt, conn, store_id, rt.clock() + rt.periodic_interval)
    # Installed again after an uninstall: sales counted meanwhile, orders still to sync.
    await reschedule_pending(rt, conn, store_id)
    await activity.record(
        conn,
        store_id=store_id,
        level="info",
        kind="store_installed",
        message=f"{name or external_id} installed as {role}"
        + (
            f"; {resumed} connection{'s' if resumed != 1 else ''} suspended by its uninstall "
            "resumed"
            if resumed
            else ""
        ),
        details={"resumed_connections": resumed} if resumed else None,
    )
    store = await load_store(conn, store_id)
    assert store is not None
    return store, key


async def _reinstall(
    conn: AsyncConnection,
    vault: Vault,
    store_id: int,
    *,
    name: str | None,
    credentials: str | None,
    base_url: str | None,
    api_version: str | None,
    plan_product_limit: int | None,
) -> StoreRecord:
    """The app installed again on an active store, with the same role: the merchant approved
    it again (new token, perhaps new scopes) or an operator gave a new admin token. Only what
    identifies and reaches the store changes; its key, connections and links stay. Adapters
    cached in running processes see the new credentials on their next job."""
    values: dict[str, object] = {"base_url": base_url, "api_version": api_version}
    if credentials:
        values["credentials"] = vault.encrypt(credentials)
    if name:
        values["name"] = name
    if plan_product_limit is not None:
        values["plan_product_limit"] = plan_product_limit
    await conn.execute(update(stores).where(stores.c.id == store_id).values(**values))
    store = await load_store(conn, store_id)
    assert store is not None
    await activity.record(
        conn,
        store_id=store_id,
        level="info",
        kind="store_reinstalled",
        message=f"{store.name} installed again; its credentials were updated, its key, "
        "connections and links kept",
        details={"credentials_changed": bool(credentials), "api_version": api_version},
    )
    return store


async def uninstall_store(conn: AsyncConnection, store_id: int, reason: str) -> None:
    """Suspend the store's connections and forget its access token (B5). Links are kept as
    unlinked products, never deleted (B1). Each connection remembers whether it was active or
    paused, so that reinstalling gives the merchant back what they had."""
    await conn.execute(
        update(stores).where(stores.c.id == store_id).values(status="uninstalled", credentials=None)
    )
    await conn.execute(
        update(connections)
        .where(
            (connections.c.source_store_id == store_id)
            | (connections.c.destination_store_id == store_id)
        )
        .where(connections.c.status.in_(("active", "paused")))
        .values(status="suspended", suspended_from=connections.c.status)
    )
    await activity.record(
        conn, store_id=store_id, level="warning", kind="store_uninstalled", message=reason
    )


async def _resume_connections(rt: Runtime, conn: AsyncConnection, store_id: int) -> int:
    """B5: a store installed again resumes the connections its uninstall suspended, each as it
    was (a paused one stays paused), once both of its stores are installed; a disconnected
    one stays disconnected. Resumed connections' levels flow again at once: every linked
    variant is read on both sides and written. Returns how many were resumed."""
    source, destination = stores.alias("source"), stores.alias("destination")
    rows = (
        await conn.execute(
            select(
                connections.c.id,
                connections.c.suspended_from,
                connections.c.source_store_id,
                connections.c.destination_store_id,
            )
            .join(source, source.c.id == connections.c.source_store_id)
            .join(destination, destination.c.id == connections.c.destination_store_id)
            .where(
                (connections.c.source_store_id == store_id)
                | (connections.c.destination_store_id == store_id),
                connections.c.status == "suspended",
                source.c.status == "active",
                destination.c.status == "active",
            )
        )
    ).all()
    for connection_id, was, source_id, destination_id in rows:
        # Suspended before the previous status was kept: it resumes active, as promised then.
        status = was if was in ("active", "paused") else "active"
        await conn.execute(
            update(connections)
            .where(connections.c.id == connection_id)
            .values(status=status, suspended_from=None)
        )
        if status == "active":
            links = (
                await conn.execute(
                    select(variant_links.c.id, variant_links.c.source_item_id).where(
                        variant_links.c.connection_id == connection_id,
                        variant_links.c.status == "active",
                    )
                )
            ).all()
            # Nothing was heard from either store while it was uninstalled: both are read.
            await mark_source_dirty(rt, conn, source_id, sorted({r[1] for r in links}))
            await mark_pending(
                rt, conn, [(connection_id, r[0], destination_id) for r in links], force_read=True
            )
        for party in {source_id, destination_id} - {store_id}:
            await activity.record(
                conn,
                store_id=party,
                level="info",
                kind="connection_resumed",
                message=f"the connection suspended by an uninstall resumed ({status})",
                details={"connection_id": connection_id},
            )
    return len(rows)


async def set_locations(
    conn: AsyncConnection,
    store_id: int,
    found: Sequence[PlatformLocation],
    shared: Sequence[str] | None = None,
) -> None:
    """Record the store's locations, ``found`` being all of them: names and active flags are
    updated, and a location no longer listed (deleted) is kept as inactive, so that history
    that names it still reads. ``shared`` names those a source shares (a new active location
    is shared by default)."""
    await upsert(
        conn,
        locations,
        [
            {
                "store_id": store_id,
                "external_id": loc.id,
                "name": loc.name,
                "active": loc.active,
                "shared": bool(shared is None and loc.active) or loc.id in (shared or ()),
            }
            for loc in found
        ],
        conflict=("store_id", "external_id"),
        update={"name": excluded("name"), "active": excluded("active")},
    )
    await conn.execute(
        update(locations)
        .where(
            locations.c.store_id == store_id,
            locations.c.external_id.not_in([loc.id for loc in found]),
        )
        .values(active=False)
    )
    if shared is not None:
        await conn.execute(
            update(locations)
            .where(locations.c.store_id == store_id)
            .values(shared=locations.c.external_id.in_(list(shared)))
        )


async def rotate_key(rt: Runtime, conn: AsyncConnection, vault: Vault, store_id: int) -> str:
    """A new unique key; connections made with the old one stay (they reference stores)."""
    store = await load_store(conn, store_id)
    if store is None or not store.is_source:
        raise StoreError("only a source store has a unique key")
    key = new_key()
    await conn.execute(
        update(stores)
        .where(stores.c.id == store_id)
        .values(key_hash=key_hash(key), key_encrypted=vault.encrypt(key), key_rotated_at=rt.clock())
    )
    await activity.record(
        conn, store_id=store_id, level="info", kind="key_rotated", message="unique key rotated"
    )
    return key


async def show_key(conn: AsyncConnection, vault: Vault, store_id: int) -> str:
    token = (
        await conn.execute(select(stores.c.key_encrypted).where(stores.c.id == store_id))
    ).scalar()
    if not token:
        raise StoreError("this store has no unique key: only a source store has one")
    return vault.decrypt(token)


async def connect(
    rt: Runtime,
    conn: AsyncConnection,
    *,
    destination_store_id: int,
    key: str,
    actor: str | None = None,
    receiving_location: str | None = None,
    settings: ConnectionSettings | None = None,
    policy: KeyAttemptPolicy = KeyAttemptPolicy(),  # noqa: B008 (immutable)
) -> ConnectionRecord:
    """B2: a destination connects to a source by its unique key."""
    actor = actor or f"store:{destination_store_id}"
    now = rt.clock()
    failures = (
        await conn.execute(
            select(key_attempts.c.at).where(
                key_attempts.c.actor == actor,
                key_attempts.c.success.is_(False),
                key_attempts.c.at > now - policy.window,
            )
        )
    ).all()
    wait = policy.retry_after([r[0] for r in failures], now)
    if wait is not None:
        raise RateLimitedError(
            f"too many wrong keys; try again in {int(wait.total_seconds()) + 1} seconds", wait
        )
    dest = await load_store(conn, destination_store_id)
    if dest is None or dest.status != "active":
        raise StoreError("the destination store is not installed")
    if not dest.is_destination:
        raise StoreError(f"{dest.name} is installed as a source; only a destination connects")
    source_row = (
        (await conn.execute(select(stores.c.id).where(stores.c.key_hash == key_hash(key)))).first()
        if looks_like_key(key)
        else None
    )
    if source_row is None:
        await conn.execute(key_attempts.insert().values(actor=actor, at=now, success=False))
        raise WrongKeyError(
            "this key does not match any source store; check it on the source's dashboard "
            "(it may have been rotated)"
        )
    source = await load_store(conn, source_row[0])
    assert source is not None
    if source.status != "active":
        raise StoreError(f"{source.name} is not active")
    edges = [
        (r[0], r[1])
        for r in await conn.execute(
            select(connections.c.source_store_id, connections.c.destination_store_id).where(
                connections.c.status.in_(("active", "paused"))
            )
        )
    ]
    check_connect(edges, source.id, dest.id)
    existing = (
        await conn.execute(
            select(connections.c.id, connections.c.status).where(
                connections.c.source_store_id == source.id,
                connections.c.destination_store_id == dest.id,
            )
        )
    ).first()
    data = (settings or ConnectionSettings()).to_json()
    if existing is not None:
        if existing[1] in ("active", "paused"):
            raise StoreError(f"{dest.name} is already connected to {source.name}")
        await conn.execute(
            update(connections)
            .where(connections.c.id == existing[0])
            .values(status="active", disconnected_at=None, receiving_location=receiving_location)
        )
        connection_id = existing[0]
    else:
        connection_id = (
            await conn.execute(
                connections.insert()
                .values(
                    source_store_id=source.id,
                    destination_store_id=dest.id,
                    status="active",
                    receiving_location=receiving_location,
                    settings=data,
                    created_at=now,
                )
                .returning(connections.c.id)
            )
        ).scalar_one()
    await conn.execute(key_attempts.insert().values(actor=actor, at=now, success=True))
    for store_id, text in (
        (dest.id, f"connected to {source.name}"),
        (source.id, f"{dest.name} connected"),
    ):
        await activity.record(conn, store_id=store_id, level="info", kind="connected", message=text)
    record = await load_connection(conn, connection_id)
    assert record is not None
    return record


async def connect_by_key(
    rt: Runtime,
    *,
    destination_store_id: int,
    key: str,
    actor: str | None = None,
    receiving_location: str | None = None,
    settings: ConnectionSettings | None = None,
    policy: KeyAttemptPolicy = KeyAttemptPolicy(),  # noqa: B008 (immutable)
) -> ConnectionRecord:
    """:func:`connect` in a transaction of its own, for a destination entering a key.

    A wrong key's failed attempt is committed although the connection is refused: in the
    caller's transaction it would be rolled back with the error, and repeated wrong keys would
    never be rate-limited (B2)."""
    async with rt.db.begin() as conn:
        try:
            return await connect(
                rt,
                conn,
                destination_store_id=destination_store_id,
                key=key,
                actor=actor,
                receiving_location=receiving_location,
                settings=settings,
                policy=policy,
            )
        except WrongKeyError as exc:
            refused = exc  # leave the block normally, so that the attempt is committed
    raise refused


async def disconnect(
    conn: AsyncConnection, connection_id: int, *, by_store_id: int | None = None
) -> None:
    """B4: the destination keeps its products as ordinary unlinked products."""
    record = await load_connection(conn, connection_id)
    if record is None:
        raise StoreError("no such connection")
    await conn.execute(
        update(connections)
        .where(connections.c.id == connection_id)
        .values(status="disconnected", disconnected_at=func.now())
    )
    await conn.execute(
        update(variant_links)
        .where(variant_links.c.connection_id == connection_id)
        .values(status="unlinked")
    )
    await conn.execute(
        update(product_links)
        .where(product_links.c.connection_id == connection_id)
        .values(status="unlinked")
    )
    for store_id in (record.source_store_id, record.destination_store_id):
        await activity.record(
            conn,
            store_id=store_id,
            level="info",
            kind="disconnected",
            message="connection ended; the destination keeps its products, unlinked",
            details={"connection_id": connection_id, "by_store_id": by_store_id},
        )


async def set_connection_paused(
    rt: Runtime, conn: AsyncConnection, connection_id: int, paused: bool
) -> None:
    """B4: pausing stops writes to the destination, not its sales counting (units sold are
    gone from the shared stock); resuming re-syncs every variant."""
    record = await load_connection(conn, connection_id)
    if record is None or record.status not in ("active", "paused"):
        raise StoreError("only an active or paused connection can be paused or resumed")
    await conn.execute(
        update(connections)
        .where(connections.c.id == connection_id)
        .values(status="paused" if paused else "active")
    )
    if not paused:
        links = (
            await conn.execute(
                select(variant_links.c.id).where(
                    variant_links.c.connection_id == connection_id,
                    variant_links.c.status == "active",
                )
            )
        ).all()
        await mark_pending(
            rt,
            conn,
            [(connection_id, r[0], record.destination_store_id) for r in links],
            force_read=True,
        )
        for store_id in (record.source_store_id, record.destination_store_id):
            await reschedule_pending(rt, conn, store_id)
    await activity.record(
        conn,
        store_id=record.destination_store_id,
        level="info",
        kind="paused" if paused else "resumed",
        message="sync paused" if paused else "sync resumed",
        details={"connection_id": connection_id},
    )


async def set_product_paused(
    rt: Runtime, conn: AsyncConnection, product_link_id: int, paused: bool
) -> None:
    row = (
        await conn.execute(
            select(product_links.c.connection_id, product_links.c.status).where(
                product_links.c.id == product_link_id
            )
        )
    ).first()
    if row is None or row[1] not in ("active", "paused"):
        raise StoreError("only a linked product can be paused or resumed")
    await conn.execute(
        update(product_links)
        .where(product_links.c.id == product_link_id)
        .values(status="paused" if paused else "active")
    )
    if not paused:
        record = await load_connection(conn, row[0])
        assert record is not None
        links = (
            await conn.execute(
                select(variant_links.c.id).where(
                    variant_links.c.product_link_id == product_link_id,
                    variant_links.c.status == "active",
                )
            )
        ).all()
        await mark_pending(
            rt, conn, [(row[0], r[0], record.destination_store_id) for r in links], force_read=True
        )


async def unlink_product(conn: AsyncConnection, product_link_id: int) -> None:
    await conn.execute(
        update(product_links).where(product_links.c.id == product_link_id).values(status="unlinked")
    )
    await conn.execute(
        update(variant_links)
        .where(variant_links.c.product_link_id == product_link_id)
        .values(status="unlinked")
    )


async def purge_key_attempts(conn: AsyncConnection, older_than: timedelta) -> None:
    await conn.execute(
        delete(key_attempts).where(key_attempts.c.at < activity.utcnow() - older_than)
    )


# --- setting up stores of one installation (demo, benchmarks, tests) --------------------------


async def install_located(
    rt: Runtime,
    *,
    vault: Vault,
    platform_name: str,
    external_id: str,
    role: str,
    locations_of: Sequence[PlatformLocation],
    **options: object,
) -> tuple[StoreRecord, str | None]:
    """Install a store and record its locations in one transaction, as an install does."""
    async with rt.db.begin() as conn:
        store, key = await install_store(
            rt,
            conn,
            vault=vault,
            platform=platform_name,
            external_id=external_id,
            role=role,
            **options,  # type: ignore[arg-type]  # install_store names and types each option
        )
        await set_locations(conn, store.id, locations_of)
    return store, key


async def connect_with_own_key(
    rt: Runtime,
    *,
    vault: Vault,
    source_store_id: int,
    destination_store_id: int,
    receiving_location: str | None = None,
    settings: ConnectionSettings | None = None,
) -> ConnectionRecord:
    """Connect two stores of one installation: the source's key is read here instead of being
    handed over by a merchant, and the connection is made as :func:`connect` makes it."""
    async with rt.db.begin() as conn:
        key = await show_key(conn, vault, source_store_id)
        return await connect(
            rt,
            conn,
            destination_store_id=destination_store_id,
            key=key,
            receiving_location=receiving_location,
            settings=settings,
        )
