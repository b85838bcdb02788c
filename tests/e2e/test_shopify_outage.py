"""A sale stuck after an outage, end to end over real HTTP: the source is unreachable for longer
than the job applying a destination sale retries, so that job gives up; when the source is back
the periodic job applies the sale, exactly once (B17), on SQLite and on PostgreSQL. The sandbox,
stocksync's web process and its worker run as separate processes on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stocksync.storage.tables import activity_log, ledger
from tests.e2e.shopify_stack import (
    SOURCE,
    Stack,
    install_and_import,
    running_stack,
    start_stack_worker,
)
from tests.e2e.test_shopify_faults import DESTINATIONS, NORTH, SEED, SETTINGS, Script

PERIODIC_SECONDS = 2
WITHIN = 90.0  # seconds any one step may take to show its effect

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
async def stack(tmp_path: Path, db_url: str) -> AsyncIterator[Stack]:
    async with running_stack(
        tmp_path,
        db_url,
        destinations=DESTINATIONS,
        products=1,
        variants=2,
        seed=SEED,
        periodic_seconds=str(PERIODIC_SECONDS),
        # A short retry budget, so that the outage outlasts it within the test.
        job_max_attempts="2",
    ) as running:
        yield running


async def _given_up(stack: Stack, task: str) -> int:
    async with stack.app.db.connect() as conn:
        found = await conn.scalar(
            select(func.count())
            .select_from(activity_log)
            .where(
                activity_log.c.kind == "job_dead_lettered",
                activity_log.c.message.like(f"Background task {task} was given up%"),
            )
        )
    return int(found or 0)


async def _ledger_statuses(stack: Stack) -> list[str]:
    async with stack.app.db.connect() as conn:
        return list((await conn.scalars(select(ledger.c.status).order_by(ledger.c.id))).all())


async def test_a_sale_given_up_during_a_source_outage_is_applied_when_it_is_back(
    stack: Stack,
) -> None:
    await install_and_import(stack, {NORTH: SETTINGS[NORTH]})
    start_stack_worker(stack)
    await stack.settle(WITHIN)
    script = Script(stack)
    await script.begin()
    sku = sorted(script.variants[NORTH])[0]

    await stack.merchant.faults(SOURCE, unreachable=True)
    await script.order("sale", NORTH, sku, 2, "PAID")

    async def gave_up() -> bool:
        return await _ledger_statuses(stack) == ["pending"] and (
            await _given_up(stack, "apply_ledger") > 0
        )

    await stack.until("the job applying the sale gives up", gave_up, WITHIN)
    await stack.merchant.faults(SOURCE, unreachable=False)

    async def applied() -> bool:
        return await _ledger_statuses(stack) == ["applied"]

    await stack.until("the periodic job applies the sale", applied, WITHIN)
    await stack.settle(WITHIN)
    levels = await stack.levels()
    assert levels[SOURCE][sku] == script.expected[sku]  # taken once
    assert levels[NORTH][sku] == levels[SOURCE][sku]
