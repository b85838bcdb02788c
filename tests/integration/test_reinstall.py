"""Installing the app again on a store that is already active (B1, B5): a merchant approves it
once more, or an operator gives a new admin token. The new credentials replace the old ones,
the store keeps its key, connections and links, and every process's cached adapter moves to the
new credentials on its next job; a role change still needs an uninstall first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

import stocksync.bootstrap as bootstrap
from stocksync.bootstrap import App, build_app
from stocksync.config import Settings
from stocksync.domain.ports import AuthError
from stocksync.engine.records import load_store
from stocksync.engine.stores import StoreError, install_store, show_key
from stocksync.platforms.shopify.adapter import ShopifyPlatform
from stocksync.sandbox import Sandbox, serve_in_task
from stocksync.sandbox.state import Shop
from stocksync.storage.migrate import upgrade_async
from stocksync.storage.tables import activity_log
from tests.sandbox.conftest import eventually


@pytest.fixture
async def world(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[App, Sandbox, Shop]]:
    sandbox = Sandbox(seed=9)
    shop = sandbox.create_shop("brand", locations=["Warehouse"])
    async with serve_in_task(sandbox):
        app = build_app(
            Settings(
                data_dir=tmp_path,
                database_url=db_url if db_url.startswith("postgresql") else None,
            )
        )
        await upgrade_async(app.settings.resolved_database_url)
        try:
            yield app, sandbox, shop
        finally:
            await app.close()


async def _install(app: App, sandbox: Sandbox, shop: Shop, token: str, role: str) -> int:
    async with app.db.begin() as conn:
        store, _ = await install_store(
            app.runtime,
            conn,
            vault=app.vault,
            platform="shopify",
            external_id=shop.domain,
            role=role,
            credentials=token,
            base_url=sandbox.shop_base_url(shop),
        )
    return store.id


async def test_reinstall_replaces_the_token_and_keeps_the_key(
    world: tuple[App, Sandbox, Shop], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, sandbox, shop = world
    monkeypatch.setattr(bootstrap, "RETIRED_ADAPTER_GRACE_SECONDS", 0.0)
    first_token = shop.access_token
    store_id = await _install(app, sandbox, shop, first_token, "source")
    async with app.db.begin() as conn:
        key = await show_key(conn, app.vault, store_id)
        store = await load_store(conn, store_id)
    assert store is not None
    old = app.runtime.platforms(store)
    assert app.runtime.platforms(store) is old  # one adapter per store while nothing changes
    assert [loc.name for loc in await old.list_locations()] == ["Warehouse"]

    # The merchant approves the app again: Shopify issues a new token, the old one stops working.
    shop.access_tokens.clear()
    shop.access_tokens["shpua_second_grant"] = "read_all,write_all"
    with pytest.raises(AuthError):
        await old.list_locations()
    again = await _install(app, sandbox, shop, "shpua_second_grant", "source")
    assert again == store_id

    async with app.db.begin() as conn:
        assert await show_key(conn, app.vault, store_id) == key
        store = await load_store(conn, store_id)
        logged = (
            await conn.execute(
                select(activity_log.c.kind, activity_log.c.message).where(
                    activity_log.c.store_id == store_id
                )
            )
        ).all()
    assert store is not None
    assert store.credentials is not None
    assert app.vault.decrypt(store.credentials) == "shpua_second_grant"
    assert [k for k, _ in logged] == ["store_installed", "store_reinstalled"]
    assert "key, connections and links kept" in logged[1][1]

    # The next job's fresh store record reaches an adapter with the new token.
    fresh = app.runtime.platforms(store)
    assert fresh is not old
    assert [loc.name for loc in await fresh.list_locations()] == ["Warehouse"]
    assert app.runtime.platforms(store) is fresh
    # The replaced adapter's connections are closed once calls under way have finished.
    assert isinstance(old, ShopifyPlatform)
    await eventually(lambda: old.client.http.is_closed)


async def test_reinstall_with_another_role_is_refused(world: tuple[App, Sandbox, Shop]) -> None:
    app, sandbox, shop = world
    await _install(app, sandbox, shop, shop.access_token, "source")
    with pytest.raises(StoreError, match="already installed with another role"):
        await _install(app, sandbox, shop, shop.access_token, "destination")
