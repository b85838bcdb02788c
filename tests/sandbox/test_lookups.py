"""The single-object lookups and counters, over real HTTP."""

from __future__ import annotations

from tests.sandbox.conftest import Admin, Receiver, subscribe
from tests.sandbox.helpers import location_ids, make_product

LOOKUPS = """
query($v: ID!, $l: ID!, $p: ID!, $pub: ID!) {
  productsCount(query: "sku:LK-1") { count precision }
  productVariant(id: $v) { sku displayName product { title } }
  location(id: $l) { name isActive activatable deactivatable hasActiveInventory }
  node(id: $p) { __typename ... on Product { title publishedOnPublication(publicationId: $pub) } }
}"""


async def test_lookups_and_publishing(admin: Admin) -> None:
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Lookup", ["LK-1"], {loc: 2}))[0]
    found = await admin.data("{ products(first: 1) { nodes { id } } }")
    product = found["products"]["nodes"][0]["id"]
    pubs = await admin.data("{ publications(first: 5) { nodes { id name } } }")
    pub = pubs["publications"]["nodes"][0]
    assert [n["name"] for n in pubs["publications"]["nodes"]] == ["Online Store", "Point of Sale"]
    await admin.data(
        "mutation($id: ID!, $p: ID!) { publishableUnpublish(id: $id, input: [{publicationId: $p}])"
        " { userErrors { message } } }",
        {"id": product, "p": pub["id"]},
    )
    data = await admin.data(LOOKUPS, {"v": variant["id"], "l": loc, "p": product, "pub": pub["id"]})
    assert data["productsCount"] == {"count": 1, "precision": "EXACT"}
    assert data["productVariant"] == {
        "sku": "LK-1",
        "displayName": "Lookup - LK-1",
        "product": {"title": "Lookup"},
    }
    assert data["location"] == {
        "name": "Warehouse",
        "isActive": True,
        "activatable": False,
        "deactivatable": True,
        "hasActiveInventory": True,
    }
    assert data["node"] == {
        "__typename": "Product",
        "title": "Lookup",
        "publishedOnPublication": False,
    }
    published = await admin.data(
        "mutation($id: ID!, $p: ID!) { publishablePublish(id: $id, input: [{publicationId: $p}])"
        " { publishable { publishedOnPublication(publicationId: $p) } userErrors { message } } }",
        {"id": product, "p": pub["id"]},
    )
    assert published["publishablePublish"] == {
        "publishable": {"publishedOnPublication": True},
        "userErrors": [],
    }


async def test_webhook_subscription_by_id(admin: Admin, receiver: Receiver) -> None:
    await subscribe(admin, receiver, "PRODUCTS_CREATE")
    listed = await admin.data("{ webhookSubscriptions(first: 1) { nodes { id } } }")
    sub_id = listed["webhookSubscriptions"]["nodes"][0]["id"]
    data = await admin.data(
        "query($id: ID!) { webhookSubscription(id: $id) { topic format includeFields"
        " legacyResourceId createdAt } }",
        {"id": sub_id},
    )
    sub = data["webhookSubscription"]
    assert (sub["topic"], sub["format"], sub["includeFields"]) == ("PRODUCTS_CREATE", "JSON", [])
    assert sub["legacyResourceId"] == sub_id.rsplit("/", 1)[1]
    assert sub["createdAt"] == "2025-01-01T00:00:00Z"
