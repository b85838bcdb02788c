"""Installing a Shopify store through the app's OAuth flow.

``GET /install/shopify?shop=NAME.myshopify.com&role=source|destination|hub`` sends the merchant
to Shopify to approve the app; Shopify sends them back to ``/install/shopify/callback``, where
the callback is verified, the one-time code exchanged for an access token, and the store
installed with its token encrypted at rest, its locations recorded and its webhooks
subscribed.

The state nonce lives in a signed, HTTP-only cookie scoped to these two paths: only the browser
that started an install can finish it, and no table is needed for half-finished installs.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from stocksync.bootstrap import App
from stocksync.config import Settings
from stocksync.domain.ports import PlatformError
from stocksync.engine.stores import Roles, StoreError, install_store, set_locations
from stocksync.platforms.shopify.adapter import ShopifyPlatform
from stocksync.platforms.shopify.oauth import (
    STATE_LIFETIME,
    InstallError,
    InstallState,
    decode_state,
    encode_state,
    exchange_code,
    install_url,
    missing_scopes,
    new_nonce,
    normalise_shop,
    scope_list,
    shop_base_url,
    verify_callback,
)
from stocksync.platforms.shopify.subscriptions import ensure_subscriptions
from stocksync.platforms.shopify.subscriptions import webhook_topics as subscription_topics
from stocksync.platforms.shopify.versions import DEFAULT_VERSION
from stocksync.storage import activity

STATE_COOKIE = "stocksync_shopify_install"
INSTALL_PATH = "/install/shopify"
CALLBACK_PATH = "/install/shopify/callback"
WEBHOOK_PATH = "/webhooks/shopify"
DEFAULT_SHOP_URL = "https://{shop}"


def webhook_topics(roles: Roles) -> list[str]:
    return subscription_topics(source=roles.source, destination=roles.destination)


@dataclass
class WebhookReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


async def register_webhooks(
    platform: ShopifyPlatform, topics: Sequence[str], callback_url: str
) -> WebhookReport:
    """Subscribe ``callback_url`` to ``topics``, leaving subscriptions that already exist."""
    found = await ensure_subscriptions(platform.client, list(topics), callback_url)
    return WebhookReport(found.created, found.existing, found.failed)


def _refuse(status: int, message: str) -> JSONResponse:
    response = JSONResponse({"error": message}, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _app_settings(settings: Settings) -> tuple[str, str, str] | str:
    """(client id, secret, public URL), or what is missing."""
    client_id, secret, public_url = (
        settings.shopify_api_key,
        settings.shopify_api_secret,
        settings.public_url,
    )
    if client_id and secret and public_url:
        return client_id, secret, public_url.rstrip("/")
    missing = [
        name
        for name, value in (
            ("STOCKSYNC_SHOPIFY_API_KEY", client_id),
            ("STOCKSYNC_SHOPIFY_API_SECRET", secret),
            ("STOCKSYNC_PUBLIC_URL", public_url),
        )
        if not value
    ]
    return "the Shopify app is not configured: set " + ", ".join(missing)


def install_router(
    app: App,
    *,
    clock: Callable[[], float] = time.time,
    http: httpx.AsyncClient | None = None,
) -> APIRouter:
    """``clock`` and ``http`` are injectable so that tests control time and connections."""
    settings = app.settings
    router = APIRouter()

    @router.get(INSTALL_PATH, include_in_schema=False)
    async def start_install(shop: str = "", role: str = "destination") -> Response:
        configured = _app_settings(settings)
        if isinstance(configured, str):
            return _refuse(503, configured)
        client_id, secret, public_url = configured
        try:
            domain = normalise_shop(shop)
            roles = Roles.parse(role)
        except (InstallError, StoreError) as exc:
            return _refuse(400, str(exc))
        if roles.source and roles.destination and not settings.hubs_enabled:
            return _refuse(400, "a hub (source and destination at once) needs hubs enabled")
        nonce = new_nonce()
        state = InstallState(nonce, domain, role, clock() + STATE_LIFETIME)
        target = install_url(
            shop_base_url(settings.shopify_shop_url, domain),
            client_id=client_id,
            scopes=scope_list(settings.shopify_scopes),
            redirect_uri=public_url + CALLBACK_PATH,
            state=nonce,
        )
        response = RedirectResponse(target, status_code=302)
        response.set_cookie(
            STATE_COOKIE,
            encode_state(secret, state),
            max_age=int(STATE_LIFETIME),
            path=INSTALL_PATH,
            httponly=True,
            secure=public_url.startswith("https://"),
            # Lax: the cookie still comes back on Shopify's top-level redirect to the callback.
            samesite="lax",
        )
        return response

    @router.get(CALLBACK_PATH, include_in_schema=False)
    async def finish_install(request: Request) -> Response:
        configured = _app_settings(settings)
        if isinstance(configured, str):
            return _refuse(503, configured)
        client_id, secret, public_url = configured
        params = dict(request.query_params)
        now = clock()
        try:
            domain = verify_callback(
                params, settings.shopify_secrets(datetime.fromtimestamp(now, UTC)), now=now
            )
            state = decode_state(secret, request.cookies.get(STATE_COOKIE), now=now)
        except InstallError as exc:
            return _refuse(403, str(exc))
        given_state = params.get("state", "").encode()
        if not hmac.compare_digest(state.nonce.encode(), given_state) or state.shop != domain:
            return _refuse(403, "this install was started for another shop or session; restart")
        base = shop_base_url(settings.shopify_shop_url, domain)
        try:
            if http is None:
                async with httpx.AsyncClient(timeout=30.0) as own:
                    grant = await exchange_code(
                        own, base, client_id=client_id, client_secret=secret, code=params["code"]
                    )
            else:
                grant = await exchange_code(
                    http, base, client_id=client_id, client_secret=secret, code=params["code"]
                )
        except (InstallError, KeyError) as exc:
            return _refuse(502, str(exc) if isinstance(exc, InstallError) else "no code given")
        lacking = missing_scopes(grant.scopes, scope_list(settings.shopify_scopes))
        if lacking:
            return _refuse(
                403, "the app was not granted every scope it needs: missing " + ", ".join(lacking)
            )
        stored_base = None if settings.shopify_shop_url == DEFAULT_SHOP_URL else base
        platform = ShopifyPlatform(
            domain, grant.access_token, api_version=DEFAULT_VERSION, base_url=stored_base
        )
        try:
            return await _install(
                app, platform, grant.access_token, state.role, stored_base, public_url
            )
        finally:
            await platform.aclose()

    return router


async def _install(
    app: App,
    platform: ShopifyPlatform,
    token: str,
    role: str,
    base_url: str | None,
    public_url: str,
) -> Response:
    try:
        # Read before anything is written: a token that cannot read locations installs nothing.
        found = await platform.list_locations()
    except PlatformError as exc:
        return _refuse(502, f"the shop's locations could not be read: {exc}")
    roles = Roles.parse(role)
    try:
        async with app.db.begin() as conn:
            store, _ = await install_store(
                app.runtime,
                conn,
                vault=app.vault,
                platform="shopify",
                external_id=platform.shop_domain,
                role=role,
                credentials=token,
                base_url=base_url,
                plan_product_limit=None,
                hub_enabled=app.settings.hubs_enabled,
            )
            await set_locations(conn, store.id, found)
    except StoreError as exc:
        return _refuse(409, str(exc))
    callback = public_url + WEBHOOK_PATH
    try:
        report = await register_webhooks(platform, webhook_topics(roles), callback)
    except PlatformError as exc:
        report = WebhookReport(failed={"*": str(exc)})
    if report.failed:
        async with app.db.begin() as conn:
            await activity.record(
                conn,
                store_id=store.id,
                level="error",
                kind="webhooks_not_registered",
                message="some webhook subscriptions could not be created; changes may arrive "
                "only through reconciliation until they are",
                details={"failed": report.failed, "callback_url": callback},
                retry={"task": "register_webhooks", "args": {"store_id": store.id}},
            )
    body: dict[str, Any] = {
        "store_id": store.id,
        "shop": store.external_id,
        "role": role,
        "locations": [loc.name for loc in found],
        "webhooks": sorted(report.created + report.existing),
        "webhook_failures": report.failed,
    }
    response = JSONResponse(body, status_code=200)
    response.headers["Cache-Control"] = "no-store"
    response.delete_cookie(STATE_COOKIE, path=INSTALL_PATH)
    return response
