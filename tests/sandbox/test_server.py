"""The HTTP surface: authentication, errors, manifest, faults, admin endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from stocksync.sandbox import Sandbox
from stocksync.sandbox.faults import Faults, parse_cli_fault
from stocksync.sandbox.manifest import read_manifest, write_manifest
from stocksync.sandbox.server import serve_in_thread
from stocksync.sandbox.state import Shop
from tests.sandbox.conftest import Admin
from tests.sandbox.helpers import location_ids, make_product, quantities
from tests.sandbox.test_inventory import SET, _set_input


async def test_wrong_token_gets_shopify_401(admin: Admin) -> None:
    response = await admin.post("{ shop { id } }", token="shpat_wrong")
    assert response.status_code == 401
    assert response.json() == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }


async def test_unknown_shop_and_bad_body(admin: Admin, sandbox: Sandbox) -> None:
    response = await admin.http.post(
        f"{sandbox.base_url}/shops/nope.myshopify.com/admin/api/2025-01/graphql.json",
        json={"query": "{ shop { id } }"},
    )
    assert response.status_code == 404
    bad = await admin.http.post(
        admin.url, content=b"{not json", headers={"X-Shopify-Access-Token": admin.token}
    )
    assert bad.status_code == 400
    assert bad.json() == {"errors": {"query": "Required parameter missing or invalid"}}


async def test_unknown_field_is_answered_like_shopify(admin: Admin) -> None:
    # `customers` exists on Shopify but is outside the sandbox's subset: same answer as unknown.
    body = await admin.gql("{ shop { id } customers(first: 1) { nodes { id } } }")
    assert body["errors"][0]["message"] == "Field 'customers' doesn't exist on type 'QueryRoot'"
    assert body["errors"][0]["extensions"] == {
        "code": "undefinedField",
        "typeName": "QueryRoot",
        "fieldName": "customers",
    }
    assert "data" not in body
    syntax = await admin.gql("{ shop { ")
    assert syntax["errors"][0]["message"].startswith("Syntax Error")


async def test_graphql_content_type_and_version_header(admin: Admin) -> None:
    response = await admin.http.post(
        admin.url.replace("2025-01", "2026-01"),
        content=b"{ shop { name } }",
        headers={"X-Shopify-Access-Token": admin.token, "Content-Type": "application/graphql"},
    )
    assert response.json()["data"] == {"shop": {"name": "acme"}}
    assert response.headers["x-shopify-api-version"] == "2026-01"


async def test_manifest_lists_shops(
    admin: Admin, sandbox: Sandbox, shop: Shop, tmp_path: Path
) -> None:
    response = await admin.http.get(f"{sandbox.base_url}/_sandbox/manifest")
    manifest = response.json()
    entry = manifest["shops"][0]
    assert entry["domain"] == "acme.myshopify.com"
    assert entry["graphql_url"] == admin.url
    assert entry["access_token"] == "shpat_acme"
    assert entry["base_url"] == f"{sandbox.base_url}/shops/acme.myshopify.com"
    assert [loc["name"] for loc in entry["locations"]] == ["Warehouse", "Store", "Old depot"]
    assert entry["location_ids"] == [loc["id"] for loc in entry["locations"]]
    write_manifest(tmp_path / "m.json", manifest)
    assert read_manifest(tmp_path / "m.json") == manifest


async def test_create_shop_through_admin_endpoint(admin: Admin, sandbox: Sandbox) -> None:
    response = await admin.http.post(
        f"{sandbox.base_url}/_sandbox/shops",
        json={
            "name": "second",
            "access_token": "shpat_second",
            "plan": "plus",
            "seed": {"products": 3, "variants": 2},
        },
    )
    assert response.status_code == 201
    entry = response.json()
    data = await admin.http.post(
        entry["graphql_url"],
        json={"query": "{ products(first: 10) { nodes { id } } }"},
        headers={"X-Shopify-Access-Token": "shpat_second"},
    )
    assert len(data.json()["data"]["products"]["nodes"]) == 3
    assert data.json()["extensions"]["cost"]["throttleStatus"]["restoreRate"] == 1000.0
    again = await admin.http.post(f"{sandbox.base_url}/_sandbox/shops", json={"name": "second"})
    assert again.status_code == 400


async def test_5xx_timeout_and_unreachable_faults(
    admin: Admin, sandbox: Sandbox, shop: Shop
) -> None:
    sandbox.set_faults("acme", error_5xx={"next": 1})
    failed = await admin.post("{ shop { id } }")
    assert failed.status_code in (500, 502, 503, 504)
    assert (await admin.post("{ shop { id } }")).status_code == 200
    sandbox.set_faults("acme", timeout={"next": 1}, timeout_seconds=2)
    with pytest.raises(httpx.ReadTimeout):
        await admin.http.post(
            admin.url,
            json={"query": "{ shop { id } }"},
            headers={"X-Shopify-Access-Token": admin.token},
            timeout=0.2,
        )
    sandbox.set_faults("acme", unreachable=True)
    assert (await admin.post("{ shop { id } }")).status_code == 503
    sandbox.clear_faults("acme")
    assert (await admin.post("{ shop { id } }")).status_code == 200
    stats = sandbox.stats_of(shop)
    assert (stats.errors_5xx, stats.timeouts, stats.unreachable) == (1, 1, 1)


async def test_lost_response_applies_the_write(admin: Admin, sandbox: Sandbox) -> None:
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Cap", ["CAP-1"], {loc: 10}))[0]
    item = variant["inventoryItem"]["id"]
    sandbox.set_faults("acme", lost_response={"next": 1})
    response = await admin.post(SET, {"input": _set_input(item, loc, 3, compareQuantity=10)})
    assert response.status_code == 502
    assert (await quantities(admin, item, loc))["available"] == 3
    # The client retrying with its stale compare value learns that the write happened.
    retry = await admin.data(SET, {"input": _set_input(item, loc, 3, compareQuantity=10)})
    assert retry["inventorySetQuantities"]["userErrors"][0]["code"] == "COMPARE_QUANTITY_STALE"


async def test_race_fault_changes_a_level_between_read_and_write(
    admin: Admin, sandbox: Sandbox
) -> None:
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Cap", ["CAP-1"], {loc: 10}))[0]
    item = variant["inventoryItem"]["id"]
    read = (await quantities(admin, item, loc))["available"]
    sandbox.set_faults("acme", race={"next": 1}, race_delta=-2)
    data = await admin.data(SET, {"input": _set_input(item, loc, 4, compareQuantity=read)})
    assert data["inventorySetQuantities"]["userErrors"][0]["code"] == "COMPARE_QUANTITY_STALE"
    assert (await quantities(admin, item, loc))["available"] == 8


async def test_latency_fault(admin: Admin, sandbox: Sandbox) -> None:
    sandbox.set_faults("acme", latency_ms=30)
    response = await admin.post("{ shop { id } }")
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.03


async def test_admin_endpoint_faults_and_stats(admin: Admin, sandbox: Sandbox) -> None:
    base = f"{sandbox.base_url}/_sandbox"
    set_ = await admin.http.post(
        f"{base}/shops/acme/faults", json={"error_5xx": {"next": 2}, "latency_ms": 0}
    )
    assert set_.json()["error_5xx"] == {"rate": 0.0, "next": 2}
    assert (
        await admin.http.post(f"{base}/shops/acme/faults", json={"bogus": 1})
    ).status_code == 400
    await admin.post("{ shop { id } }")
    await admin.post("{ shop { id } }")
    await admin.post("{ shop { id } }")
    cleared = await admin.http.delete(f"{base}/shops/acme/faults")
    assert cleared.json()["error_5xx"] == {"rate": 0.0, "next": 0}
    stats = (await admin.http.get(f"{base}/stats")).json()["acme"]
    assert stats["requests"] == 3
    assert stats["errors_5xx"] == 2
    assert stats["points_spent"] == 1.0
    for key in ("throttled", "webhooks_sent", "webhooks_dropped", "webhooks_duplicated"):
        assert stats[key] == 0


def test_fault_settings_parse() -> None:
    faults = Faults()
    faults.update(
        {"latency_ms": "25", "error_5xx": "0.5", "webhook_drop.next": "2", "unreachable": "true"}
    )
    assert faults.latency_ms == 25.0
    assert faults.error_5xx.rate == 0.5
    assert faults.webhook_drop.next == 2
    assert faults.unreachable is True
    assert [faults.take("webhook_drop") for _ in range(3)] == [True, True, False]
    assert parse_cli_fault("source:latency_ms=50") == ("source", "latency_ms", "50")
    with pytest.raises(ValueError, match="SHOP:NAME=VALUE"):
        parse_cli_fault("latency_ms=50")
    with pytest.raises(ValueError, match="unknown fault"):
        faults.update({"nope": 1})


def test_serve_in_thread_for_synchronous_callers(sandbox: Sandbox, shop: Shop) -> None:
    with serve_in_thread(sandbox) as running:
        response = httpx.post(
            running.graphql_url("acme"),
            json={"query": "{ shop { name } }"},
            headers={"X-Shopify-Access-Token": shop.access_token},
            trust_env=False,
        )
        assert response.json()["data"] == {"shop": {"name": "acme"}}
        assert (
            json.loads(httpx.get(f"{running.url}/_sandbox/manifest", trust_env=False).text)[
                "shops"
            ][0]["name"]
            == "acme"
        )


async def test_manual_clock_through_the_admin_endpoint(admin: Admin, sandbox: Sandbox) -> None:
    url = f"{sandbox.base_url}/_sandbox/clock"
    before = (await admin.http.get(url)).json()
    assert before == {"now": 1735689600.0, "manual": True}
    after = (await admin.http.post(url, json={"seconds": 90})).json()
    assert after["now"] == 1735689690.0
    assert (await admin.data("{ shop { id } }"))["shop"]["id"].startswith("gid://shopify/Shop/")
