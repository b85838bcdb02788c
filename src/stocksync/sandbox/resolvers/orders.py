"""Orders: creation, payment, fulfilment, cancellation, refunds, edits and the orders query."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from typing import Any

from graphql import GraphQLResolveInfo

from stocksync.sandbox.ids import gid, parse_gid
from stocksync.sandbox.resolvers.common import (
    MISMATCH_MESSAGE,
    connection,
    ctx,
    field_resolver,
    idempotent,
    money,
    user_error,
)
from stocksync.sandbox.search import filter_items
from stocksync.sandbox.state import (
    Fulfillment,
    FulfillmentOrder,
    FulfillmentOrderLine,
    LineItem,
    Order,
    OrderEdit,
    Refund,
    RefundLine,
    ShopError,
)

Info = GraphQLResolveInfo


def _order(info: Info, order_id: Any) -> Order | None:
    number = parse_gid(order_id, "Order")
    return ctx(info).shop.orders.get(number) if number else None


# ------------------------------------------------------------------------- queries
@field_resolver("QueryRoot", "orders")
def orders(_: Any, info: Info, **args: Any) -> Any:
    shop = ctx(info).shop
    filters = {
        "updated_at": lambda o: o.updated_at,
        "created_at": lambda o: o.created_at,
        "processed_at": lambda o: o.created_at,
        "financial_status": lambda o: o.financial_status.lower(),
        "fulfillment_status": lambda o: o.fulfillment_status.lower(),
        "status": lambda o: [
            "any",
            "cancelled" if o.cancelled_at else "open",
            *(["closed"] if o.closed_at else []),
        ],
        "id": lambda o: o.id,
        "name": lambda o: o.name,
        "tag": lambda o: o.tags,
        "sku": lambda o: [li.sku for li in o.line_items],
        "default": lambda o: o.name,
    }
    items = filter_items(shop.orders.values(), args.get("query"), filters)
    sort = args.get("sortKey") or "PROCESSED_AT"
    if sort == "UPDATED_AT":
        return connection(
            sorted(items, key=lambda o: [o.updated_at, o.id]),
            args,
            info,
            lambda o: [o.updated_at, o.id],
        )
    if sort in ("CREATED_AT", "PROCESSED_AT"):
        return connection(
            sorted(items, key=lambda o: [o.created_at, o.id]),
            args,
            info,
            lambda o: [o.created_at, o.id],
        )
    return connection(sorted(items, key=lambda o: o.id), args, info)


@field_resolver("QueryRoot", "order")
def order(_: Any, info: Info, id: str) -> Any:
    return _order(info, id)


@field_resolver("QueryRoot", "job")
def job(_: Any, info: Info, id: str) -> Any:
    number = parse_gid(id, "Job")
    found = ctx(info).shop.jobs.get(number) if number else None
    # Shopify answers any job id; an unknown job is reported as done.
    return found or {"id": id, "done": True}


# ------------------------------------------------------------------- order fields
@field_resolver("Order", "displayFinancialStatus")
def financial_status(o: Order, info: Info) -> str:
    return o.financial_status


@field_resolver("Order", "displayFulfillmentStatus")
def fulfillment_status(o: Order, info: Info) -> str:
    return o.fulfillment_status


@field_resolver("Order", "processedAt")
def processed_at(o: Order, info: Info) -> float:
    return o.created_at


@field_resolver("Order", "closed")
def closed(o: Order, info: Info) -> bool:
    return o.closed_at is not None


@field_resolver("Order", "currencyCode")
def currency_code(o: Order, info: Info) -> str:
    return o.currency


@field_resolver("Order", "fullyPaid")
def fully_paid(o: Order, info: Info) -> bool:
    # Nothing outstanding now, whatever the status word: a deposit order refunded in part
    # is PARTIALLY_REFUNDED and was never paid in full.
    return o.fully_paid


@field_resolver("Order", "unpaid")
def unpaid(o: Order, info: Info) -> bool:
    return o.financial_status in ("PENDING", "AUTHORIZED", "EXPIRED")


@field_resolver("Order", "canMarkAsPaid")
def can_mark_as_paid(o: Order, info: Info) -> bool:
    return o.cancelled_at is None and o.financial_status in (
        "PENDING",
        "AUTHORIZED",
        "PARTIALLY_PAID",
    )


@field_resolver("Order", "subtotalLineItemsQuantity")
def subtotal_quantity(o: Order, info: Info) -> int:
    return sum(li.quantity for li in o.line_items)


@field_resolver("Order", "currentSubtotalLineItemsQuantity")
def current_subtotal_quantity(o: Order, info: Info) -> int:
    return sum(li.current_quantity for li in o.line_items)


@field_resolver("Order", "totalPriceSet")
def total_price_set(o: Order, info: Info) -> Any:
    total = sum(float(li.price) * li.current_quantity for li in o.line_items)
    return money(f"{total:.2f}", o.currency)


@field_resolver("Order", "lineItems")
def line_items(o: Order, info: Info, **args: Any) -> Any:
    return connection(o.line_items, args, info)


@field_resolver("Order", "fulfillmentOrders")
def fulfillment_orders(o: Order, info: Info, **args: Any) -> Any:
    items = o.fulfillment_orders
    if args.get("displayable"):
        items = [fo for fo in items if fo.status not in ("CANCELLED", "INCOMPLETE")]
    return connection(items, args, info)


@field_resolver("Order", "fulfillments")
def fulfillments(o: Order, info: Info, first: int | None = None) -> Any:
    return o.fulfillments[:first] if first is not None else o.fulfillments


@field_resolver("Order", "refunds")
def refunds(o: Order, info: Info, first: int | None = None) -> Any:
    return o.refunds[:first] if first is not None else o.refunds


@field_resolver("LineItem", "name")
def line_name(li: LineItem, info: Info) -> str:
    return f"{li.title} - {li.variant_title}" if li.variant_title else li.title


@field_resolver("LineItem", "unfulfilledQuantity", "fulfillableQuantity")
def unfulfilled(li: LineItem, info: Info) -> int:
    return max(0, li.unfulfilled)


@field_resolver("LineItem", "refundableQuantity")
def refundable(li: LineItem, info: Info) -> int:
    return li.current_quantity


@field_resolver("LineItem", "restockable")
def restockable(li: LineItem, info: Info) -> bool:
    return li.variant_id is not None


@field_resolver("LineItem", "originalUnitPriceSet")
def unit_price(li: LineItem, info: Info) -> Any:
    return money(li.price)


@field_resolver("LineItem", "variant")
def line_variant(li: LineItem, info: Info) -> Any:
    return ctx(info).shop.variants.get(li.variant_id) if li.variant_id else None


@field_resolver("LineItem", "product")
def line_product(li: LineItem, info: Info) -> Any:
    return ctx(info).shop.products.get(li.product_id) if li.product_id else None


@field_resolver("FulfillmentOrder", "orderId")
def fo_order_id(fo: FulfillmentOrder, info: Info) -> str:
    return gid("Order", fo.order_id)


@field_resolver("FulfillmentOrder", "orderName")
def fo_order_name(fo: FulfillmentOrder, info: Info) -> str:
    return ctx(info).shop.orders[fo.order_id].name


@field_resolver("FulfillmentOrder", "assignedLocation")
def fo_location(fo: FulfillmentOrder, info: Info) -> Any:
    loc = ctx(info).shop.locations.get(fo.location_id) if fo.location_id else None
    return {"location": loc, "name": loc.name if loc else "Unassigned"}


@field_resolver("FulfillmentOrder", "lineItems")
def fo_lines(fo: FulfillmentOrder, info: Info, **args: Any) -> Any:
    return connection(fo.lines, args, info)


def _fo_line_item(fl: FulfillmentOrderLine, info: Info) -> LineItem:
    shop = ctx(info).shop
    for o in shop.orders.values():
        for fo in o.fulfillment_orders:
            if fl in fo.lines:
                found = o.line(fl.line_item_id)
                assert found is not None
                return found
    raise LookupError(fl.line_item_id)


@field_resolver("FulfillmentOrderLineItem", "lineItem")
def fl_line(fl: FulfillmentOrderLine, info: Info) -> Any:
    return _fo_line_item(fl, info)


@field_resolver("FulfillmentOrderLineItem", "sku")
def fl_sku(fl: FulfillmentOrderLine, info: Info) -> Any:
    return _fo_line_item(fl, info).sku


@field_resolver("FulfillmentOrderLineItem", "variant")
def fl_variant(fl: FulfillmentOrderLine, info: Info) -> Any:
    line = _fo_line_item(fl, info)
    return ctx(info).shop.variants.get(line.variant_id) if line.variant_id else None


@field_resolver("FulfillmentOrderLineItem", "inventoryItemId")
def fl_item(fl: FulfillmentOrderLine, info: Info) -> Any:
    line = _fo_line_item(fl, info)
    variant = ctx(info).shop.variants.get(line.variant_id) if line.variant_id else None
    return gid("InventoryItem", variant.inventory_item_id) if variant else None


@field_resolver("Fulfillment", "updatedAt")
def fulfillment_updated(f: Fulfillment, info: Info) -> float:
    return f.created_at


@field_resolver("Fulfillment", "totalQuantity")
def fulfillment_total(f: Fulfillment, info: Info) -> int:
    return sum(q for _, _, q in f.lines)


@field_resolver("Fulfillment", "location")
def fulfillment_location(f: Fulfillment, info: Info) -> Any:
    return ctx(info).shop.locations.get(f.location_id) if f.location_id else None


@field_resolver("Fulfillment", "order")
def fulfillment_order(f: Fulfillment, info: Info) -> Any:
    return ctx(info).shop.orders[f.order_id]


@field_resolver("Fulfillment", "fulfillmentLineItems")
def fulfillment_lines(f: Fulfillment, info: Info, **args: Any) -> Any:
    o = ctx(info).shop.orders[f.order_id]
    items = [
        {"id": gid("FulfillmentLineItem", fid), "quantity": qty, "lineItem": o.line(lid), "_k": fid}
        for fid, lid, qty in f.lines
    ]
    return connection(items, args, info, lambda d: d["_k"])


@field_resolver("Refund", "updatedAt")
def refund_updated(r: Refund, info: Info) -> float:
    return r.created_at


@field_resolver("Refund", "order")
def refund_order(r: Refund, info: Info) -> Any:
    return ctx(info).shop.orders[r.order_id]


@field_resolver("Refund", "refundLineItems")
def refund_lines(r: Refund, info: Info, **args: Any) -> Any:
    return connection(r.lines, args, info)


@field_resolver("RefundLineItem", "location")
def refund_line_location(rl: RefundLine, info: Info) -> Any:
    return ctx(info).shop.locations.get(rl.location_id) if rl.location_id else None


@field_resolver("RefundLineItem", "lineItem")
def refund_line_item(rl: RefundLine, info: Info) -> Any:
    shop = ctx(info).shop
    for o in shop.orders.values():
        found = o.line(rl.line_item_id)
        if found is not None:
            return found
    return None


@field_resolver("CalculatedOrder", "originalOrder")
def calc_original(edit: OrderEdit, info: Info) -> Any:
    return ctx(info).shop.orders[edit.order_id]


def _calculated_line(edit: OrderEdit, li: LineItem, info: Info) -> dict[str, Any]:
    quantity = edit.quantities.get(li.id, li.current_quantity)
    return {
        "id": gid("CalculatedLineItem", li.id),
        "quantity": quantity,
        "editableQuantity": quantity,
        "editableQuantityBeforeChanges": li.current_quantity,
        "restocking": edit.restock.get(li.id, False),
        "sku": li.sku,
        "title": li.title,
        "variant": ctx(info).shop.variants.get(li.variant_id) if li.variant_id else None,
        "_k": li.id,
    }


@field_resolver("CalculatedOrder", "lineItems")
def calc_lines(edit: OrderEdit, info: Info, **args: Any) -> Any:
    o = ctx(info).shop.orders[edit.order_id]
    items = [_calculated_line(edit, li, info) for li in o.line_items]
    return connection(items, args, info, lambda d: d["_k"])


# ------------------------------------------------------------------------ mutations
@field_resolver("Mutation", "orderCreate")
def order_create(
    _: Any, info: Info, order: dict[str, Any], options: dict[str, Any] | None = None
) -> Any:
    shop = ctx(info).shop
    lines = []
    for i, spec in enumerate(order.get("lineItems") or []):
        variant_number = None
        if spec.get("variantId"):
            variant_number = parse_gid(spec["variantId"], "ProductVariant")
            if variant_number is None:
                return {
                    "order": None,
                    "userErrors": [
                        {
                            "field": ["order", "lineItems", str(i), "variantId"],
                            "message": "Variant id is invalid",
                            "code": "INVALID",
                        }
                    ],
                }
        price = (((spec.get("priceSet") or {}).get("shopMoney")) or {}).get("amount")
        lines.append(
            {
                "variant_id": variant_number,
                "quantity": spec["quantity"],
                "sku": spec.get("sku"),
                "title": spec.get("title"),
                "price": str(price) if price is not None else None,
            }
        )
    if not lines:
        return {
            "order": None,
            "userErrors": [
                {
                    "field": ["order", "lineItems"],
                    "message": "Line items can't be blank",
                    "code": "INVALID",
                }
            ],
        }
    received: Decimal | None = None
    if order.get("transactions"):
        received = Decimal(0)
        for t in order["transactions"]:
            if t.get("kind", "SALE") in ("SALE", "CAPTURE") and t.get("status", "SUCCESS") == (
                "SUCCESS"
            ):
                received += Decimal(str(t["amountSet"]["shopMoney"]["amount"]))
    try:
        created = shop.create_order(
            received=received,
            lines=lines,
            financial_status=order.get("financialStatus") or "PENDING",
            inventory_behaviour=(options or {}).get("inventoryBehaviour") or "BYPASS",
            email=order.get("email"),
            test=bool(order.get("test")),
            tags=order.get("tags"),
            note=order.get("note"),
            currency=order.get("currency") or "USD",
        )
    except ShopError as exc:
        return {"order": None, "userErrors": [user_error(exc, coded=True)]}
    return {"order": created, "userErrors": []}


@field_resolver("Mutation", "orderMarkAsPaid")
def order_mark_as_paid(_: Any, info: Info, input: dict[str, Any]) -> Any:
    found = _order(info, input["id"])
    if found is None:
        return {"order": None, "userErrors": [{"field": ["id"], "message": "Order does not exist"}]}
    try:
        ctx(info).shop.mark_as_paid(found)
    except ShopError as exc:
        return {"order": found, "userErrors": [user_error(exc)]}
    return {"order": found, "userErrors": []}


@field_resolver("Mutation", "orderCancel")
def order_cancel(
    _: Any,
    info: Info,
    orderId: str,
    refund: bool,
    restock: bool,
    reason: str,
    notifyCustomer: bool = False,
    staffNote: str | None = None,
) -> Any:
    shop = ctx(info).shop
    found = _order(info, orderId)
    if found is None or found.cancelled_at is not None:
        message = "Order does not exist" if found is None else "Order has already been cancelled."
        code = "NOT_FOUND" if found is None else "INVALID"
        error = {"field": ["orderId"], "message": message}
        return {
            "job": None,
            "orderCancelUserErrors": [{**error, "code": code}],
            "userErrors": [error],
        }
    pending = shop.new_job()

    def run() -> None:
        # Shopify cancels asynchronously: the mutation returns a job, the order changes later.
        with contextlib.suppress(ShopError):
            shop.cancel(found, reason=reason, restock=restock, refund=refund)
        pending.done = True

    ctx(info).sandbox.call_soon(run)
    return {"job": pending, "orderCancelUserErrors": [], "userErrors": []}


@field_resolver("Mutation", "fulfillmentCreate")
def fulfillment_create(
    _: Any, info: Info, fulfillment: dict[str, Any], message: str | None = None
) -> Any:
    shop = ctx(info).shop
    requests: list[tuple[int, list[tuple[int, int]] | None]] = []
    for entry in fulfillment["lineItemsByFulfillmentOrder"]:
        fo_number = parse_gid(entry["fulfillmentOrderId"], "FulfillmentOrder") or 0
        lines = entry.get("fulfillmentOrderLineItems")
        requests.append(
            (
                fo_number,
                None
                if lines is None
                else [
                    (parse_gid(x["id"], "FulfillmentOrderLineItem") or 0, x["quantity"])
                    for x in lines
                ],
            )
        )
    try:
        created = shop.fulfill(requests)
    except ShopError as exc:
        return {"fulfillment": None, "userErrors": [user_error(exc)]}
    return {"fulfillment": created, "userErrors": []}


def _refund_create(info: Info, input: dict[str, Any]) -> dict[str, Any]:
    shop = ctx(info).shop
    found = _order(info, input["orderId"])
    if found is None:
        return {
            "order": None,
            "refund": None,
            "userErrors": [{"field": ["orderId"], "message": "Order does not exist"}],
        }
    lines = []
    for spec in input.get("refundLineItems") or []:
        location = parse_gid(spec.get("locationId"), "Location") if spec.get("locationId") else None
        if spec.get("locationId") and location is None:
            location = -1  # reported as a missing location by the shop
        lines.append(
            {
                "line_item_id": parse_gid(spec["lineItemId"], "LineItem") or 0,
                "quantity": spec["quantity"],
                "restock_type": spec.get("restockType"),
                "location_id": location,
            }
        )
    money: Decimal | None = None
    if input.get("transactions"):
        money = sum(
            (Decimal(str(t["amount"])) for t in input["transactions"] if t["kind"] == "REFUND"),
            Decimal(0),
        )
    if not lines and not money:
        return {
            "order": None,
            "refund": None,
            "userErrors": [
                {"field": None, "message": "Refund must include line items or an amount"}
            ],
        }
    try:
        created = shop.refund(found, lines, input.get("note"), money=money)
    except ShopError as exc:
        return {"order": None, "refund": None, "userErrors": [user_error(exc)]}
    return {"order": found, "refund": created, "userErrors": []}


@field_resolver("Mutation", "refundCreate")
def refund_create(_: Any, info: Info, input: dict[str, Any]) -> Any:
    return idempotent(
        info,
        input,
        lambda: _refund_create(info, input),
        lambda: {
            "order": None,
            "refund": None,
            "userErrors": [{"field": None, "message": MISMATCH_MESSAGE}],
        },
    )


def _edit(info: Info, calc_id: str) -> OrderEdit | None:
    number = parse_gid(calc_id, "CalculatedOrder")
    return ctx(info).shop.edits.get(number) if number else None


@field_resolver("Mutation", "orderEditBegin")
def order_edit_begin(_: Any, info: Info, id: str) -> Any:
    found = _order(info, id)
    if found is None:
        return {
            "calculatedOrder": None,
            "userErrors": [{"field": ["id"], "message": "Order does not exist"}],
        }
    try:
        edit = ctx(info).shop.begin_edit(found)
    except ShopError as exc:
        return {"calculatedOrder": None, "userErrors": [user_error(exc)]}
    return {"calculatedOrder": edit, "userErrors": []}


@field_resolver("Mutation", "orderEditSetQuantity")
def order_edit_set_quantity(
    _: Any, info: Info, id: str, lineItemId: str, quantity: int, restock: bool = False
) -> Any:
    edit = _edit(info, id)
    none = {"calculatedLineItem": None, "calculatedOrder": None}
    if edit is None or edit.committed:
        return {
            **none,
            "userErrors": [{"field": ["id"], "message": "The order edit does not exist"}],
        }
    o = ctx(info).shop.orders[edit.order_id]
    line = o.line(parse_gid(lineItemId, "CalculatedLineItem") or 0)
    if line is None:
        return {
            **none,
            "userErrors": [{"field": ["lineItemId"], "message": "The line item does not exist"}],
        }
    if quantity < line.current_quantity - max(0, line.unfulfilled):
        return {
            **none,
            "userErrors": [
                {
                    "field": ["quantity"],
                    "message": "The quantity can't be lower than the number of fulfilled units.",
                }
            ],
        }
    edit.quantities[line.id] = quantity
    edit.restock[line.id] = bool(restock)
    return {
        "calculatedLineItem": _calculated_line(edit, line, info),
        "calculatedOrder": edit,
        "userErrors": [],
    }


@field_resolver("Mutation", "orderEditCommit")
def order_edit_commit(
    _: Any, info: Info, id: str, notifyCustomer: bool | None = None, staffNote: str | None = None
) -> Any:
    edit = _edit(info, id)
    if edit is None:
        return {
            "order": None,
            "userErrors": [{"field": ["id"], "message": "The order edit does not exist"}],
        }
    try:
        committed = ctx(info).shop.commit_edit(edit)
    except ShopError as exc:
        return {"order": None, "userErrors": [user_error(exc)]}
    return {"order": committed, "userErrors": []}


def schedule_soon(fn: Any) -> None:
    asyncio.get_running_loop().call_soon(fn)
