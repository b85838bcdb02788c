"""Bulk operations, the OAuth install flow and the catalog generator."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlparse

from stocksync.sandbox import ManualClock, Sandbox, SeedSpec, seed_shop
from stocksync.sandbox.bulk import RUN_DELAY, flatten
from stocksync.sandbox.oauth import query_hmac
from stocksync.sandbox.state import Shop
from tests.sandbox.conftest import APP_SECRET, Admin, Receiver, eventually, subscribe

RUN = """mutation($q: String!) { bulkOperationRunQuery(query: $q) {
  bulkOperation { id status } userErrors { field message code } } }"""
CURRENT = "{ currentBulkOperation { id status objectCount rootObjectCount url errorCode } }"
BULK_QUERY = "{ products { edges { node { id title variants { edges { node { id sku } } } } } } }"


async def test_bulk_query_jsonl_with_parent_ids(
    admin: Admin, shop: Shop, clock: ManualClock, receiver: Receiver
) -> None:
    seed_shop(shop, SeedSpec(products=3, variants=2, seed=3))
    await subscribe(admin, receiver, "BULK_OPERATIONS_FINISH")
    started = await admin.data(RUN, {"q": BULK_QUERY})
    op = started["bulkOperationRunQuery"]["bulkOperation"]
    assert op["status"] == "RUNNING"
    busy = await admin.data(RUN, {"q": BULK_QUERY})
    assert busy["bulkOperationRunQuery"]["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    assert (await admin.data(CURRENT))["currentBulkOperation"]["status"] == "RUNNING"
    await eventually(lambda: clock.pending_sleepers() == 1)
    clock.advance(RUN_DELAY)
    await receiver.wait(lambda items: len(items) == 1)
    finish = receiver.items[0].json()
    assert finish["admin_graphql_api_id"] == op["id"]
    assert finish["status"] == "completed"
    assert finish["type"] == "query"
    assert finish["error_code"] is None
    current = (await admin.data(CURRENT))["currentBulkOperation"]
    assert (current["status"], current["objectCount"], current["rootObjectCount"]) == (
        "COMPLETED",
        "9",
        "3",
    )
    response = await admin.http.get(current["url"])
    lines = [json.loads(line) for line in response.text.splitlines()]
    products = [line for line in lines if "__parentId" not in line]
    variants = [line for line in lines if "__parentId" in line]
    assert len(products) == 3
    assert len(variants) == 6
    assert {v["__parentId"] for v in variants} == {p["id"] for p in products}
    assert set(variants[0]) == {"id", "sku", "__parentId"}


async def test_bulk_rejects_invalid_queries(admin: Admin) -> None:
    bad = await admin.data(RUN, {"q": "{ nothing }"})
    assert bad["bulkOperationRunQuery"]["userErrors"][0]["code"] == "INVALID"
    assert bad["bulkOperationRunQuery"]["bulkOperation"] is None


def test_flatten_nested_connections() -> None:
    lines, roots = flatten(
        {
            "products": {
                "nodes": [
                    {"id": "p1", "variants": {"nodes": [{"id": "v1"}, {"id": "v2"}]}},
                    {"id": "p2", "variants": {"nodes": []}},
                ]
            }
        }
    )
    assert roots == 2
    assert lines == [
        {"id": "p1"},
        {"id": "v1", "__parentId": "p1"},
        {"id": "v2", "__parentId": "p1"},
        {"id": "p2"},
    ]


async def test_oauth_install_flow(admin: Admin, sandbox: Sandbox, shop: Shop) -> None:
    base = sandbox.shop_base_url(shop)
    response = await admin.http.get(
        f"{base}/admin/oauth/authorize",
        params={
            "client_id": sandbox.app.client_id,
            "scope": "read_products,write_inventory",
            "redirect_uri": "http://127.0.0.1:9/callback",
            "state": "nonce-1",
        },
        follow_redirects=False,
    )
    assert response.status_code == 302
    location = urlparse(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "http://127.0.0.1:9/callback"
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert set(params) == {"code", "hmac", "host", "shop", "state", "timestamp"}
    assert params["shop"] == "acme.myshopify.com"
    assert params["state"] == "nonce-1"
    message = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "hmac")
    assert (
        params["hmac"]
        == hmac.new(APP_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    )
    assert params["hmac"] == query_hmac(params, APP_SECRET)
    exchange = {
        "client_id": sandbox.app.client_id,
        "client_secret": APP_SECRET,
        "code": params["code"],
    }
    token = await admin.http.post(f"{base}/admin/oauth/access_token", json=exchange)
    assert token.status_code == 200
    body = token.json()
    assert body["scope"] == "read_products,write_inventory"
    assert body["access_token"].startswith("shpua_")
    reused = await admin.http.post(f"{base}/admin/oauth/access_token", json=exchange)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_request"
    answer = await admin.post("{ shop { name } }", token=body["access_token"])
    assert answer.json()["data"] == {"shop": {"name": "acme"}}
    wrong = await admin.http.get(
        f"{base}/admin/oauth/authorize",
        params={"client_id": sandbox.app.client_id, "redirect_uri": "http://evil.example/cb"},
        follow_redirects=False,
    )
    assert wrong.status_code == 400


async def test_uninstall_revokes_tokens_and_notifies(
    admin: Admin, sandbox: Sandbox, receiver: Receiver
) -> None:
    await subscribe(admin, receiver, "APP_UNINSTALLED")
    response = await admin.http.post(f"{sandbox.base_url}/_sandbox/shops/acme/uninstall")
    assert response.status_code == 200
    await receiver.wait(lambda items: len(items) == 1)
    assert receiver.items[0].topic == "app/uninstalled"
    assert receiver.items[0].json()["myshopify_domain"] == "acme.myshopify.com"
    assert (await admin.post("{ shop { name } }")).status_code == 401
    # Shopify deletes the app's webhook subscriptions at its uninstall.
    assert sandbox.webhooks.of_shop(sandbox.shop("acme")) == []


def test_seed_is_deterministic_and_exercises_sku_hygiene() -> None:
    def build() -> Shop:
        sandbox = Sandbox(clock=ManualClock(), seed=1)
        shop = sandbox.create_shop("seeded", locations=["A", "B"])
        seed_shop(
            shop,
            SeedSpec(
                products=40,
                variants=3,
                seed=5,
                duplicate_skus=3,
                blank_skus=2,
                hidden_ratio=0.2,
                untracked_ratio=0.1,
            ),
        )
        return shop

    shop, again = build(), build()
    assert [p.title for p in shop.products.values()] == [p.title for p in again.products.values()]
    assert len(shop.products) == 40
    assert len(shop.variants) == 120
    skus = [v.sku for v in shop.variants.values()]
    assert sum(1 for s in skus if not s) == 2
    assert len([s for s in skus if s]) - len({s for s in skus if s}) == 3
    assert any("stocksync-hidden" in p.tags for p in shop.products.values())
    assert any(not i.tracked for i in shop.items.values())
    assert all(p.images for p in shop.products.values())
    levels = [lv.available for lv in shop.levels.values()]
    assert len(levels) == 240
    assert max(levels) > 0
