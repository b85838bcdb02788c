"""B22 against the Shopify sandbox: a sync that fails because a destination cannot be reached
is in that destination's activity log with the platform's reason while it is retried, not only
in the worker's log (found by the end-to-end fault test, kept as its smallest reproduction)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from stocksync.bootstrap import App, build_app
from stocksync.config import Settings
from stocksync.demo_shopify import install, shops_from_manifest
from stocksync.domain.connection import ConnectionSettings
from stocksync.engine.catalog import import_products
from stocksync.engine.marks import mark_source_dirty
from stocksync.engine.stores import connect_with_own_key
from stocksync.sandbox import Sandbox, SeedSpec, seed_shop, serve_in_task
from stocksync.storage.migrate import upgrade_async
from stocksync.storage.tables import activity_log, jobs, variant_links

# Nothing listens on the discard port of loopback: the sandbox's webhook deliveries fail, which
# these reproductions do not need.
NOWHERE = "http://127.0.0.1:9/webhooks/shopify"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'stocksync.db'}",
        secret_key=Fernet.generate_key().decode(),
        shopify_api_secret="secret",
        job_poll_seconds=0.05,
        flush_debounce_ms=0,
        flush_interval_ms=0,  # the worker stops when idle, before a paced flush would be due
    )
    await upgrade_async(settings.resolved_database_url)
    built = build_app(settings)
    yield built
    await built.close()


async def test_a_failed_sync_to_an_unreachable_destination_reaches_its_activity_log(
    app: App,
) -> None:
    sandbox = Sandbox(seed=7)
    source_shop = sandbox.create_shop("source", plan="plus")
    seed_shop(source_shop, SeedSpec(products=1, variants=1, seed=8, untracked_ratio=0.0))
    sandbox.create_shop("dest", plan="plus")
    async with serve_in_task(sandbox) as running:
        shops = shops_from_manifest(running.manifest())
        source_id, _ = await install(app, shops["source"], "source", NOWHERE)
        dest_id, dest_locations = await install(app, shops["dest"], "destination", NOWHERE)
        record = await connect_with_own_key(
            app.runtime,
            vault=app.vault,
            source_store_id=source_id,
            destination_store_id=dest_id,
            receiving_location=dest_locations[0],
            settings=ConnectionSettings(),
        )
        await import_products(app.runtime, record.id)
        registry = app.registry()
        await app.runtime.queue.run_worker(registry, stop_when_idle=True)

        # The destination becomes unreachable; then the source's level changes.
        sandbox.set_faults("dest", unreachable=True)
        async with app.db.connect() as conn:
            item = (
                await conn.execute(select(variant_links.c.source_item_id).limit(1))
            ).scalar_one()
        level = next(iter(source_shop.levels_of_item(int(item))))
        source_shop.change_level(level, "available", 5)
        async with app.db.begin() as conn:
            await mark_source_dirty(app.runtime, conn, source_id, [item])
        # Runs the refresh, then the flush until its first attempt has failed and waits for
        # its retry; bounded by the client's own retries of one call.
        await asyncio.wait_for(
            app.runtime.queue.run_worker(registry, stop_when_idle=True), timeout=60
        )

    async with app.db.connect() as conn:
        failed = (
            (await conn.execute(select(jobs.c.last_error).where(jobs.c.last_error.is_not(None))))
            .scalars()
            .all()
        )
        logged = (
            (
                await conn.execute(
                    select(activity_log.c.message).where(
                        activity_log.c.store_id == dest_id, activity_log.c.level != "info"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert any("HTTP 503" in error for error in failed), failed  # the sync did fail
    assert any("503" in message for message in logged), logged
