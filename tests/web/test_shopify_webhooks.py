"""The Shopify webhook receiver: signatures, duplicates, bad bodies, unknown shops, rotation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from stocksync.bootstrap import App, build_app
from stocksync.config import Settings
from stocksync.engine.schedule import REFRESH_LOCATIONS
from stocksync.engine.stores import install_store
from stocksync.platforms.shopify.webhooks import sign
from stocksync.storage.schema import create_all
from stocksync.storage.tables import activity_log, inbox, jobs, source_dirty
from stocksync.web.app import create_web_app
from tests.log_capture import capture_logs

SECRET = "current-secret"
PREVIOUS = "previous-secret"
SHOP = "source-shop.myshopify.com"
ITEM_ID = 2**53 + 17  # beyond a float's exact range


def _level_body(available: int = 5) -> bytes:
    return json.dumps(
        {
            "inventory_item_id": ITEM_ID,
            "location_id": 2**53 + 3,
            "available": available,
            "updated_at": "2026-11-26T10:00:00-05:00",
            "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{ITEM_ID}",
        }
    ).encode()


class Client:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(
        self,
        body: bytes,
        *,
        topic: str = "inventory_levels/update",
        event_id: str = "evt-1",
        secret: str | None = SECRET,
        hmac_value: str | None = None,
        shop: str = SHOP,
    ) -> httpx.Response:
        headers = {
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Webhook-Id": f"wh-{event_id}",
            "X-Shopify-API-Version": "2026-10",
            "Content-Type": "application/json",
        }
        if hmac_value is not None:
            headers["X-Shopify-Hmac-Sha256"] = hmac_value
        elif secret is not None:
            headers["X-Shopify-Hmac-Sha256"] = sign(secret, body)
        return await self.http.post("/webhooks/shopify", content=body, headers=headers)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(
        data_dir=tmp_path,
        shopify_api_secret=SECRET,
        shopify_api_secret_previous=PREVIOUS,
        shopify_api_secret_previous_until=datetime.now(UTC) + timedelta(hours=1),
        webhook_max_bytes=10_000,
    )
    built = build_app(settings)
    await create_all(built.db)
    async with built.db.begin() as conn:
        await install_store(
            built.runtime,
            conn,
            vault=built.vault,
            platform="shopify",
            external_id=SHOP,
            role="source",
        )
    yield built
    await built.db.dispose()


@pytest.fixture
async def client(app: App) -> AsyncIterator[Client]:
    web = create_web_app(app, embedded_worker=False)
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://stocksync.test") as http:
        yield Client(http)


async def _inbox_rows(app: App) -> int:
    async with app.db.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(inbox))).scalar_one())


async def _activity(app: App, kind: str) -> list[str]:
    async with app.db.connect() as conn:
        rows = await conn.execute(select(activity_log.c.message).where(activity_log.c.kind == kind))
        return [r[0] for r in rows]


@pytest.mark.parametrize(
    "signature",
    [
        {"secret": None},  # missing
        {"secret": "forged-secret"},  # wrong secret
        {"hmac_value": "not base64 at all"},
        {"hmac_value": sign(SECRET, _level_body(6))},  # signature of another body (tampered)
    ],
)
async def test_bad_signatures_get_401_and_store_nothing(
    app: App, client: Client, signature: dict[str, str | None]
) -> None:
    response = await client.post(_level_body(5), **signature)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert await _inbox_rows(app) == 0


async def test_valid_webhook_is_recorded_once(app: App, client: Client) -> None:
    first = await client.post(_level_body())
    again = await client.post(_level_body())
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["message"] == "duplicate"
    assert await _inbox_rows(app) == 1
    async with app.db.connect() as conn:
        row = (await conn.execute(select(inbox.c.store_ref, inbox.c.event))).one()
    assert row[0] == SHOP
    # The 64-bit id survived exactly (no float on the way).
    assert row[1]["data"]["item_id"].endswith(str(ITEM_ID))


async def test_previous_secret_accepted_until_its_deadline(app: App, client: Client) -> None:
    assert (await client.post(_level_body(), secret=PREVIOUS, event_id="a")).status_code == 200
    app.settings.shopify_api_secret_previous_until = datetime.now(UTC) - timedelta(seconds=1)
    assert (await client.post(_level_body(), secret=PREVIOUS, event_id="b")).status_code == 401
    assert (await client.post(_level_body(), secret=SECRET, event_id="c")).status_code == 200


async def test_malformed_json_with_valid_signature_is_400_and_logged(
    app: App, client: Client
) -> None:
    response = await client.post(b"{not json", event_id="bad")
    assert response.status_code == 400
    assert await _inbox_rows(app) == 1
    messages = await _activity(app, "event_unreadable")
    assert messages == ["a inventory_levels/update event could not be read and was not applied"]


async def test_unknown_shop_is_200_and_logged(app: App, client: Client) -> None:
    response = await client.post(_level_body(), shop="stranger.myshopify.com", event_id="x")
    assert response.status_code == 200
    assert response.json()["message"] == "unknown_store"
    [message] = await _activity(app, "unknown_store")
    assert "stranger.myshopify.com" in message
    assert "not installed" in message


async def test_oversized_body_is_413(app: App, client: Client) -> None:
    body = json.dumps({"padding": "x" * 20_000}).encode()
    response = await client.post(body, event_id="big")
    assert response.status_code == 413
    assert await _inbox_rows(app) == 0


async def test_unlinked_item_is_logged_and_ignored(app: App, client: Client) -> None:
    response = await client.post(_level_body(), event_id="u")
    assert response.json()["message"] == "ignored"
    assert await _activity(app, "event_ignored")
    async with app.db.connect() as conn:
        dirty = (await conn.execute(select(func.count()).select_from(source_dirty))).scalar()
    assert dirty == 0


async def test_app_uninstalled_suspends_and_erases_the_token(app: App, client: Client) -> None:
    response = await client.post(b"{}", topic="app/uninstalled", event_id="un")
    assert response.status_code == 200
    assert await _activity(app, "store_uninstalled")


async def test_privacy_topics_answer_200(app: App, client: Client) -> None:
    for n, topic in enumerate(("customers/data_request", "customers/redact", "shop/redact")):
        response = await client.post(b'{"shop_domain": "x"}', topic=topic, event_id=f"p{n}")
        assert response.status_code == 200, topic
    assert len(await _activity(app, "privacy_request")) == 2


async def test_location_webhooks_schedule_one_read_of_the_locations(
    app: App, client: Client
) -> None:
    for n, topic in enumerate(("locations/deactivate", "locations/update", "locations/delete")):
        response = await client.post(b'{"id": 9007199254740993}', topic=topic, event_id=f"l{n}")
        assert (response.status_code, response.json()["message"]) == (200, "recorded"), topic
    async with app.db.connect() as conn:  # the embedded queue's table (SQLite)
        waiting = (
            await conn.execute(select(jobs.c.task).where(jobs.c.task == REFRESH_LOCATIONS))
        ).all()
    assert len(waiting) == 1  # the burst coalesced into one read of the locations
    assert await _activity(app, "event_unreadable") == []


async def test_topics_not_followed_are_answered_and_not_stored(app: App, client: Client) -> None:
    response = await client.post(b'{"admin_graphql_api_id": "x"}', topic="bulk_operations/finish")
    assert (response.status_code, response.json()["message"]) == (
        200,
        "not followed: bulk_operations/finish",
    )
    assert await _inbox_rows(app) == 0
    assert await _activity(app, "event_unreadable") == []


async def test_each_delivery_logs_one_line_with_its_ids_and_result(
    app: App, client: Client
) -> None:
    body = _level_body(5)
    with capture_logs("INFO") as captured:
        stored = await client.post(b"{}", topic="customers/redact", event_id="e1")
        duplicate = await client.post(b"{}", topic="customers/redact", event_id="e1")
        stranger = await client.post(body, shop="stranger.myshopify.com", event_id="e2")
        forged = await client.post(body, event_id="e3", secret="forged-secret")
        unreadable = await client.post(b"{not json", event_id="e4")
    statuses = [r.status_code for r in (stored, duplicate, stranger, forged, unreadable)]
    assert statuses == [200, 200, 200, 401, 400]

    lines = captured.events("webhook")
    assert [(line["event_id"], line["result"], line["status"]) for line in lines] == [
        ("e1", "stored", 200),
        ("e1", "duplicate", 200),
        ("e2", "unknown_store", 200),
        ("e3", "refused", 401),
        ("e4", "refused", 400),
    ]
    for line in lines:
        assert line["platform"] == "shopify"
        assert line["webhook_id"] == f"wh-{line['event_id']}"
        assert isinstance(line["duration_ms"], float)
        assert line["level"] == ("warning" if line["result"] == "refused" else "info")
    assert [line["shop"] for line in lines] == [SHOP, SHOP, "stranger.myshopify.com", SHOP, SHOP]
    assert lines[0]["topic"] == "customers/redact"
    assert lines[3]["topic"] == "inventory_levels/update"
    assert isinstance(lines[0]["inbox_id"], int)
    assert isinstance(lines[4]["inbox_id"], int)
    assert lines[3]["reason"] == "invalid webhook signature"
    assert lines[4]["reason"] == "the webhook body could not be read"
    # Ids and topics only: no secret, no signature, no body.
    for secret in (SECRET, "forged-secret", sign(SECRET, body), str(ITEM_ID)):
        assert secret not in captured.text
