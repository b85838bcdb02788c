"""Shop, nodes, webhook subscriptions and bulk operations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLResolveInfo

from stocksync.sandbox.ids import gid, parse_gid
from stocksync.sandbox.resolvers.common import connection, ctx, field_resolver
from stocksync.sandbox.state import Shop
from stocksync.sandbox.webhooks import Subscription

Info = GraphQLResolveInfo

_NODE_KINDS: dict[str, Callable[[Shop, int], Any]] = {
    "Product": lambda shop, n: shop.products.get(n),
    "ProductVariant": lambda shop, n: shop.variants.get(n),
    "InventoryItem": lambda shop, n: shop.items.get(n),
    "Location": lambda shop, n: shop.locations.get(n),
    "Order": lambda shop, n: shop.orders.get(n),
    "Publication": lambda shop, n: next((p for p in shop.publications if p.id == n), None),
    "InventoryLevel": lambda shop, n: next((lv for lv in shop.levels.values() if lv.id == n), None),
}


@field_resolver("QueryRoot", "shop")
def shop_field(_: Any, info: Info) -> Any:
    return ctx(info).shop


@field_resolver("Shop", "id")
def shop_id(shop: Shop, info: Info) -> str:
    return gid("Shop", shop.id)


@field_resolver("Shop", "email")
def shop_email(shop: Shop, info: Info) -> str:
    return f"owner@{shop.domain}"


@field_resolver("Shop", "myshopifyDomain")
def shop_domain(shop: Shop, info: Info) -> str:
    return shop.domain


@field_resolver("Shop", "currencyCode")
def shop_currency(shop: Shop, info: Info) -> str:
    return "USD"


@field_resolver("Shop", "weightUnit")
def shop_weight_unit(shop: Shop, info: Info) -> str:
    return "KILOGRAMS"


def _node(info: Info, node_id: str) -> Any:
    shop = ctx(info).shop
    for kind, lookup in _NODE_KINDS.items():
        number = parse_gid(node_id, kind)
        if number is not None:
            return lookup(shop, number)
    return None


@field_resolver("QueryRoot", "node")
def node(_: Any, info: Info, id: str) -> Any:
    return _node(info, id)


@field_resolver("QueryRoot", "nodes")
def nodes(_: Any, info: Info, ids: list[str]) -> Any:
    return [_node(info, i) for i in ids]


# ------------------------------------------------------------------ webhooks
@field_resolver("QueryRoot", "webhookSubscriptions")
def webhook_subscriptions(_: Any, info: Info, **args: Any) -> Any:
    subs = ctx(info).sandbox.webhooks.of_shop(ctx(info).shop)
    if args.get("topics"):
        subs = [s for s in subs if s.topic in args["topics"]]
    if args.get("callbackUrl"):
        subs = [s for s in subs if s.callback_url == args["callbackUrl"]]
    return connection(sorted(subs, key=lambda s: s.id), args, info)


@field_resolver("QueryRoot", "webhookSubscription")
def webhook_subscription(_: Any, info: Info, id: str) -> Any:
    number = parse_gid(id, "WebhookSubscription")
    subs = ctx(info).sandbox.webhooks.subscriptions.get(ctx(info).shop.domain, {})
    return subs.get(number) if number else None


@field_resolver("Mutation", "webhookSubscriptionCreate")
def webhook_subscription_create(
    _: Any, info: Info, topic: str, webhookSubscription: dict[str, Any]
) -> Any:
    context = ctx(info)
    url = webhookSubscription.get("callbackUrl")
    if not url or not str(url).startswith(("http://", "https://")):
        return {
            "webhookSubscription": None,
            "userErrors": [
                {"field": ["webhookSubscription", "callbackUrl"], "message": "Address is invalid"}
            ],
        }
    for existing in context.sandbox.webhooks.of_shop(context.shop):
        if existing.topic == topic and existing.callback_url == url:
            return {
                "webhookSubscription": None,
                "userErrors": [
                    {
                        "field": ["webhookSubscription", "callbackUrl"],
                        "message": "Address for this topic has already been taken",
                    }
                ],
            }
    sub = context.sandbox.webhooks.subscribe(
        context.shop,
        topic,
        str(url),
        context.version,
        webhookSubscription.get("includeFields"),
        webhookSubscription.get("format") or "JSON",
    )
    return {"webhookSubscription": sub, "userErrors": []}


@field_resolver("Mutation", "webhookSubscriptionDelete")
def webhook_subscription_delete(_: Any, info: Info, id: str) -> Any:
    context = ctx(info)
    number = parse_gid(id, "WebhookSubscription")
    if number is None or not context.sandbox.webhooks.unsubscribe(context.shop, number):
        return {
            "deletedWebhookSubscriptionId": None,
            "userErrors": [{"field": ["id"], "message": "Webhook subscription does not exist"}],
        }
    return {"deletedWebhookSubscriptionId": id, "userErrors": []}


@field_resolver("WebhookSubscription", "includeFields")
def include_fields(sub: Subscription, info: Info) -> list[str]:
    return sub.include_fields


# ---------------------------------------------------------------------- bulk
@field_resolver("QueryRoot", "currentBulkOperation")
def current_bulk_operation(_: Any, info: Info, type: str = "QUERY") -> Any:
    if type != "QUERY":
        return None
    return ctx(info).sandbox.bulk.current(ctx(info).shop)


@field_resolver("Mutation", "bulkOperationRunQuery")
def bulk_operation_run_query(_: Any, info: Info, query: str) -> Any:
    context = ctx(info)
    op, errors = context.sandbox.bulk.run_query(context.shop, query, context.version)
    return {"bulkOperation": op, "userErrors": errors}


@field_resolver("BulkOperation", "objectCount")
def object_count(op: Any, info: Info) -> str:
    return str(op.object_count)


@field_resolver("BulkOperation", "rootObjectCount")
def root_object_count(op: Any, info: Info) -> str:
    return str(op.root_object_count)


@field_resolver("BulkOperation", "fileSize")
def file_size(op: Any, info: Info) -> str | None:
    return str(op.file_size) if op.file_size is not None else None
