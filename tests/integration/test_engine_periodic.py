"""Periodic safety nets: one waiting job per store, rescheduled by each run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from stocksync.engine.periodic import PERIODIC, ensure_periodic, run_periodic
from tests.harness import Harness


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    harness = await Harness.create(db_url)
    yield harness
    await harness.close()


async def _waiting(h: Harness) -> int:
    table = "procrastinate_jobs" if h.db.dialect.name == "postgresql" else "jobs"
    column = "task_name" if table == "procrastinate_jobs" else "task"
    async with h.db.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE {column} = :t AND status = 'todo'"),
                    {"t": PERIODIC},
                )
            ).scalar_one()
        )


async def test_one_waiting_periodic_job_per_store_and_each_run_schedules_the_next(
    h: Harness,
) -> None:
    await h.add_store("source", "source")
    await h.add_store("dest", "destination")
    hour = timedelta(hours=1)
    assert await ensure_periodic(h.rt, hour) == 2
    assert await ensure_periodic(h.rt, hour) == 2  # a second worker starting: coalesced
    assert await _waiting(h) == 2
    # A run (as the job would) reconciles / backfills, then schedules its successor, which
    # coalesces with the one already waiting.
    await run_periodic(h.rt, h.stores["dest"].id, hour)
    await run_periodic(h.rt, h.stores["source"].id, hour)
    assert await _waiting(h) == 2


async def test_a_store_installed_while_workers_run_gets_its_periodic_job(h: Harness) -> None:
    assert await ensure_periodic(h.rt, timedelta(hours=1)) == 0  # a worker starts: no stores
    await h.add_store("late", "destination")  # installed afterwards
    assert await _waiting(h) == 1
    assert await ensure_periodic(h.rt, timedelta(hours=1)) == 1  # and still one, not two
    assert await _waiting(h) == 1
