"""Locations that change on a platform: a source's level is the sum over its shared active
locations, so deactivating one changes every destination; a location deleted is kept as
inactive; a destination whose receiving location goes away hears of it in its activity log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from stocksync.domain.events import LocationsChanged
from stocksync.engine.catalog import import_products
from stocksync.engine.ingest import ingest, payload_of
from stocksync.engine.stores import set_locations
from stocksync.storage.tables import activity_log, locations
from tests.harness import Harness


@pytest.fixture
async def h(db_url: str) -> AsyncIterator[Harness]:
    harness = await Harness.create(db_url)
    yield harness
    await harness.close()


async def _announce(h: Harness, store: str, location_id: str, n: int) -> None:
    """The platform's location webhook, as the web intake records it."""
    event = LocationsChanged(location_id)
    result = await ingest(
        h.rt,
        platform="memory",
        store_ref=store,
        event_id=f"loc-{n}",
        topic="locations/update",
        event=event,
        payload=payload_of(event),
    )
    assert result.outcome == "recorded"


async def _recorded(h: Harness, store: str) -> dict[str, bool]:
    async with h.db.connect() as conn:
        rows = await conn.execute(
            select(locations.c.name, locations.c.active).where(
                locations.c.store_id == h.stores[store].id
            )
        )
        return {r[0]: bool(r[1]) for r in rows}


async def _log(h: Harness, store: str, kind: str) -> list[str]:
    async with h.db.connect() as conn:
        rows = await conn.execute(
            select(activity_log.c.message).where(
                activity_log.c.store_id == h.stores[store].id, activity_log.c.kind == kind
            )
        )
        return [r[0] for r in rows]


async def test_a_source_location_deactivated_then_deleted_changes_every_destination(
    h: Harness,
) -> None:
    await h.add_store("source", "source")
    src = h.shop("source")
    back = src.add_location("Back room").id
    async with h.db.begin() as conn:  # both shared, as at install
        await set_locations(conn, h.stores["source"].id, await src.list_locations())
    await h.add_store("dest", "destination")
    product = src.add_product("Mug", ["MUG"], available=0)
    item = product.variants[0].item_id
    src.set_available(item, src.primary_location_id, 4)
    src.set_available(item, back, 6)
    record = await h.connect("dest", "source")
    await import_products(h.rt, record.id)
    h.world.take_outbox()
    await h.settle()
    assert h.level("dest", "MUG") == 10

    src.deactivate_location(back)
    await _announce(h, "source", back, 1)
    await h.settle()
    assert h.level("dest", "MUG") == 4
    assert (await _recorded(h, "source"))["Back room"] is False
    assert any("'Back room' deactivated" in m for m in await _log(h, "source", "locations_changed"))

    src.activate_location(back)
    await _announce(h, "source", back, 2)
    await h.settle()
    assert h.level("dest", "MUG") == 10

    src.deactivate_location(back)
    src.delete_location(back)
    await _announce(h, "source", back, 3)
    await h.settle()
    assert h.level("dest", "MUG") == 4
    assert (await _recorded(h, "source"))["Back room"] is False  # kept, as inactive


async def test_a_destination_losing_its_receiving_location_is_told(h: Harness) -> None:
    await h.add_store("source", "source")
    await h.add_store("dest", "destination")
    h.shop("source").add_product("Mug", ["MUG"], available=5)
    record = await h.connect("dest", "source")
    await import_products(h.rt, record.id)
    h.world.take_outbox()
    await h.settle()
    dest = h.shop("dest")
    receiving = dest.primary_location_id
    other = dest.add_location("Annex").id
    dest.deactivate_location(receiving)
    await _announce(h, "dest", receiving, 1)
    await _announce(h, "dest", other, 2)  # a burst: one read covers both
    await h.settle()
    told = await _log(h, "dest", "receiving_location_inactive")
    assert len(told) == 1
    assert "is no longer active" in told[0]
    assert "stocksync connect --location" in told[0]
    changed = await _log(h, "dest", "locations_changed")
    assert len(changed) == 1
    assert "location 'Annex' added" in changed[0]
    assert "deactivated" in changed[0]
