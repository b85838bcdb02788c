from __future__ import annotations

from sqlalchemy import select

from stocksync.storage.db import create_engine
from stocksync.storage.schema import create_all
from stocksync.storage.tables import stores


async def test_schema_creates_and_round_trips(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await create_all(engine)
        async with engine.begin() as conn:
            await conn.execute(
                stores.insert().values(
                    platform="shopify",
                    external_id="a.myshopify.com",
                    name="A",
                    is_source=True,
                    is_destination=False,
                    status="active",
                    hidden_tags=["stocksync-hidden"],
                    settings={},
                    created_at=__import__("datetime").datetime.now(__import__("datetime").UTC),
                )
            )
        async with engine.connect() as conn:
            rows = (await conn.execute(select(stores.c.external_id))).all()
        assert [r[0] for r in rows] == ["a.myshopify.com"]
    finally:
        await engine.dispose()
