"""Worker processes killed with SIGKILL while they apply destination sales: each order line is
still counted exactly once (B17) and every store converges (B18), on SQLite and PostgreSQL.

The stores live in this process, served over HTTP; the workers are real ``stocksync worker``
processes. The first is killed at the hardest point: the source has applied a sale's
adjustment but the worker never learns it, so the commit recording it never happens. The
second is killed at a seeded random call. A third finishes the work.
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.types import ASGIApp

from stocksync.engine.catalog import import_products
from stocksync.engine.ingest import Inbound, ingest_many, payload_of
from stocksync.engine.periodic import PERIODIC
from stocksync.platforms.memory import Delivery
from stocksync.platforms.memory_http import serve_memory_world
from stocksync.storage.tables import activity_log, flush_pending, inbox, source_dirty
from tests.harness import Harness
from tests.integration.engine_proc import (
    CallGate,
    EngineWorkers,
    count,
    ledger_rows,
    open_jobs,
    worker_env,
)
from tests.integration.jobs_worker_proc import wait_until

SEED = 1729
START = 500  # units of every source variant before the sales
ORDERS = 40
DESTINATIONS = ("dest-a", "dest-b")
SKUS = ("SHIRT-S", "SHIRT-M", "SHIRT-L", "SCARF-1")


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    harness = await Harness.create(db_url)
    yield harness
    await harness.close()


async def deliver(h: Harness, deliveries: list[Delivery]) -> None:
    """Webhooks as the platform sends them, recorded by this process's engine."""
    if not deliveries:
        return
    results = await ingest_many(
        h.rt,
        [
            Inbound("memory", d.store_ref, d.event_id, d.topic, d.event, payload_of(d.event))
            for d in deliveries
        ],
    )
    assert {r.outcome for r in results} == {"recorded"}


def levels(h: Harness, store: str) -> dict[str, int | None]:
    return {sku: h.level(store, sku) for sku in SKUS}


async def test_workers_killed_mid_adjustment_count_every_sale_once(  # noqa: C901, PLR0915  one scenario, read in order
    db_url: str, h: Harness, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    gates: list[CallGate] = []

    def gated(app: ASGIApp) -> ASGIApp:
        gates.append(CallGate(app))
        return gates[-1]

    with ExitStack() as stack:
        # Entered first, left last: the workers are killed before the server stops.
        base_url = stack.enter_context(serve_memory_world(h.world, middleware=gated))
        (gate,) = gates
        env = worker_env(db_url, tmp_path / "data", h.secret_key)
        workers = EngineWorkers(env, tmp_path, stack, module="tests.integration.memory_worker")

        # --- a source, two destinations, products imported and synced (by this process) ---
        await h.add_store("source", "source", base_url=base_url)
        for dest in DESTINATIONS:
            await h.add_store(dest, "destination", base_url=base_url)
        src = h.shop("source")
        src.add_product("Linen shirt", list(SKUS[:3]), available=START)
        src.add_product("Wool scarf", list(SKUS[3:]), available=START)
        for dest in DESTINATIONS:
            record = await h.connect(dest, "source")
            assert (await import_products(h.rt, record.id)).linked_variants == len(SKUS)
        h.world.take_outbox()  # creation noise before linking is not under test
        await h.settle()
        for store in ("source", *DESTINATIONS):
            assert levels(h, store) == dict.fromkeys(SKUS, START)

        # --- paid orders on the destinations, their webhooks recorded ---------------------
        ordered: Counter[str] = Counter()
        expected_rows: set[tuple[int, str, str, int]] = set()
        for _ in range(ORDERS):
            dest = rng.choice(DESTINATIONS)
            shop = h.shop(dest)
            skus = rng.sample(SKUS, rng.randint(1, 2))
            order = shop.place_order(
                [(shop.variant_by_sku(sku).id, rng.randint(1, 3)) for sku in skus],
                financial_status="paid",
            )
            for line in order.lines:
                ordered[line.sku] += line.quantity
                expected_rows.add((h.stores[dest].id, order.id, line.id, -line.quantity))
        await deliver(h, h.world.take_outbox())
        lines = len(expected_rows)

        # --- worker 1: killed with a sale applied at the source but not recorded ----------
        hold_at = rng.randint(5, 15)
        gate.hold_adjustment("source", hold_at)
        first = workers.start()

        async def held() -> bool:
            return gate.held.is_set() or first.poll() is not None

        await wait_until(held, 30, f"adjustment {hold_at} to reach the source")
        assert gate.held.is_set(), workers.logs_text()
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        assert gate.held_status == 200  # the source applied it

        rows = await ledger_rows(h.db)
        assert len(rows) == lines
        held_row = next(r for r in rows if r[5] == gate.held_key)
        assert held_row[4] == "pending"  # ... and no commit says so
        applied = [r for r in rows if r[4] == "applied"]
        assert len(applied) == hold_at - 1
        assert src.counters.units_adjusted == -sum(r[3] for r in applied) - held_row[3]

        # --- worker 2: killed at a seeded random call while jobs run ----------------------
        trip_at = rng.randint(5, 25)
        assert lines - hold_at > trip_at  # the worker has at least that many calls to make
        second = workers.start()
        gate.trip_after(trip_at, lambda: os.kill(second.pid, signal.SIGKILL))

        async def second_dead() -> bool:
            return second.poll() is not None

        await wait_until(second_dead, 30, f"call {trip_at} of the second worker")
        assert gate.tripped.is_set(), workers.logs_text()
        assert second.wait(timeout=10) == -signal.SIGKILL

        # --- worker 3: finishes; the platform keeps sending its webhooks ------------------
        third = workers.start()

        # Every worker leaves each store's safety-net job waiting, an hour away.
        quiet = Counter({(PERIODIC, "todo"): 1 + len(DESTINATIONS)})
        why = ""

        async def converged() -> bool:
            nonlocal why
            pending = h.world.take_outbox()
            if pending:
                await deliver(h, pending)
                why = f"{len(pending)} webhooks just delivered"
                return False
            jobs = await open_jobs(h.db)
            if jobs != quiet:
                why = f"jobs waiting or running: {dict(jobs - quiet)}"
                return False
            unapplied = [r for r in await ledger_rows(h.db) if r[4] != "applied"]
            if unapplied:
                why = f"ledger rows not applied: {unapplied}"
                return False
            if await count(h.db, source_dirty) or await count(h.db, flush_pending):
                why = "levels still marked to read or to write"
                return False
            source = levels(h, "source")
            why = f"levels: source {source}, " + ", ".join(
                f"{dest} {levels(h, dest)}" for dest in DESTINATIONS
            )
            return all(levels(h, dest) == source for dest in DESTINATIONS)

        try:
            await wait_until(converged, 30, "the queue to be quiet and the stores to converge")
        except AssertionError as exc:
            raise AssertionError(f"{exc} ({why})\n{workers.logs_text()}") from None
        assert third.poll() is None, workers.logs_text()
        third.send_signal(signal.SIGINT)
        assert third.wait(timeout=15) == 0, workers.logs_text()

        # --- exactly once, and converged ------------------------------------------------
        rows = await ledger_rows(h.db)
        assert {r[4] for r in rows} == {"applied"}
        assert {(r[0], r[1], r[2], r[3]) for r in rows} == expected_rows  # one row per line
        assert len(rows) == lines
        assert await open_jobs(h.db) == quiet  # nothing left but the safety nets, for later
        assert (await h.rt.queue.counts())["failed"] == 0
        async with h.db.connect() as conn:
            dead = await conn.scalar(
                select(func.count())
                .select_from(activity_log)
                .where(activity_log.c.kind == "job_dead_lettered")
            )
            statuses = set((await conn.scalars(select(inbox.c.status).distinct())).all())
        assert dead == 0
        assert statuses == {"processed"}
        assert levels(h, "source") == {sku: START - ordered[sku] for sku in SKUS}
        for dest in DESTINATIONS:
            assert levels(h, dest) == levels(h, "source")
        # The held adjustment was sent again and the source's idempotency absorbed it: every
        # unit ordered was taken from the source once, however many times it was asked.
        assert gate.adjust_keys[held_row[5]] >= 2
        assert set(gate.adjust_keys) == {r[5] for r in rows}
        assert sum(gate.adjust_keys.values()) > lines
        assert src.counters.units_adjusted == sum(ordered.values())
