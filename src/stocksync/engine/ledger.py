"""Applying ledger rows (counted sales, edits and restocks) to their root source, in batches.

Pending rows of one root source are gathered into a batch of at most ``rt.batch_size`` rows.
The batch is recorded before the platform call (its rows, their locations, its key seed and
attempt), so that a retry, or a worker killed at any instant, resends exactly the same changes
under the same idempotency key and the source applies them once (ARCHITECTURE properties 2
and 3). Rows that arrive meanwhile go in the next batch. A row keeps status ``pending`` until
its batch is applied.

* A transient failure (Shopify's "try again" answers included) leaves the batch open: the job
  is retried, and when it gives up the periodic job schedules it again.
* The platform saying an attempt under the key failed moves the batch to its next attempt,
  whose key is derived from the batch's seed and the attempt number, persisted before the call.
* A permanent refusal applies nothing (the call is all or nothing): the batch is split in
  halves until the refused row is alone, which is set aside and reported (B22, B23).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.ledger import (
    BatchRow,
    batch_changes,
    batch_key,
    new_key_seed,
    split_rows,
)
from stocksync.domain.levels import choose_sale_location
from stocksync.domain.ports import (
    AuthError,
    IdempotencyKeySpentError,
    PermanentPlatformError,
    StorePlatform,
)
from stocksync.engine import crash, schedule
from stocksync.engine.inventory import shared_locations
from stocksync.engine.marks import mark_source_dirty
from stocksync.engine.records import StoreRecord, load_store
from stocksync.engine.runtime import Runtime
from stocksync.jobs.queue import PermanentJobError
from stocksync.storage import activity
from stocksync.storage.tables import ledger, ledger_batches, order_lines, orders_to_sync

# New keys asked for in one run before the job is left to its retries (each is a call).
MAX_KEY_RENEWALS = 3


@dataclass(frozen=True)
class Batch:
    id: int
    key: str


async def apply_ledger(rt: Runtime, store_id: int) -> int:
    """Apply pending ledger rows of one root source, batch after batch; returns rows applied.

    Recorded batches are all sent. A new batch is formed first, and again after a full one;
    after a partial one the rows recorded meanwhile are left to the job their recording
    scheduled, which lingers (``rt.apply_linger``) so that they gather into one call."""
    applied = 0
    renewals = 0
    gathered = True  # whether rows recorded from now on are this run's to take
    while True:
        async with rt.db.begin() as conn:
            store = await load_store(conn, store_id)
            batch = await _open_batch(conn, store_id)
        if store is None:
            return applied
        if batch is None:
            if not gathered:
                # Every row recorded schedules this job again: the rows recorded during the
                # call wait out their own linger, and gather with the rows that follow.
                return applied
            batch = await _form_batch(rt, store)
            if batch is None:
                return applied
            rows = await _batch_rows(rt, batch.id)
            # A full batch leaves rows behind that are already due: they go next.
            gathered = len(rows) >= rt.batch_size
        else:
            rows = await _batch_rows(rt, batch.id)
        changes = batch_changes(rows)
        try:
            if changes:
                await rt.platforms(store).adjust_levels(changes, batch.key)
        except IdempotencyKeySpentError:
            # Nothing applied under this key, and the platform will not take it again.
            renewals += 1
            if renewals > MAX_KEY_RENEWALS:
                raise
            await _next_attempt(rt, batch.id)
            continue
        except PermanentPlatformError as exc:
            if isinstance(exc, AuthError):
                raise  # the whole store is unreachable: retry later, as before
            await _refused(rt, store, batch, rows, exc)
            continue
        crash.point("apply.after_adjust")
        applied += await _record_applied(rt, store_id, batch, rows)


async def _open_batch(conn: AsyncConnection, store_id: int) -> Batch | None:
    row = (
        await conn.execute(
            select(ledger_batches.c.id, ledger_batches.c.idempotency_key)
            .where(ledger_batches.c.root_store_id == store_id, ledger_batches.c.status == "open")
            .order_by(ledger_batches.c.id)
            .limit(1)
        )
    ).first()
    return Batch(int(row[0]), str(row[1])) if row else None


async def _form_batch(rt: Runtime, store: StoreRecord) -> Batch | None:
    """Record the next batch: pending rows not in any batch, their locations fixed."""
    async with rt.db.begin() as conn:
        rows = (
            await conn.execute(
                select(ledger.c.id, ledger.c.root_item_id, ledger.c.delta, ledger.c.location)
                .where(
                    ledger.c.root_store_id == store.id,
                    ledger.c.status == "pending",
                    ledger.c.batch_id.is_(None),
                )
                .order_by(ledger.c.id)
                .limit(rt.batch_size)
            )
        ).all()
        locs = await shared_locations(conn, store.id)
    if not rows:
        return None
    if not locs:
        async with rt.db.begin() as conn:
            await activity.record(
                conn,
                store_id=store.id,
                level="error",
                kind="no_shared_location",
                message=f"{store.name} shares no active location, so destination sales "
                "cannot be taken from its stock; choose the locations to share",
                retry={"task": schedule.APPLY_LEDGER, "args": {"store_id": store.id}},
            )
        raise PermanentJobError(f"store {store.id} shares no location")
    unplaced = [(int(r[0]), str(r[1]), int(r[2])) for r in rows if r[3] is None]
    chosen = await _choose_locations(rt.platforms(store), store, unplaced, locs)
    seed = new_key_seed()
    async with rt.db.begin() as conn:
        for ledger_id, loc in chosen.items():
            # Only where still unset: the location is part of the idempotent input.
            await conn.execute(
                update(ledger)
                .where(ledger.c.id == ledger_id, ledger.c.location.is_(None))
                .values(location=loc)
            )
        batch = await _insert_batch(rt, conn, store.id, seed)
        await conn.execute(
            update(ledger)
            .where(
                ledger.c.id.in_([int(r[0]) for r in rows]),
                ledger.c.status == "pending",
                ledger.c.batch_id.is_(None),
            )
            .values(batch_id=batch.id)
        )
    crash.point("apply.after_location")
    return batch


async def _choose_locations(
    platform: StorePlatform,
    store: StoreRecord,
    unplaced: list[tuple[int, str, int]],
    locs: list[str],
) -> dict[int, str]:
    """Where each sale not yet placed is taken from (B23's location priority)."""
    if not unplaced:
        return {}
    if len(locs) == 1:
        # One shared location: every choice is that one, whatever its levels, so reading
        # them would cost a call per batch for nothing.
        return {ledger_id: locs[0] for ledger_id, _, _ in unplaced}
    levels = await platform.read_levels(sorted({item for _, item, _ in unplaced}), locs)
    priority: list[str] | None = store.settings.get("location_priority")
    chosen: dict[int, str] = {}
    for ledger_id, item, delta in unplaced:
        loc = choose_sale_location(
            {loc: levels.get((item, loc)) for loc in locs},
            units=max(1, -delta),
            priority=priority,
        )
        chosen[ledger_id] = loc or locs[0]
    return chosen


async def _insert_batch(rt: Runtime, conn: AsyncConnection, store_id: int, seed: str) -> Batch:
    key = batch_key(seed, 0)
    batch_id = (
        await conn.execute(
            ledger_batches.insert()
            .values(
                root_store_id=store_id,
                key_seed=seed,
                attempt=0,
                idempotency_key=key,
                status="open",
                created_at=rt.clock(),
            )
            .returning(ledger_batches.c.id)
        )
    ).scalar_one()
    return Batch(int(batch_id), key)


async def _batch_rows(rt: Runtime, batch_id: int) -> list[BatchRow]:
    async with rt.db.connect() as conn:
        rows = await conn.execute(
            select(ledger.c.id, ledger.c.root_item_id, ledger.c.location, ledger.c.delta)
            .where(ledger.c.batch_id == batch_id, ledger.c.status == "pending")
            .order_by(ledger.c.id)
        )
        return [BatchRow(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]


async def _next_attempt(rt: Runtime, batch_id: int) -> None:
    """Persist the batch's next attempt and its key before that attempt is sent."""
    async with rt.db.begin() as conn:
        seed, attempt = (
            await conn.execute(
                select(ledger_batches.c.key_seed, ledger_batches.c.attempt).where(
                    ledger_batches.c.id == batch_id
                )
            )
        ).one()
        await conn.execute(
            update(ledger_batches)
            .where(ledger_batches.c.id == batch_id)
            .values(
                attempt=int(attempt) + 1, idempotency_key=batch_key(str(seed), int(attempt) + 1)
            )
        )


async def _record_applied(rt: Runtime, store_id: int, batch: Batch, rows: list[BatchRow]) -> int:
    async with rt.db.begin() as conn:
        result = await conn.execute(
            update(ledger)
            .where(ledger.c.batch_id == batch.id, ledger.c.status == "pending")
            .values(status="applied", applied_at=rt.clock())
        )
        await conn.execute(
            update(ledger_batches)
            .where(ledger_batches.c.id == batch.id)
            .values(status="applied", applied_at=rt.clock())
        )
        for row in rows:
            if row.delta < 0:
                # Restocks of this line go back where its units were taken from.
                await _remember_sale_location(conn, row.ledger_id, row.location_id)
        await mark_source_dirty(rt, conn, store_id, sorted({r.item_id for r in rows}))
        crash.point("apply.before_commit")
    return int(result.rowcount or 0)


async def _refused(
    rt: Runtime, store: StoreRecord, batch: Batch, rows: list[BatchRow], exc: Exception
) -> None:
    """A permanent refusal applied nothing: split the batch, or set its one row aside."""
    if len(rows) <= 1:
        async with rt.db.begin() as conn:
            await conn.execute(
                update(ledger_batches)
                .where(ledger_batches.c.id == batch.id)
                .values(status="failed")
            )
        for row in rows:
            await _set_aside(rt, store, row.ledger_id, row.item_id, row.delta, exc)
        return
    halves = split_rows(rows)
    async with rt.db.begin() as conn:
        await conn.execute(
            update(ledger_batches).where(ledger_batches.c.id == batch.id).values(status="split")
        )
        for half in halves:
            part = await _insert_batch(rt, conn, store.id, new_key_seed())
            await conn.execute(
                update(ledger)
                .where(ledger.c.id.in_([r.ledger_id for r in half]))
                .values(batch_id=part.id)
            )


async def _set_aside(
    rt: Runtime, store: StoreRecord, ledger_id: int, item: str, delta: int, exc: Exception
) -> None:
    change = (
        f"a sale of {-delta} unit{'s' if delta != -1 else ''}"
        if delta < 0
        else f"a restock of {delta} unit{'s' if delta != 1 else ''}"
    )
    async with rt.db.begin() as conn:
        await conn.execute(
            update(ledger)
            .where(ledger.c.id == ledger_id, ledger.c.status == "pending")
            .values(status="failed")
        )
        await activity.record(
            conn,
            store_id=store.id,
            level="error",
            kind="ledger_failed",
            message=f"{change} of item {item} could not be applied to {store.name}: {exc}; "
            "it was set aside so that other changes go on",
            details={"ledger_id": ledger_id, "item_id": item, "delta": delta},
        )


async def _remember_sale_location(conn: AsyncConnection, ledger_id: int, location: str) -> None:
    row = (
        await conn.execute(
            select(ledger.c.destination_store_id, ledger.c.order_id, ledger.c.line_id).where(
                ledger.c.id == ledger_id
            )
        )
    ).first()
    if row is None:
        return
    await conn.execute(
        update(order_lines)
        .where(
            order_lines.c.destination_store_id == row[0],
            order_lines.c.order_id == row[1],
            order_lines.c.line_id == row[2],
            order_lines.c.source_location.is_(None),
        )
        .values(source_location=location)
    )


# --- picked up again when a job gave up --------------------------------------------------------


async def reschedule_pending(rt: Runtime, conn: AsyncConnection, store_id: int) -> int:
    """Schedule what this store still owes: the application of its pending ledger rows (as a
    root source) and the sync of orders a backfill found (as a destination). A job that gave
    up (its store unreachable longer than its retries, an uninstall) is thereby run again.
    Queueing locks coalesce with jobs already waiting. Returns jobs scheduled."""
    scheduled = 0
    pending = (
        await conn.execute(
            select(func.count())
            .select_from(ledger)
            .where(ledger.c.root_store_id == store_id, ledger.c.status == "pending")
        )
    ).scalar_one()
    if pending:
        await schedule.apply_ledger(rt, conn, store_id)
        scheduled += 1
    for (order_id,) in await conn.execute(
        select(orders_to_sync.c.order_id)
        .where(orders_to_sync.c.store_id == store_id)
        .order_by(orders_to_sync.c.created_at)
    ):
        await schedule.sync_order(rt, conn, store_id, str(order_id))
        scheduled += 1
    return scheduled
