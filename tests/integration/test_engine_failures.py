"""B22: every failure reaches the activity log of the store it concerns, with its reason,
each failed attempt as it happens and the job given up at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from stocksync.engine.catalog import import_products
from stocksync.engine.failures import store_of_dead_letter
from stocksync.jobs.retry import record_dead_letter
from stocksync.storage.tables import activity_log
from tests.harness import Harness


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    harness = await Harness.create(db_url)
    yield harness
    await harness.close()


async def test_each_failed_attempt_reaches_the_store_activity_log(h: Harness) -> None:
    """B22: a write the destination refused is in its log with the reason, then retried."""
    await h.add_store("source", "source")
    await h.add_store("dest", "destination")
    h.shop("source").add_product("Mug", ["MUG"], available=5)
    record = await h.connect("dest", "source")
    await import_products(h.rt, record.id)
    h.world.take_outbox()
    h.shop("dest").faults.fail_next("server_error", retry_after=0.01)  # the flush's first call
    await h.settle()
    assert h.level("dest", "MUG") == 5  # the retry wrote it
    async with h.db.connect() as conn:
        rows = (
            await conn.execute(
                select(activity_log.c.store_id, activity_log.c.level, activity_log.c.message).where(
                    activity_log.c.kind == "sync_attempt_failed"
                )
            )
        ).all()
    assert [(r.store_id, r.level) for r in rows] == [(h.stores["dest"].id, "warning")]
    assert rows[0].message.startswith("writing levels to the destination failed: ")
    assert "trying again (attempt 1 of " in rows[0].message


async def test_a_connection_job_given_up_is_logged_against_its_destination(h: Harness) -> None:
    await h.add_store("source", "source")
    await h.add_store("dest", "destination")
    record = await h.connect("dest", "source")
    async with h.db.begin() as conn:
        await record_dead_letter(
            conn,
            job_id=7,
            task="flush_destination",
            args={"connection_id": record.id},
            error="TransientPlatformError: dest unreachable",
            attempts=8,
            store_of_job=store_of_dead_letter,
        )
    async with h.db.connect() as conn:
        logged = (
            await conn.execute(
                select(activity_log.c.store_id, activity_log.c.message).where(
                    activity_log.c.kind == "job_dead_lettered"
                )
            )
        ).all()
    assert [r.store_id for r in logged] == [h.stores["dest"].id]
    assert "given up after 8 attempt(s): TransientPlatformError: dest unreachable" in logged[0][1]
