"""The Shopify install flow end to end: stocksync's web app and the sandbox, both over real HTTP
on loopback, a browser played by an HTTP client that keeps cookies."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from stocksync.bootstrap import App, build_app
from stocksync.config import Settings
from stocksync.sandbox import AppConfig, Sandbox, serve_in_task
from stocksync.sandbox.oauth import query_hmac
from stocksync.sandbox.state import Shop
from stocksync.storage.schema import create_all
from stocksync.storage.tables import activity_log, locations, stores
from stocksync.web.app import create_web_app
from stocksync.web.install import STATE_COOKIE
from tests.sandbox.conftest import eventually

SECRET = "install-flow-secret"
CLIENT_ID = "stocksync-install-test"
SOURCE_TOPICS = [
    "APP_UNINSTALLED",
    "INVENTORY_LEVELS_DISCONNECT",
    "INVENTORY_LEVELS_UPDATE",
    "LOCATIONS_ACTIVATE",
    "LOCATIONS_DEACTIVATE",
    "LOCATIONS_DELETE",
    "LOCATIONS_UPDATE",
    "PRODUCTS_CREATE",
    "PRODUCTS_DELETE",
    "PRODUCTS_UPDATE",
]


@dataclass
class Env:
    app: App
    sandbox: Sandbox
    shop: Shop
    public_url: str
    browser: httpx.AsyncClient

    async def start(self, shop: str = "acme.myshopify.com", role: str = "source") -> str:
        """Ask stocksync to install ``shop``; return where the browser is sent next."""
        response = await self.browser.get(
            f"{self.public_url}/install/shopify", params={"shop": shop, "role": role}
        )
        assert response.status_code == 302, response.text
        return response.headers["location"]

    async def approve(self, authorize_url: str) -> str:
        """The merchant approves on the (sandbox) shop: the callback URL it redirects to."""
        response = await self.browser.get(authorize_url)
        assert response.status_code == 302, response.text
        callback = response.headers["location"]
        assert callback.startswith(f"{self.public_url}/install/shopify/callback?")
        return callback


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    # Bind first: the app's public URL (and the redirect URL the sandbox allows) needs the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    public_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # The sandbox runs on real time so that the callback's timestamp is current.
    sandbox = Sandbox(
        app=AppConfig(
            client_id=CLIENT_ID,
            client_secret=SECRET,
            redirect_urls=[f"{public_url}/install/shopify/callback"],
        ),
        seed=5,
    )
    shop = sandbox.create_shop(
        "acme", locations=["Warehouse", "Store"], inactive_locations=["Old depot"]
    )
    async with serve_in_task(sandbox) as running:
        settings = Settings(
            data_dir=tmp_path,
            shopify_api_key=CLIENT_ID,
            shopify_api_secret=SECRET,
            public_url=public_url,
            shopify_shop_url=f"{running.url}/shops/{{shop}}",
        )
        built = build_app(settings)
        await create_all(built.db)
        server = uvicorn.Server(
            uvicorn.Config(
                create_web_app(built, embedded_worker=False),
                log_level="warning",
                access_log=False,
            )
        )
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        await eventually(lambda: server.started or task.done())
        assert not task.done()
        async with httpx.AsyncClient(timeout=10, trust_env=False) as browser:
            yield Env(built, sandbox, shop, public_url, browser)
        server.should_exit = True
        await task
    sock.close()


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


async def test_install_a_source_store_end_to_end(env: Env) -> None:
    authorize = await env.start()
    assert authorize.startswith(f"{env.sandbox.shop_base_url(env.shop)}/admin/oauth/authorize?")
    asked = _query(authorize)
    assert asked["client_id"] == CLIENT_ID
    assert asked["scope"] == env.app.settings.shopify_scopes
    assert asked["redirect_uri"] == f"{env.public_url}/install/shopify/callback"
    assert len(asked["state"]) >= 32
    assert STATE_COOKIE in env.browser.cookies

    callback = await env.approve(authorize)
    assert _query(callback)["state"] == asked["state"]
    response = await env.browser.get(callback)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["shop"] == "acme.myshopify.com"
    assert body["role"] == "source"
    assert body["locations"] == ["Warehouse", "Store", "Old depot"]
    assert body["webhooks"] == SOURCE_TOPICS
    assert body["webhook_failures"] == {}
    assert response.headers["cache-control"] == "no-store"
    assert STATE_COOKIE not in env.browser.cookies  # one install per nonce

    # The token the shop issued is stored encrypted, and only that.
    tokens = [t for t in env.shop.access_tokens if t.startswith("shpua_")]
    assert len(tokens) == 1
    async with env.app.db.connect() as conn:
        row = (
            await conn.execute(
                select(
                    stores.c.id,
                    stores.c.credentials,
                    stores.c.is_source,
                    stores.c.is_destination,
                    stores.c.base_url,
                    stores.c.key_hash,
                ).where(stores.c.external_id == "acme.myshopify.com")
            )
        ).one()
        located = (
            await conn.execute(
                select(locations.c.name, locations.c.active, locations.c.shared)
                .where(locations.c.store_id == row.id)
                .order_by(locations.c.name)
            )
        ).all()
    assert tokens[0].encode() not in row.credentials
    assert env.app.vault.decrypt(row.credentials) == tokens[0]
    assert (row.is_source, row.is_destination) == (True, False)
    assert row.base_url == env.sandbox.shop_base_url(env.shop)
    assert row.key_hash is not None
    assert [tuple(r) for r in located] == [
        ("Old depot", False, False),
        ("Store", True, True),
        ("Warehouse", True, True),
    ]
    subscribed = env.sandbox.webhooks.of_shop(env.shop)
    assert sorted(s.topic for s in subscribed) == SOURCE_TOPICS
    assert {s.callback_url for s in subscribed} == {f"{env.public_url}/webhooks/shopify"}


async def test_a_code_is_exchanged_once(env: Env) -> None:
    callback = await env.approve(await env.start(role="destination"))
    cookie = env.browser.cookies[STATE_COOKIE]
    first = await env.browser.get(callback)
    assert first.status_code == 200, first.text
    # The same callback again, from the same browser with its install cookie restored.
    env.browser.cookies.set(STATE_COOKIE, cookie, path="/install/shopify")
    again = await env.browser.get(callback)
    assert again.status_code == 502
    assert "codes are good once" in again.json()["error"]
    assert len([t for t in env.shop.access_tokens if t.startswith("shpua_")]) == 1
    async with env.app.db.connect() as conn:
        count = len((await conn.execute(select(stores.c.id))).all())
        errors = (
            await conn.execute(select(activity_log.c.kind).where(activity_log.c.level == "error"))
        ).all()
    assert count == 1
    assert errors == []


async def test_callback_without_the_install_cookie_is_refused(env: Env) -> None:
    callback = await env.approve(await env.start())
    env.browser.cookies.clear()
    response = await env.browser.get(callback)
    assert response.status_code == 403
    assert "did not start the install" in response.json()["error"]
    assert [t for t in env.shop.access_tokens if t.startswith("shpua_")] == []


async def test_tampered_callback_is_refused_before_the_code_is_used(env: Env) -> None:
    callback = await env.approve(await env.start())
    params = _query(callback)
    params["shop"] = "evil.myshopify.com"
    response = await env.browser.get(
        f"{env.public_url}/install/shopify/callback?{urlencode(params)}"
    )
    assert response.status_code == 403
    assert "signature is wrong" in response.json()["error"]
    # Re-signed for another shop (as if the secret leaked): the cookie still names acme.
    params["hmac"] = query_hmac(params, SECRET)
    response = await env.browser.get(
        f"{env.public_url}/install/shopify/callback?{urlencode(params)}"
    )
    assert response.status_code == 403
    assert "another shop or session" in response.json()["error"]
    # The genuine callback still works: nothing was spent by the refusals.
    assert (await env.browser.get(callback)).status_code == 200


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"shop": "acme.example.com", "role": "source"}, 400, "not a Shopify shop domain"),
        ({"shop": "acme.myshopify.com", "role": "owner"}, 400, "role must be"),
        ({"shop": "acme.myshopify.com", "role": "hub"}, 400, "hubs enabled"),
    ],
)
async def test_bad_install_requests(
    env: Env, query: dict[str, str], status: int, message: str
) -> None:
    response = await env.browser.get(f"{env.public_url}/install/shopify", params=query)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert STATE_COOKIE not in env.browser.cookies


async def test_installing_again_updates_the_token_of_the_same_store(env: Env) -> None:
    first = await env.browser.get(await env.approve(await env.start()))
    assert first.status_code == 200, first.text
    second = await env.browser.get(await env.approve(await env.start()))
    assert second.status_code == 200, second.text
    assert second.json()["store_id"] == first.json()["store_id"]
    # Subscriptions already there are left alone, not duplicated.
    assert second.json()["webhooks"] == SOURCE_TOPICS
    assert len(env.sandbox.webhooks.of_shop(env.shop)) == len(SOURCE_TOPICS)
    tokens = [t for t in env.shop.access_tokens if t.startswith("shpua_")]
    assert len(tokens) == 2
    async with env.app.db.connect() as conn:
        rows = (await conn.execute(select(stores.c.credentials))).all()
        kinds = (await conn.execute(select(activity_log.c.kind).order_by(activity_log.c.id))).all()
    assert len(rows) == 1
    assert env.app.vault.decrypt(rows[0][0]) == tokens[1]
    assert [k[0] for k in kinds] == ["store_installed", "store_reinstalled"]
