"""Products and variants over real HTTP."""

from __future__ import annotations

from typing import Any

from stocksync.sandbox import ManualClock
from tests.sandbox.conftest import Admin, Receiver, subscribe
from tests.sandbox.helpers import CREATE_PRODUCT, location_ids, make_product

PRODUCT = """
query($id: ID!) {
  product(id: $id) {
    id title handle vendor productType status tags descriptionHtml publishedAt totalInventory
    tracksInventory hasOnlyDefaultVariant
    options { name values }
    images(first: 5) { nodes { url altText } }
    featuredImage { url }
    variantsCount { count }
    variants(first: 10) { nodes { id title sku price compareAtPrice barcode inventoryPolicy
      inventoryQuantity selectedOptions { name value } inventoryItem { tracked measurement {
        weight { value unit } } } } }
  }
}"""


async def _product(admin: Admin, pid: str) -> dict[str, Any]:
    result: dict[str, Any] = (await admin.data(PRODUCT, {"id": pid}))["product"]
    return result


async def test_create_with_media_and_variants(admin: Admin) -> None:
    loc = (await location_ids(admin))[0]
    data = await admin.data(
        "mutation($p: ProductCreateInput!, $m: [CreateMediaInput!]) { productCreate(product: "
        "$p, media: $m) "
        "{ product { id handle } userErrors { field message } } }",
        {
            "p": {
                "title": "Linen Shirt",
                "vendor": "Acme",
                "productType": "Shirt",
                "tags": ["summer", "new"],
                "descriptionHtml": "<p>Cool</p>",
                "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "M"}]}],
            },
            "m": [
                {
                    "originalSource": "https://cdn.example.com/a.jpg",
                    "alt": "front",
                    "mediaContentType": "IMAGE",
                }
            ],
        },
    )
    pid = data["productCreate"]["product"]["id"]
    assert data["productCreate"]["product"]["handle"] == "linen-shirt"
    created = await _product(admin, pid)
    assert created["variantsCount"] == {"count": 1}
    assert created["variants"]["nodes"][0]["selectedOptions"] == [{"name": "Size", "value": "S"}]
    variants = [
        {
            "optionValues": [{"optionName": "Size", "name": "M"}],
            "price": "25.00",
            "inventoryItem": {
                "sku": "SHIRT-M",
                "tracked": False,
                "measurement": {"weight": {"value": 0.3, "unit": "KILOGRAMS"}},
            },
            "inventoryPolicy": "CONTINUE",
            "inventoryQuantities": [{"locationId": loc, "availableQuantity": 4}],
        }
    ]
    added = await admin.data(
        "mutation($id: ID!, $v: [ProductVariantsBulkInput!]!) { "
        "productVariantsBulkCreate(productId: $id, variants: $v) "
        "{ productVariants { sku } userErrors { code message } } }",
        {"id": pid, "v": variants},
    )
    assert added["productVariantsBulkCreate"]["productVariants"] == [{"sku": "SHIRT-M"}]
    product = await _product(admin, pid)
    assert product["tags"] == ["new", "summer"]
    assert product["images"]["nodes"] == [
        {"url": "https://cdn.example.com/a.jpg", "altText": "front"}
    ]
    assert product["featuredImage"] == {"url": "https://cdn.example.com/a.jpg"}
    assert product["options"] == [{"name": "Size", "values": ["S", "M"]}]
    m = product["variants"]["nodes"][1]
    assert (m["sku"], m["price"], m["inventoryPolicy"], m["inventoryQuantity"]) == (
        "SHIRT-M",
        "25.00",
        "CONTINUE",
        4,
    )
    assert m["inventoryItem"] == {
        "tracked": False,
        "measurement": {"weight": {"value": 0.3, "unit": "KILOGRAMS"}},
    }
    duplicate = await admin.data(
        "mutation($id: ID!, $v: [ProductVariantsBulkInput!]!) { "
        "productVariantsBulkCreate(productId: $id, variants: $v) "
        "{ productVariants { sku } userErrors { code message } } }",
        {"id": pid, "v": variants[:1]},
    )
    assert (
        duplicate["productVariantsBulkCreate"]["userErrors"][0]["code"] == "VARIANT_ALREADY_EXISTS"
    )
    blank = await admin.data(CREATE_PRODUCT, {"product": {"title": " "}})
    assert blank["productCreate"]["userErrors"] == [
        {"field": ["title"], "message": "Title can't be blank"}
    ]


async def test_update_variants_tags_status_publishing_and_delete(
    admin: Admin, receiver: Receiver
) -> None:
    loc = (await location_ids(admin))[0]
    variants = await make_product(admin, "Beanie", ["B-1", "B-2"], {loc: 3})
    pid = (await admin.data("{ products(first: 1) { nodes { id } } }"))["products"]["nodes"][0][
        "id"
    ]
    await subscribe(admin, receiver, "PRODUCTS_UPDATE", "PRODUCTS_DELETE")
    updated = await admin.data(
        "mutation($id: ID!, $v: [ProductVariantsBulkInput!]!) { "
        "productVariantsBulkUpdate(productId: $id, variants: $v) "
        "{ productVariants { sku price compareAtPrice barcode } userErrors { code } } }",
        {
            "id": pid,
            "v": [
                {
                    "id": variants[0]["id"],
                    "price": "12.50",
                    "compareAtPrice": "15.00",
                    "barcode": "123",
                    "inventoryItem": {"sku": "B-1X"},
                }
            ],
        },
    )
    assert updated["productVariantsBulkUpdate"]["productVariants"] == [
        {"sku": "B-1X", "price": "12.50", "compareAtPrice": "15.00", "barcode": "123"}
    ]
    refused = await admin.data(
        "mutation($id: ID!, $v: [ProductVariantsBulkInput!]!) { "
        "productVariantsBulkUpdate(productId: $id, variants: $v) "
        "{ userErrors { code } } }",
        {
            "id": pid,
            "v": [
                {
                    "id": variants[0]["id"],
                    "inventoryQuantities": [{"locationId": loc, "availableQuantity": 1}],
                }
            ],
        },
    )
    assert refused["productVariantsBulkUpdate"]["userErrors"] == [
        {"code": "NO_INVENTORY_QUANTITIES_ON_VARIANTS_UPDATE"}
    ]
    await admin.data(
        'mutation($id: ID!) { tagsAdd(id: $id, tags: ["stocksync-hidden", "winter"]) { '
        "userErrors { message } } }",
        {"id": pid},
    )
    await admin.data(
        'mutation($id: ID!) { tagsRemove(id: $id, tags: ["winter"]) { userErrors { message } } }',
        {"id": pid},
    )
    await admin.data(
        "mutation($p: ProductUpdateInput!) { productUpdate(product: $p) { userErrors { "
        "message } } }",
        {"p": {"id": pid, "title": "Warm Beanie", "status": "DRAFT"}},
    )
    pubs = (await admin.data("{ publications(first: 5) { nodes { id name } } }"))["publications"][
        "nodes"
    ]
    unpub = await admin.data(
        "mutation($id: ID!, $p: ID!) { publishableUnpublish(id: $id, input: [{publicationId: $p}]) "
        "{ publishable { publishedOnPublication(publicationId: $p) } userErrors { message } } }",
        {"id": pid, "p": pubs[0]["id"]},
    )
    assert unpub["publishableUnpublish"]["publishable"] == {"publishedOnPublication": False}
    product = await _product(admin, pid)
    assert (product["title"], product["status"], product["tags"]) == (
        "Warm Beanie",
        "DRAFT",
        ["stocksync-hidden"],
    )
    deleted = await admin.data(
        "mutation($id: ID!, $v: [ID!]!) { productVariantsBulkDelete(productId: $id, "
        "variantsIds: $v) "
        "{ product { variantsCount { count } } userErrors { code } } }",
        {"id": pid, "v": [variants[1]["id"]]},
    )
    assert deleted["productVariantsBulkDelete"]["product"]["variantsCount"] == {"count": 1}
    gone = await admin.data(
        "mutation($id: ID!) { productDelete(input: {id: $id}) { deletedProductId userErrors { "
        "message } } }",
        {"id": pid},
    )
    assert gone["productDelete"]["deletedProductId"] == pid
    assert (await admin.data("query($id: ID!) { product(id: $id) { id } }", {"id": pid}))[
        "product"
    ] is None
    await receiver.wait(lambda items: "products/delete" in [r.topic for r in items])
    assert receiver.of("products/delete")[0].json() == {"id": int(pid.rsplit("/", 1)[1])}
    update_titles = [r.json()["title"] for r in receiver.of("products/update")]
    assert update_titles[-1] == "Warm Beanie"


async def test_product_set_creates_then_replaces_variants(admin: Admin) -> None:
    loc = (await location_ids(admin))[0]
    doc = """mutation($input: ProductSetInput!) { productSet(input: $input) {
      product { id variants(first: 10) { nodes { id sku inventoryQuantity } } } userErrors {
        field message code } } }"""
    created = await admin.data(
        doc,
        {
            "input": {
                "title": "Set Mug",
                "productOptions": [
                    {"name": "Color", "values": [{"name": "Red"}, {"name": "Blue"}]}
                ],
                "files": [
                    {"originalSource": "https://cdn.example.com/mug.png", "contentType": "IMAGE"}
                ],
                "variants": [
                    {
                        "optionValues": [{"optionName": "Color", "name": "Red"}],
                        "sku": "MUG-R",
                        "price": "9.00",
                        "inventoryQuantities": [
                            {"locationId": loc, "name": "available", "quantity": 5}
                        ],
                    },
                    {
                        "optionValues": [{"optionName": "Color", "name": "Blue"}],
                        "sku": "MUG-B",
                        "price": "9.00",
                    },
                ],
            }
        },
    )
    product = created["productSet"]["product"]
    assert [(v["sku"], v["inventoryQuantity"]) for v in product["variants"]["nodes"]] == [
        ("MUG-R", 5),
        ("MUG-B", 0),
    ]
    red = product["variants"]["nodes"][0]["id"]
    replaced = await admin.data(
        doc,
        {
            "input": {
                "id": product["id"],
                "variants": [
                    {
                        "id": red,
                        "optionValues": [{"optionName": "Color", "name": "Red"}],
                        "sku": "MUG-R2",
                    }
                ],
            }
        },
    )
    nodes = replaced["productSet"]["product"]["variants"]["nodes"]
    assert [(v["id"], v["sku"]) for v in nodes] == [(red, "MUG-R2")]


async def test_pagination_and_query_filters(admin: Admin, clock: ManualClock) -> None:
    loc = (await location_ids(admin))[0]
    for i in range(5):
        await make_product(admin, f"Item {i}", [f"SKU-{i}"], {loc: i})
        clock.advance(60)
    await admin.data(
        'mutation($id: ID!) { tagsAdd(id: $id, tags: ["sale"]) { userErrors { message } } }',
        {
            "id": (await admin.data("{ products(first: 1) { nodes { id } } }"))["products"][
                "nodes"
            ][0]["id"]
        },
    )
    titles: list[str] = []
    after = None
    while True:
        page = await admin.data(
            "query($a: String) { products(first: 2, after: $a) { nodes { title } pageInfo { "
            "hasNextPage endCursor } } }",
            {"a": after},
        )
        titles += [n["title"] for n in page["products"]["nodes"]]
        if not page["products"]["pageInfo"]["hasNextPage"]:
            break
        after = page["products"]["pageInfo"]["endCursor"]
    assert titles == [f"Item {i}" for i in range(5)]
    q = "query($q: String!) { products(first: 10, query: $q) { nodes { title } } }"
    assert (await admin.data(q, {"q": "tag:sale"}))["products"]["nodes"] == [{"title": "Item 0"}]
    assert (await admin.data(q, {"q": "sku:SKU-3"}))["products"]["nodes"] == [{"title": "Item 3"}]
    assert (await admin.data(q, {"q": "-tag:sale AND sku:SKU-0"}))["products"]["nodes"] == []
    from stocksync.sandbox.timefmt import iso_z

    cutoff = iso_z(clock.now() - 150)
    recent = await admin.data(q, {"q": f"updated_at:>'{cutoff}'"})
    assert [n["title"] for n in recent["products"]["nodes"]] == ["Item 0", "Item 3", "Item 4"]
    variants = await admin.data(
        '{ productVariants(first: 10, query: "sku:SKU-4") { nodes { sku product { title } } } }'
    )
    assert variants["productVariants"]["nodes"] == [
        {"sku": "SKU-4", "product": {"title": "Item 4"}}
    ]
    reverse = await admin.data(
        "{ products(last: 2) { nodes { title } pageInfo { hasPreviousPage } } }"
    )
    assert reverse["products"] == {
        "nodes": [{"title": "Item 3"}, {"title": "Item 4"}],
        "pageInfo": {"hasPreviousPage": True},
    }
    missing = await admin.gql("{ products { nodes { id } } }")
    assert missing["errors"][0]["message"] == "you must provide one of first or last"


async def test_nodes_lookup(admin: Admin) -> None:
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Node", ["N-1"], {loc: 1}))[0]
    data = await admin.data(
        "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }",
        {"ids": [variant["id"], loc, "gid://shopify/Product/1"]},
    )
    assert data["nodes"] == [
        {"__typename": "ProductVariant", "id": variant["id"]},
        {"__typename": "Location", "id": loc},
        None,
    ]
