"""Destination sales applied to the root source in recorded batches, each under a random
idempotency key, retried until applied (B15, B17; ARCHITECTURE properties 2 and 3)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from stocksync.engine import crash
from stocksync.engine.catalog import import_products
from stocksync.engine.ledger import apply_ledger
from stocksync.engine.orders import process_event
from stocksync.engine.periodic import run_periodic
from stocksync.engine.status import sync_status
from stocksync.engine.stores import install_store
from stocksync.storage.tables import ledger, ledger_batches
from tests.harness import Harness
from tests.integration.test_engine_support import (
    activity,
    empty_database,
)

INTERVAL = timedelta(hours=1)


async def _harness(url: str, batch_size: int = 250) -> Harness:
    harness = await Harness.create(url, batch_size=batch_size)
    await empty_database(harness.db)
    return harness


@pytest.fixture
async def h(module_db_url: str) -> AsyncIterator[Harness]:
    harness = await _harness(module_db_url)
    yield harness
    await harness.close()


async def _setup(h: Harness, available: int = 10) -> None:
    """A source with TEE-S, TEE-M and TEE-L, imported by ``dest``."""
    await h.add_store("source", "source")
    h.shop("source").add_product("Tee", ["TEE-S", "TEE-M", "TEE-L"], available=available)
    await h.add_store("dest", "destination")
    record = await h.connect("dest", "source")
    assert (await import_products(h.rt, record.id)).linked_variants == 3
    h.world.take_outbox()
    await h.settle()
    h.world.reset_counters()


def _variant(h: Harness, store: str, sku: str) -> str:
    return h.shop(store).variant_by_sku(sku).id


async def _ledger(h: Harness) -> list[tuple[int, str, str, int | None]]:
    async with h.db.connect() as conn:
        rows = await conn.execute(
            select(
                ledger.c.id, ledger.c.status, ledger.c.idempotency_key, ledger.c.batch_id
            ).order_by(ledger.c.id)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


async def _batches(h: Harness) -> list[tuple[int, str, int, str]]:
    async with h.db.connect() as conn:
        rows = await conn.execute(
            select(
                ledger_batches.c.id,
                ledger_batches.c.status,
                ledger_batches.c.attempt,
                ledger_batches.c.idempotency_key,
            ).order_by(ledger_batches.c.id)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


async def test_a_burst_of_sales_costs_one_adjustment_per_batch(module_db_url: str) -> None:
    h = await _harness(module_db_url, batch_size=25)
    try:
        await _setup(h, available=100)
        dest, src = h.shop("dest"), h.shop("source")
        skus = ["TEE-S", "TEE-M", "TEE-L"]
        for n in range(60):
            dest.place_order([(_variant(h, "dest", skus[n % 3]), 1)], financial_status="paid")
        await h.settle()
        assert {sku: h.level("source", sku) for sku in skus} == dict.fromkeys(skus, 80)
        # 60 changes in batches of 25: three calls, not sixty
        assert src.counters.calls["adjust_levels"] == 3
        assert src.counters.calls["adjust_level"] == 0
        assert src.counters.units_adjusted == 60
        assert {r[1] for r in await _ledger(h)} == {"applied"}
        assert [b[1] for b in await _batches(h)] == ["applied"] * 3
    finally:
        await h.close()


@pytest.mark.parametrize(
    "point", ["apply.after_location", "apply.after_adjust", "apply.before_commit"]
)
async def test_a_crash_while_applying_resends_the_same_batch_under_the_same_key(
    h: Harness, point: str
) -> None:
    """A worker killed after the batch is recorded, after the source applied it, or before
    its commit: the batch is sent (again) under the same key and every sale counts once."""
    await _setup(h)
    dest, src = h.shop("dest"), h.shop("source")
    dest.place_order([(_variant(h, "dest", "TEE-S"), 2)], financial_status="paid")
    dest.place_order([(_variant(h, "dest", "TEE-M"), 3)], financial_status="paid")
    await h.deliver(h.world.take_outbox())
    crashes: list[str] = []

    def hook(name: str) -> None:
        if name == point and not crashes:
            crashes.append(name)
            raise RuntimeError(f"worker killed at {name}")

    keys: list[str] = []
    real = src.adjust_levels

    async def spy(changes, idempotency_key):  # type: ignore[no-untyped-def]
        keys.append(idempotency_key)
        await real(changes, idempotency_key)

    src.adjust_levels = spy  # type: ignore[method-assign]
    crash.install(hook)
    try:
        await h.settle()
    finally:
        crash.install(None)
    assert crashes == [point]
    # one batch, sent under one key (twice when the crash came after the call)
    assert len(set(keys)) == 1
    assert len(keys) == (1 if point == "apply.after_location" else 2)
    assert h.level("source", "TEE-S") == 8
    assert h.level("source", "TEE-M") == 7
    assert src.counters.units_adjusted == 5
    assert {r[1] for r in await _ledger(h)} == {"applied"}
    assert [b[1] for b in await _batches(h)] == ["applied"]


async def test_a_try_again_answer_is_retried_under_a_new_key_not_set_aside(h: Harness) -> None:
    await _setup(h)
    dest, src = h.shop("dest"), h.shop("source")
    # ADJUST_QUANTITIES_FAILED, remembered against its key: the same key then answers that
    # the previous attempt failed, and only a new key applies
    src.faults.fail_next("attempt_failed", method="adjust_levels")
    dest.place_order([(_variant(h, "dest", "TEE-S"), 2)], financial_status="paid")
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    assert src.counters.units_adjusted == 2
    assert await activity(h, "ledger_failed") == []
    ((_id, status, attempt, key),) = await _batches(h)
    assert (status, attempt) == ("applied", 1)
    assert uuid.UUID(key)
    assert {r[1] for r in await _ledger(h)} == {"applied"}


async def test_a_batch_refused_for_one_row_applies_the_others(h: Harness) -> None:
    await _setup(h)
    dest, src = h.shop("dest"), h.shop("source")
    for sku in ("TEE-S", "TEE-M", "TEE-L"):
        dest.place_order([(_variant(h, "dest", sku), 1)], financial_status="paid")
    src.remove_variant(src.variant_by_sku("TEE-M").id)
    await h.settle()
    assert h.level("source", "TEE-S") == 9
    assert h.level("source", "TEE-L") == 9
    statuses = sorted(r[1] for r in await _ledger(h))
    assert statuses == ["applied", "applied", "failed"]
    (failed,) = await activity(h, "ledger_failed")
    assert failed["store_id"] == h.stores["source"].id


async def test_a_source_down_past_the_retry_budget_is_applied_by_the_periodic_job(
    h: Harness,
) -> None:
    await _setup(h)
    dest, src = h.shop("dest"), h.shop("source")
    src.faults.unreachable = True
    dest.place_order([(_variant(h, "dest", "TEE-S"), 2)], financial_status="paid")
    await h.settle()  # the job applying the sale gives up
    assert [r[1] for r in await _ledger(h)] == ["pending"]
    async with h.db.connect() as conn:
        (status,) = [s for s in (await sync_status(conn)).stores if s.name == "source"]
    assert status.pending_ledger == 1
    assert status.oldest_pending_ledger is not None
    src.faults.unreachable = False
    await run_periodic(h.rt, h.stores["source"].id, INTERVAL)
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    assert [r[1] for r in await _ledger(h)] == ["applied"]
    async with h.db.connect() as conn:
        (status,) = [s for s in (await sync_status(conn)).stores if s.name == "source"]
    assert (status.pending_ledger, status.oldest_pending_ledger) == (0, None)


async def test_a_given_up_order_sync_is_scheduled_again_by_the_periodic_job(
    h: Harness,
) -> None:
    await _setup(h)
    dest = h.shop("dest")
    dest.place_order([(_variant(h, "dest", "TEE-L"), 3)], financial_status="paid")
    h.world.take_outbox()  # its webhooks are lost
    dest.faults.fail_next("server_error", count=40, method="get_order")
    await run_periodic(h.rt, h.stores["dest"].id, INTERVAL)  # the backfill finds it
    await h.settle()  # ... and its sync gives up
    assert h.level("source", "TEE-L") == 10
    async with h.db.connect() as conn:
        (status,) = [s for s in (await sync_status(conn)).stores if s.name == "dest"]
    assert status.orders_to_sync == 1
    await run_periodic(h.rt, h.stores["dest"].id, INTERVAL)
    await h.settle()
    assert h.level("source", "TEE-L") == 7
    async with h.db.connect() as conn:
        (status,) = [s for s in (await sync_status(conn)).stores if s.name == "dest"]
    assert status.orders_to_sync == 0


async def test_keys_are_random_uuids_even_where_row_ids_coincide(module_db_url: str) -> None:
    seen: list[tuple[str, str]] = []
    for _ in range(2):  # two installations whose row ids start over
        h = await _harness(module_db_url)
        try:
            await _setup(h)
            h.shop("dest").place_order([(_variant(h, "dest", "TEE-S"), 1)], financial_status="paid")
            await h.settle()
            ((_row_id, _s, row_key, _b),) = await _ledger(h)
            ((_batch_id, _st, _a, batch_key),) = await _batches(h)
            seen.append((row_key, batch_key))
        finally:
            await h.close()
    (key_a, bkey_a), (key_b, bkey_b) = seen
    for key in (key_a, key_b, bkey_a, bkey_b):
        assert uuid.UUID(key).version in (4, 5)
    assert key_a != key_b
    assert bkey_a != bkey_b


async def test_a_reinstalled_source_applies_the_rows_its_given_up_job_left(h: Harness) -> None:
    await _setup(h)
    dest, src = h.shop("dest"), h.shop("source")
    src.faults.auth_revoked = True  # the app was removed: every call is refused
    dest.place_order([(_variant(h, "dest", "TEE-M"), 4)], financial_status="paid")
    await h.settle()
    assert [r[1] for r in await _ledger(h)] == ["pending"]
    src.faults.auth_revoked = False
    async with h.db.begin() as conn:  # installed again, with a new token
        await install_store(
            h.rt,
            conn,
            vault=h.vault,
            platform="memory",
            external_id="source",
            role="source",
            credentials="new-token",
        )
    await h.settle()
    assert h.level("source", "TEE-M") == 6
    assert [r[1] for r in await _ledger(h)] == ["applied"]


async def test_a_source_sharing_one_location_is_not_read_to_place_a_sale(h: Harness) -> None:
    """With one shared location every sale is taken from it: reading the source's levels to
    choose would cost a call per batch for nothing."""
    await _setup(h)
    src = h.shop("source")
    calls: list[str] = []
    read, adjust = src.read_levels, src.adjust_levels

    async def reading(*args: Any, **kw: Any) -> Any:
        calls.append("read_levels")
        return await read(*args, **kw)

    async def adjusting(*args: Any, **kw: Any) -> Any:
        calls.append("adjust_levels")
        return await adjust(*args, **kw)

    src.read_levels = reading  # type: ignore[method-assign]
    src.adjust_levels = adjusting  # type: ignore[method-assign]
    h.shop("dest").place_order([(_variant(h, "dest", "TEE-S"), 2)], financial_status="paid")
    await h.settle()
    assert h.level("source", "TEE-S") == 8
    assert calls[0] == "adjust_levels"  # the sale placed without a read
    async with h.db.connect() as conn:
        locations = (await conn.execute(select(ledger.c.location))).scalars().all()
    assert locations == [src.primary_location_id]


async def test_a_sale_is_applied_after_the_linger_with_the_sales_recorded_meanwhile(
    h: Harness,
) -> None:
    """A recorded sale schedules its application ``apply_linger`` later; the sales recorded
    before then join that job (its queueing lock), so that a burst costs one call."""
    await _setup(h)
    h.rt.apply_linger = timedelta(hours=1)  # far off: the drains below leave the job waiting
    dest, src = h.shop("dest"), h.shop("source")
    for sku in ("TEE-S", "TEE-M", "TEE-L"):
        dest.place_order([(_variant(h, "dest", sku), 1)], financial_status="paid")
        await h.deliver(h.world.take_outbox())
        await h.drain()
    # Each sale is recorded, none applied: their job lingers.
    assert [r[1] for r in await _ledger(h)] == ["pending"] * 3
    assert src.counters.calls["adjust_levels"] == 0
    assert await apply_ledger(h.rt, h.stores["source"].id) == 3
    assert src.counters.calls["adjust_levels"] == 1
    assert {sku: h.level("source", sku) for sku in ("TEE-S", "TEE-M", "TEE-L")} == {
        "TEE-S": 9,
        "TEE-M": 9,
        "TEE-L": 9,
    }


async def test_sales_recorded_during_the_call_wait_for_their_own_linger(h: Harness) -> None:
    """A run that sent a partial batch does not go on with the sales recorded during its
    call: each recording scheduled the job again, which lingers so that they gather with
    the sales that follow rather than go out a few at a time."""
    await _setup(h)
    h.rt.apply_linger = timedelta(hours=1)
    dest, src = h.shop("dest"), h.shop("source")
    dest.place_order([(_variant(h, "dest", "TEE-S"), 1)], financial_status="paid")
    await h.deliver(h.world.take_outbox())
    await h.drain()
    adjust = src.adjust_levels

    async def a_sale_meanwhile(*args: Any, **kw: Any) -> None:
        await adjust(*args, **kw)
        if src.counters.calls["adjust_levels"] == 1:
            dest.place_order([(_variant(h, "dest", "TEE-M"), 1)], financial_status="paid")
            deliveries = h.world.take_outbox()
            for d, recorded in zip(deliveries, await h.deliver(deliveries), strict=True):
                if d.topic.startswith("orders/") and recorded.inbox_id is not None:
                    await process_event(h.rt, recorded.inbox_id)

    src.adjust_levels = a_sale_meanwhile  # type: ignore[method-assign]
    assert await apply_ledger(h.rt, h.stores["source"].id) == 1
    assert [r[1] for r in await _ledger(h)] == ["applied", "pending"]
    assert src.counters.calls["adjust_levels"] == 1
    h.rt.apply_linger = timedelta(0)
    assert await apply_ledger(h.rt, h.stores["source"].id) == 1
    assert (h.level("source", "TEE-S"), h.level("source", "TEE-M")) == (9, 9)
