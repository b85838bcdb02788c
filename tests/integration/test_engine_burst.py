"""Bursts of source changes, ingested 32 webhooks at a time while the worker runs, on SQLite
and on PostgreSQL (B14, B18).

- 1,000 changes to one variant while its flush runs end with the destination at the last
  value, in two writes: the destination's first write is held open during the whole burst, so
  the flush is provably in progress while every change arrives.
- 1,000 changes spread over many variants: their webhooks' transactions enqueue the source's
  refresh concurrently and, on PostgreSQL, collide on its queueing lock; no transaction is lost
  to it. (Changes of one variant cannot collide there: each webhook's transaction takes the
  variant's dirty-row lock before it enqueues, so those transactions run one after another.)
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from procrastinate.manager import QUEUEING_LOCK_CONSTRAINT
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import ExceptionContext

from stocksync.domain.ports import LevelWrite, SetOutcome
from stocksync.engine.catalog import import_products
from stocksync.engine.ingest import IngestResult, ingest, payload_of
from stocksync.engine.schedule import FLUSH_DESTINATION, REFRESH_SOURCE
from stocksync.platforms.memory import MemoryStore
from stocksync.storage.tables import SOURCE_LOCATION, inbox, source_dirty, sync_state
from tests.harness import Harness
from tests.integration.jobs_worker_proc import wait_until

START = 100
BURST = 1_000
AT_ONCE = 32


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    harness = await Harness.create(db_url)
    yield harness
    await harness.close()


class HeldWrites:
    """The destination's ``set_levels``, whose first call waits until ``release`` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.calls: list[list[int]] = []  # the quantities of each call, in call order

    async def __call__(self, writes: Sequence[LevelWrite]) -> SetOutcome:
        self.calls.append([w.quantity for w in writes])
        if len(self.calls) == 1:
            self.entered.set()
            await self.release.wait()
        outcome: SetOutcome = await self.inner(writes)
        return outcome


@contextmanager
def database_errors(h: Harness) -> Iterator[list[str]]:
    """The constraint named by each database error raised meanwhile ("None" if none is)."""
    errors: list[str] = []

    def on_error(context: ExceptionContext) -> None:
        diag = getattr(context.original_exception, "diag", None)
        errors.append(str(getattr(diag, "constraint_name", None)))

    event.listen(h.db.sync_engine, "handle_error", on_error)
    try:
        yield errors
    finally:
        event.remove(h.db.sync_engine, "handle_error", on_error)


async def jobs_of(h: Harness, task: str, statuses: Sequence[str] | None = None) -> int:
    """How many jobs of ``task`` the queue holds (any status, or only ``statuses``)."""
    if h.db.dialect.name == "postgresql":
        sql, status = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task", "status"
        status += "::text"
    else:
        sql, status = "SELECT count(*) FROM jobs WHERE task = :task", "status"
    params: dict[str, Any] = {"task": task}
    if statuses is not None:
        sql += f" AND {status} IN ({', '.join(f':s{i}' for i in range(len(statuses)))})"
        params.update({f"s{i}": s for i, s in enumerate(statuses)})
    async with h.db.connect() as conn:
        return int(await conn.scalar(text(sql), params) or 0)


async def sync_jobs_open(h: Harness) -> int:
    """Refresh and flush jobs waiting or running (each store's periodic job always waits)."""
    open_states = ("todo", "doing")
    return await jobs_of(h, REFRESH_SOURCE, open_states) + await jobs_of(
        h, FLUSH_DESTINATION, open_states
    )


async def count_inbox(h: Harness, store_ref: str) -> int:
    async with h.db.connect() as conn:
        query = select(func.count()).select_from(inbox).where(inbox.c.store_ref == store_ref)
        return int(await conn.scalar(query) or 0)


async def set_up(h: Harness, skus: Sequence[str]) -> tuple[MemoryStore, MemoryStore]:
    """A source with ``skus``, imported to one destination and synced."""
    await h.add_store("source", "source")
    await h.add_store("dest", "destination")
    h.shop("source").add_product("Linen shirt", list(skus), available=START)
    record = await h.connect("dest", "source")
    assert (await import_products(h.rt, record.id)).linked_variants == len(skus)
    h.world.take_outbox()  # creation noise before linking is not under test
    await h.settle()
    for sku in skus:
        assert (h.level("source", sku), h.level("dest", sku)) == (START, START)
    h.world.reset_counters()
    return h.shop("source"), h.shop("dest")


async def change(h: Harness, item: str, value: int) -> IngestResult:
    """Set a source level in the admin and ingest the webhook it sends (its own event id)."""
    src = h.shop("source")
    src.set_available(item, src.primary_location_id, value)
    (delivery,) = h.world.take_outbox("source")
    return await ingest(
        h.rt,
        platform="memory",
        store_ref=delivery.store_ref,
        event_id=delivery.event_id,
        topic=delivery.topic,
        event=delivery.event,
        payload=payload_of(delivery.event),
    )


async def burst(
    h: Harness, changes: Sequence[tuple[str, int]]
) -> tuple[list[IngestResult], dict[str, int]]:
    """Ingest ``changes`` (item, value), ``AT_ONCE`` at a time; the results, and each item's
    value as the source took it last."""
    gate = asyncio.Semaphore(AT_ONCE)
    last: dict[str, int] = {}

    async def one(item: str, value: int) -> IngestResult:
        async with gate:
            last[item] = value  # the change happens now, in this order
            return await change(h, item, value)

    results = await asyncio.gather(*(one(item, value) for item, value in changes))
    return list(results), last


async def assert_recorded_once_each(
    h: Harness, results: Sequence[IngestResult], inbox_before: int
) -> None:
    """Every change recorded, none lost to a conflict: exactly one inbox row per ingest, each
    the row its ingest reported."""
    assert [r.outcome for r in results] == ["recorded"] * len(results)
    assert await count_inbox(h, "source") - inbox_before == len(results)
    ids = {r.inbox_id for r in results}
    async with h.db.connect() as conn:
        stored = await conn.scalar(
            select(func.count()).select_from(inbox).where(inbox.c.id.in_(list(ids)))
        )
    assert stored == len(ids) == len(results)


async def test_a_burst_during_a_flush_ends_at_the_last_value(h: Harness) -> None:
    sku = "SHIRT-S"
    src, dst = await set_up(h, [sku])
    item = src.variant_by_sku(sku).item_id
    source_id = h.stores["source"].id
    held = HeldWrites(dst.set_levels)
    dst.set_levels = held  # type: ignore[method-assign]

    worker = asyncio.create_task(h.rt.queue.run_worker(h.registry, concurrency=4))
    try:
        with database_errors(h) as errors:
            # One change starts the flush; its write to the destination is held open.
            assert (await change(h, item, START - 10)).outcome == "recorded"
            await asyncio.wait_for(held.entered.wait(), 20)
            refresh_before = await jobs_of(h, REFRESH_SOURCE)
            inbox_before = await count_inbox(h, "source")

            # Distinct values: each is a real change, with its own webhook.
            values = random.Random(4242).sample(range(START + 1, 100_000), BURST)
            results, last_values = await burst(h, [(item, v) for v in values])
            last = last_values[item]
            assert h.level("source", sku) == last

            async def source_read() -> bool:
                # The refresh jobs caught up with the burst: nothing dirty, none waiting or
                # running, and the source's last value recorded.
                async with h.db.connect() as conn:
                    dirty = await conn.scalar(select(func.count()).select_from(source_dirty))
                    recorded = await conn.scalar(
                        select(sync_state.c.last_read).where(
                            sync_state.c.store_id == source_id,
                            sync_state.c.item_id == item,
                            sync_state.c.location == SOURCE_LOCATION,
                        )
                    )
                waiting = await jobs_of(h, REFRESH_SOURCE, ("todo", "doing"))
                return dirty == 0 and waiting == 0 and recorded == last

            await wait_until(source_read, 30, "the source's refresh to catch up with the burst")
            # The flush is still in progress: one write, held; nothing reached the destination.
            assert len(held.calls) == 1
            assert await jobs_of(h, FLUSH_DESTINATION, ("doing",)) == 1
            assert h.level("dest", sku) == START
            held.release.set()

            async def converged() -> bool:
                return h.level("dest", sku) == last and not await sync_jobs_open(h)

            await wait_until(converged, 30, "the destination to reach the last value")
    finally:
        held.release.set()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    await h.settle()  # the destination's echoes come back: no further write (no loop)

    assert h.level("source", sku) == h.level("dest", sku) == last
    # Coalesced: the held write (the value before the burst), then the last value; no other.
    assert held.calls == [[START - 10], [last]]
    assert dst.counters.calls["set_levels"] == 2
    await assert_recorded_once_each(h, results, inbox_before)
    created = await jobs_of(h, REFRESH_SOURCE) - refresh_before
    assert 1 <= created < BURST // 4, created
    assert (await h.rt.queue.counts())["failed"] == 0
    # No database error but, on PostgreSQL, queueing-lock conflicts absorbed by the enqueue.
    allowed = {QUEUEING_LOCK_CONSTRAINT} if h.db.dialect.name == "postgresql" else set()
    assert set(errors) <= allowed, errors


async def test_concurrent_changes_collide_on_the_queueing_lock_and_lose_nothing(
    h: Harness,
) -> None:
    rng = random.Random(1234)
    skus = [f"TEE-{n:02}" for n in range(40)]
    src, dst = await set_up(h, skus)
    items = {sku: src.variant_by_sku(sku).item_id for sku in skus}
    refresh_before = await jobs_of(h, REFRESH_SOURCE)
    inbox_before = await count_inbox(h, "source")
    # Every value distinct, so that every change is a real one, with its own webhook.
    changes = [(items[rng.choice(skus)], START + 1 + n) for n in range(BURST)]

    worker = asyncio.create_task(h.rt.queue.run_worker(h.registry, concurrency=4))
    try:
        with database_errors(h) as errors:
            results, last = await burst(h, changes)

            async def converged() -> bool:
                if await sync_jobs_open(h):
                    return False
                return all(h.level("dest", sku) == last.get(items[sku], START) for sku in skus)

            await wait_until(converged, 30, "every destination variant to reach its last value")
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    await h.settle()

    for sku in skus:
        assert h.level("source", sku) == h.level("dest", sku) == last.get(items[sku], START)
    await assert_recorded_once_each(h, results, inbox_before)
    created = await jobs_of(h, REFRESH_SOURCE) - refresh_before
    assert 1 <= created < BURST // 4, created
    assert (await h.rt.queue.counts())["failed"] == 0
    # At most one write per refresh: each flush writes every pending variant in one batch.
    assert 1 <= dst.counters.calls["set_levels"] <= created
    if h.db.dialect.name == "postgresql":
        # Webhooks' transactions did collide on the refresh's queueing lock (a unique
        # violation, inside the enqueue's savepoint), and every one of them committed.
        assert errors, "no queueing-lock conflict happened: the burst did not test one"
        assert set(errors) == {QUEUEING_LOCK_CONSTRAINT}, errors
    else:
        assert errors == []
