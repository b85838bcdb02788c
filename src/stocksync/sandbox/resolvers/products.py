"""Products, variants, tags, publishing and images."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLResolveInfo

from stocksync.sandbox.ids import gid, parse_gid
from stocksync.sandbox.resolvers.common import connection, ctx, field_resolver, user_error
from stocksync.sandbox.search import filter_items
from stocksync.sandbox.state import (
    Image,
    Product,
    ProductOption,
    ShopError,
    Variant,
    clean_tags,
)

Info = GraphQLResolveInfo

PRODUCT_FILTERS = {
    "tag": lambda p: p.tags,
    "sku": None,  # filled below (needs the shop)
    "title": lambda p: p.title,
    "status": lambda p: p.status,
    "vendor": lambda p: p.vendor,
    "product_type": lambda p: p.product_type,
    "handle": lambda p: p.handle,
    "id": lambda p: p.id,
    "updated_at": lambda p: p.updated_at,
    "created_at": lambda p: p.created_at,
    "default": lambda p: p.title,
}


def _product_filters(info: Info) -> dict[str, Any]:
    shop = ctx(info).shop
    filters = dict(PRODUCT_FILTERS)
    filters["sku"] = lambda p: [shop.variants[v].sku for v in p.variant_ids]
    filters["tag_not"] = lambda p: p.tags
    return filters


_SORT = {
    "ID": lambda o: o.id,
    "CREATED_AT": lambda o: [o.created_at, o.id],
    "UPDATED_AT": lambda o: [o.updated_at, o.id],
    "TITLE": lambda o: [o.title.lower(), o.id],
    "SKU": lambda o: [o.sku or "", o.id],
}


def sorted_items(items: list[Any], sort_key: str | None) -> tuple[list[Any], Any]:
    key = _SORT.get(sort_key or "ID", _SORT["ID"])
    return sorted(items, key=key), key


# ------------------------------------------------------------------------- queries
@field_resolver("QueryRoot", "products")
def products(_: Any, info: Info, **args: Any) -> Any:
    shop = ctx(info).shop
    items = filter_items(shop.products.values(), args.get("query"), _product_filters(info))
    items, key = sorted_items(items, args.get("sortKey"))
    return connection(items, args, info, key)


@field_resolver("QueryRoot", "productsCount")
def products_count(_: Any, info: Info, query: str | None = None) -> Any:
    shop = ctx(info).shop
    items = filter_items(shop.products.values(), query, _product_filters(info))
    return {"count": len(items), "precision": "EXACT"}


@field_resolver("QueryRoot", "product")
def product(_: Any, info: Info, id: str) -> Any:
    number = parse_gid(id, "Product")
    return ctx(info).shop.products.get(number) if number else None


@field_resolver("QueryRoot", "productVariants")
def product_variants(_: Any, info: Info, **args: Any) -> Any:
    shop = ctx(info).shop
    filters = {
        "sku": lambda v: v.sku,
        "product_id": lambda v: v.product_id,
        "id": lambda v: v.id,
        "barcode": lambda v: v.barcode,
        "updated_at": lambda v: v.updated_at,
        "tag": lambda v: shop.products[v.product_id].tags,
        "default": lambda v: shop.products[v.product_id].title,
    }
    items = filter_items(shop.variants.values(), args.get("query"), filters)
    items, key = sorted_items(items, args.get("sortKey"))
    return connection(items, args, info, key)


@field_resolver("QueryRoot", "productVariant")
def product_variant(_: Any, info: Info, id: str) -> Any:
    number = parse_gid(id, "ProductVariant")
    return ctx(info).shop.variants.get(number) if number else None


@field_resolver("QueryRoot", "publications")
def publications(_: Any, info: Info, **args: Any) -> Any:
    return connection(ctx(info).shop.publications, args, info)


# -------------------------------------------------------------------------- fields
@field_resolver("Product", "variants")
def product_variants_field(p: Product, info: Info, **args: Any) -> Any:
    shop = ctx(info).shop
    return connection([shop.variants[v] for v in p.variant_ids], args, info, lambda v: v.position)


@field_resolver("Product", "variantsCount")
def variants_count(p: Product, info: Info) -> Any:
    return {"count": len(p.variant_ids), "precision": "EXACT"}


@field_resolver("Product", "images")
def product_images(p: Product, info: Info, **args: Any) -> Any:
    return connection(p.images, args, info)


@field_resolver("Product", "featuredImage")
def featured_image(p: Product, info: Info) -> Any:
    return p.images[0] if p.images else None


@field_resolver("Product", "options")
def product_options(p: Product, info: Info, first: int | None = None) -> Any:
    return p.options[:first] if first is not None else p.options


@field_resolver("Product", "totalInventory")
def total_inventory(p: Product, info: Info) -> int:
    shop = ctx(info).shop
    return sum(shop.variant_inventory_quantity(shop.variants[v]) for v in p.variant_ids)


@field_resolver("Product", "tracksInventory")
def tracks_inventory(p: Product, info: Info) -> bool:
    shop = ctx(info).shop
    return any(shop.items[shop.variants[v].inventory_item_id].tracked for v in p.variant_ids)


@field_resolver("Product", "hasOnlyDefaultVariant")
def only_default(p: Product, info: Info) -> bool:
    shop = ctx(info).shop
    return len(p.variant_ids) == 1 and not shop.variants[p.variant_ids[0]].option_values


@field_resolver("Product", "publishedOnPublication")
def published_on(p: Product, info: Info, publicationId: str) -> bool:
    return parse_gid(publicationId, "Publication") in p.publication_ids


@field_resolver("ProductVariant", "displayName")
def display_name(v: Variant, info: Info) -> str:
    return f"{ctx(info).shop.products[v.product_id].title} - {v.title}"


@field_resolver("ProductVariant", "inventoryQuantity")
def inventory_quantity(v: Variant, info: Info) -> int:
    return ctx(info).shop.variant_inventory_quantity(v)


@field_resolver("ProductVariant", "inventoryItem")
def variant_item(v: Variant, info: Info) -> Any:
    return ctx(info).shop.items[v.inventory_item_id]


@field_resolver("ProductVariant", "product")
def variant_product(v: Variant, info: Info) -> Any:
    return ctx(info).shop.products[v.product_id]


@field_resolver("ProductVariant", "selectedOptions")
def selected_options(v: Variant, info: Info) -> Any:
    if not v.option_values:
        return [{"name": "Title", "value": "Default Title"}]
    return [{"name": n, "value": val} for n, val in v.option_values]


# ------------------------------------------------------------------------ mutations
def _lookup_product(info: Info, product_id: Any, path: list[str]) -> Product:
    number = parse_gid(product_id, "Product")
    found = ctx(info).shop.products.get(number) if number else None
    if found is None:
        raise ShopError("Product does not exist", "PRODUCT_DOES_NOT_EXIST", path)
    return found


def _images(media: list[dict[str, Any]] | None) -> list[tuple[str, str | None]]:
    return [
        (m["originalSource"], m.get("alt"))
        for m in media or []
        if m.get("mediaContentType", "IMAGE") == "IMAGE" and m.get("originalSource")
    ]


def _apply_product_fields(product: Product, data: dict[str, Any], shop: Any) -> None:
    for src, dst in (
        ("title", "title"),
        ("descriptionHtml", "description_html"),
        ("vendor", "vendor"),
        ("productType", "product_type"),
        ("handle", "handle"),
    ):
        if data.get(src) is not None:
            setattr(product, dst, data[src])
    if data.get("tags") is not None:
        product.tags = clean_tags(data["tags"])
    if data.get("status") is not None and data["status"] != product.status:
        product.status = data["status"]
        if product.status == "ACTIVE" and product.published_at is None:
            product.published_at = shop.now()
            product.publication_ids = {p.id for p in shop.publications}


@field_resolver("Mutation", "productCreate")
def product_create(
    _: Any,
    info: Info,
    product: dict[str, Any] | None = None,
    media: list[dict[str, Any]] | None = None,
) -> Any:
    shop = ctx(info).shop
    data = product or {}
    if not (data.get("title") or "").strip():
        return {
            "product": None,
            "shop": shop,
            "userErrors": [{"field": ["title"], "message": "Title can't be blank"}],
        }
    options = [
        (
            o.get("name") or f"Option{i + 1}",
            [v["name"] for v in o.get("values") or [] if v.get("name")],
        )
        for i, o in enumerate(data.get("productOptions") or [])
    ]
    # As on Shopify since 2024-04, productCreate makes one variant from each option's first value.
    first_values = [(name, values[0]) for name, values in options if values]
    created = shop.create_product(
        title=data["title"],
        description_html=data.get("descriptionHtml") or "",
        vendor=data.get("vendor") or "",
        product_type=data.get("productType") or "",
        status=data.get("status") or "ACTIVE",
        tags=data.get("tags") or [],
        handle=data.get("handle"),
        options=options,
        variants=[{"option_values": first_values}],
        image_urls=_images(media),
    )
    return {"product": created, "shop": shop, "userErrors": []}


@field_resolver("Mutation", "productUpdate")
def product_update(
    _: Any,
    info: Info,
    product: dict[str, Any] | None = None,
    media: list[dict[str, Any]] | None = None,
) -> Any:
    shop = ctx(info).shop
    data = product or {}
    try:
        found = _lookup_product(info, data.get("id"), ["id"])
    except ShopError as exc:
        return {"product": None, "userErrors": [user_error(exc)]}
    if data.get("title") is not None and not data["title"].strip():
        return {
            "product": None,
            "userErrors": [{"field": ["title"], "message": "Title can't be blank"}],
        }
    _apply_product_fields(found, data, shop)
    for url, alt in _images(media):
        found.images.append(Image(shop.ids(), url, alt))
    shop.touch_product(found)
    return {"product": found, "userErrors": []}


def _variant_spec(data: dict[str, Any], shop: Any, path: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for src, dst in (
        ("barcode", "barcode"),
        ("compareAtPrice", "compare_at_price"),
        ("price", "price"),
        ("taxable", "taxable"),
        ("inventoryPolicy", "inventory_policy"),
        ("sku", "sku"),
    ):
        if src in data:
            spec[dst] = (
                str(data[src])
                if src in ("price", "compareAtPrice") and data[src] is not None
                else data[src]
            )
    item = data.get("inventoryItem") or {}
    if "sku" in item:
        spec["sku"] = item["sku"]
    if "tracked" in item:
        spec["tracked"] = item["tracked"]
    weight = ((item.get("measurement") or {}).get("weight") or {}).get("value")
    if weight is not None:
        spec["weight"] = weight
    if data.get("optionValues"):
        spec["option_values"] = [
            (ov.get("optionName") or "Title", ov.get("name") or "") for ov in data["optionValues"]
        ]
    quantities: dict[int, int] = {}
    for i, q in enumerate(data.get("inventoryQuantities") or []):
        loc = parse_gid(q.get("locationId"), "Location")
        if loc is None or loc not in shop.locations:
            raise ShopError(
                "Location does not exist",
                "TRACKED_VARIANT_LOCATION_NOT_FOUND",
                [*path, "inventoryQuantities", str(i), "locationId"],
            )
        quantities[loc] = int(q["availableQuantity"] if "availableQuantity" in q else q["quantity"])
    if quantities:
        spec["quantities"] = quantities
    return spec


def _combo_title(combo: tuple[tuple[str, str], ...]) -> str:
    return " / ".join(value for _, value in combo) or "Default Title"


def _combination(spec: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(spec.get("option_values") or ())


@field_resolver("Mutation", "productVariantsBulkCreate")
def variants_bulk_create(
    _: Any,
    info: Info,
    variants: list[dict[str, Any]],
    productId: str,
    media: Any = None,
    strategy: str = "DEFAULT",
) -> Any:
    shop = ctx(info).shop
    try:
        found = _lookup_product(info, productId, ["productId"])
        specs = [_variant_spec(v, shop, ["variants", str(i)]) for i, v in enumerate(variants)]
        existing = {tuple(shop.variants[v].option_values) for v in found.variant_ids}
        # The standalone variant is the one a product is created with, while it is alone.
        standalone = [shop.variants[found.variant_ids[0]]] if len(found.variant_ids) == 1 else []
        if strategy == "REMOVE_STANDALONE_VARIANT":
            existing -= {tuple(v.option_values) for v in standalone}
        for i, spec in enumerate(specs):
            combo = _combination(spec)
            if combo in existing:
                raise ShopError(
                    f"The variant '{_combo_title(combo)}' already exists.",
                    "VARIANT_ALREADY_EXISTS",
                    ["variants", str(i)],
                )
            existing.add(combo)
    except ShopError as exc:
        return {
            "product": None,
            "productVariants": None,
            "userErrors": [user_error(exc, coded=True)],
        }
    if strategy == "REMOVE_STANDALONE_VARIANT":
        for variant in standalone:
            shop.delete_variant(variant)
        found.options = [o for o in found.options if o.name != "Title"]
        for option in found.options:
            option.values = []
    created = [shop.add_variant(found, spec) for spec in specs]
    shop.touch_product(found)
    return {"product": found, "productVariants": created, "userErrors": []}


@field_resolver("Mutation", "productVariantsBulkUpdate")
def variants_bulk_update(
    _: Any,
    info: Info,
    variants: list[dict[str, Any]],
    productId: str,
    media: Any = None,
    allowPartialUpdates: bool = False,
) -> Any:
    shop = ctx(info).shop
    try:
        found = _lookup_product(info, productId, ["productId"])
        planned: list[tuple[Variant, dict[str, Any]]] = []
        for i, data in enumerate(variants):
            path = ["variants", str(i)]
            if not data.get("id"):
                raise ShopError(
                    "Product variant is missing ID attribute.",
                    "PRODUCT_VARIANT_ID_MISSING",
                    [*path, "id"],
                )
            number = parse_gid(data["id"], "ProductVariant")
            variant = shop.variants.get(number) if number else None
            if variant is None or variant.product_id != found.id:
                raise ShopError(
                    "Product variant does not exist.",
                    "PRODUCT_VARIANT_DOES_NOT_EXIST",
                    [*path, "id"],
                )
            if data.get("inventoryQuantities"):
                raise ShopError(
                    "Inventory quantities can only be provided during create. To update inventory "
                    "for existing variants, use inventoryAdjustQuantities.",
                    "NO_INVENTORY_QUANTITIES_ON_VARIANTS_UPDATE",
                    [*path, "inventoryQuantities"],
                )
            planned.append((variant, _variant_spec(data, shop, path)))
    except ShopError as exc:
        return {
            "product": None,
            "productVariants": None,
            "userErrors": [user_error(exc, coded=True)],
        }
    for variant, spec in planned:
        tracked_before = shop.items[variant.inventory_item_id].tracked
        sku_before = variant.sku
        shop.update_variant(variant, spec)
        if (
            shop.items[variant.inventory_item_id].tracked != tracked_before
            or variant.sku != sku_before
        ):
            shop.emit_inventory_item("inventory_items/update", variant)
    shop.touch_product(found)
    return {"product": found, "productVariants": [v for v, _ in planned], "userErrors": []}


@field_resolver("Mutation", "productVariantsBulkDelete")
def variants_bulk_delete(_: Any, info: Info, variantsIds: list[str], productId: str) -> Any:
    shop = ctx(info).shop
    try:
        found = _lookup_product(info, productId, ["productId"])
        numbers = [parse_gid(v, "ProductVariant") for v in variantsIds]
        if any(n not in found.variant_ids for n in numbers):
            raise ShopError(
                "At least one variant does not belong to the product",
                "AT_LEAST_ONE_VARIANT_DOES_NOT_BELONG_TO_THE_PRODUCT",
                ["variantsIds"],
            )
        if len(set(numbers)) >= len(found.variant_ids):
            raise ShopError(
                "Cannot delete the last variant of a product.",
                "CANNOT_DELETE_LAST_VARIANT",
                ["variantsIds"],
            )
    except ShopError as exc:
        return {"product": None, "userErrors": [user_error(exc, coded=True)]}
    for number in set(numbers):
        assert number is not None
        shop.delete_variant(shop.variants[number])
    shop.touch_product(found)
    return {"product": found, "userErrors": []}


@field_resolver("Mutation", "productSet")
def product_set(_: Any, info: Info, input: dict[str, Any], synchronous: bool = True) -> Any:  # noqa: C901, PLR0912  Shopify's documented checks, in order
    shop = ctx(info).shop
    try:
        existing = _lookup_product(info, input["id"], ["input", "id"]) if input.get("id") else None
        if existing is None and not (input.get("title") or "").strip():
            raise ShopError("Title can't be blank", "INVALID_INPUT", ["input", "title"])
        specs: list[tuple[Variant | None, dict[str, Any]]] = []
        for i, data in enumerate(input.get("variants") or []):
            path = ["input", "variants", str(i)]
            variant = None
            if data.get("id"):
                number = parse_gid(data["id"], "ProductVariant")
                variant = shop.variants.get(number) if number else None
                if variant is None or existing is None or variant.product_id != existing.id:
                    raise ShopError(
                        "Product variant does not exist",
                        "PRODUCT_VARIANT_DOES_NOT_EXIST",
                        [*path, "id"],
                    )
            spec = _variant_spec(data, shop, path)
            for q in data.get("inventoryQuantities") or []:
                if q.get("name", "available") not in ("available", "on_hand"):
                    raise ShopError(
                        "Invalid quantity name", "INVALID_INPUT", [*path, "inventoryQuantities"]
                    )
            specs.append((variant, spec))
    except ShopError as exc:
        return {"product": None, "userErrors": [user_error(exc, coded=True)]}
    options = [
        (
            o.get("name") or f"Option{i + 1}",
            [v["name"] for v in o.get("values") or [] if v.get("name")],
        )
        for i, o in enumerate(input.get("productOptions") or [])
    ]
    images = [
        (f["originalSource"], f.get("alt"))
        for f in input.get("files") or []
        if f.get("originalSource")
    ]
    if existing is None:
        created = shop.create_product(
            title=input["title"],
            description_html=input.get("descriptionHtml") or "",
            vendor=input.get("vendor") or "",
            product_type=input.get("productType") or "",
            status=input.get("status") or "ACTIVE",
            tags=input.get("tags") or [],
            handle=input.get("handle"),
            options=options,
            variants=[spec for _, spec in specs] or None,
            image_urls=images,
        )
        return {"product": created, "userErrors": []}
    _apply_product_fields(existing, input, shop)
    if input.get("files") is not None:
        existing.images = [Image(shop.ids(), url, alt) for url, alt in images]
    if options:
        existing.options = [
            ProductOption(shop.ids(), name, pos, values)
            for pos, (name, values) in enumerate(options, start=1)
        ]
    if input.get("variants") is not None:
        by_combo = {
            tuple(shop.variants[v].option_values): shop.variants[v] for v in existing.variant_ids
        }
        keep: list[int] = []
        for variant, spec in specs:
            target = variant or by_combo.get(_combination(spec))
            if target is None:
                target = shop.add_variant(existing, spec)
            else:
                quantities = spec.pop("quantities", None)
                shop.update_variant(target, spec)
                for loc_id, qty in (quantities or {}).items():
                    level = shop.activate(target.inventory_item_id, loc_id, None)
                    shop.change_level(level, "available", qty - level.available)
            keep.append(target.id)
        for vid in list(existing.variant_ids):
            if vid not in keep:
                shop.delete_variant(shop.variants[vid])
        existing.variant_ids = keep + [v for v in existing.variant_ids if v not in keep]
        for pos, vid in enumerate(existing.variant_ids, start=1):
            shop.variants[vid].position = pos
    shop.touch_product(existing)
    return {"product": existing, "userErrors": []}


@field_resolver("Mutation", "productDelete")
def product_delete(_: Any, info: Info, input: dict[str, Any]) -> Any:
    shop = ctx(info).shop
    try:
        found = _lookup_product(info, input["id"], ["id"])
    except ShopError as exc:
        return {"deletedProductId": None, "shop": shop, "userErrors": [user_error(exc)]}
    shop.delete_product(found)
    return {"deletedProductId": found.gid, "shop": shop, "userErrors": []}


def _tag_target(info: Info, node_id: str) -> Any:
    shop = ctx(info).shop
    number = parse_gid(node_id, "Product")
    if number is not None and number in shop.products:
        return shop.products[number]
    number = parse_gid(node_id, "Order")
    if number is not None and number in shop.orders:
        return shop.orders[number]
    return None


def _tags(info: Info, id: str, tags: list[str], add: bool) -> Any:
    shop = ctx(info).shop
    target = _tag_target(info, id)
    if target is None:
        return {"node": None, "userErrors": [{"field": ["id"], "message": "Node does not exist"}]}
    wanted = clean_tags(tags)
    if add:
        target.tags = clean_tags([*target.tags, *wanted])
    else:
        lowered = {t.lower() for t in wanted}
        target.tags = [t for t in target.tags if t.lower() not in lowered]
    if isinstance(target, Product):
        shop.touch_product(target)
    else:
        shop._order_changed(target)
    return {"node": target, "userErrors": []}


@field_resolver("Mutation", "tagsAdd")
def tags_add(_: Any, info: Info, id: str, tags: list[str]) -> Any:
    return _tags(info, id, tags, add=True)


@field_resolver("Mutation", "tagsRemove")
def tags_remove(_: Any, info: Info, id: str, tags: list[str]) -> Any:
    return _tags(info, id, tags, add=False)


def _publish(info: Info, id: str, input: list[dict[str, Any]], publish: bool) -> Any:
    shop = ctx(info).shop
    try:
        found = _lookup_product(info, id, ["id"])
    except ShopError as exc:
        return {"publishable": None, "shop": shop, "userErrors": [user_error(exc)]}
    known = {p.id for p in shop.publications}
    for i, entry in enumerate(input):
        number = parse_gid(entry.get("publicationId"), "Publication")
        if number not in known:
            return {
                "publishable": None,
                "shop": shop,
                "userErrors": [
                    {
                        "field": ["input", str(i), "publicationId"],
                        "message": "Publication does not exist",
                    }
                ],
            }
        assert number is not None
        if publish:
            found.publication_ids.add(number)
        else:
            found.publication_ids.discard(number)
    if publish and found.published_at is None:
        found.published_at = shop.now()
    if not found.publication_ids:
        found.published_at = None
    shop.touch_product(found)
    return {"publishable": found, "shop": shop, "userErrors": []}


@field_resolver("Mutation", "publishablePublish")
def publishable_publish(_: Any, info: Info, id: str, input: list[dict[str, Any]]) -> Any:
    return _publish(info, id, input, publish=True)


@field_resolver("Mutation", "publishableUnpublish")
def publishable_unpublish(_: Any, info: Info, id: str, input: list[dict[str, Any]]) -> Any:
    return _publish(info, id, input, publish=False)


def product_gid(product: Product) -> str:
    return gid("Product", product.id)
