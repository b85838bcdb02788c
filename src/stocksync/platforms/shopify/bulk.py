"""Bulk query operations: a whole catalog (or all inventory) in one asynchronous job.

Shopify relies on: ``bulkOperationRunQuery`` starts a query without pagination limits; only
one bulk query per shop and app runs at a time (a second start is refused with
``OPERATION_IN_PROGRESS``); completion is learnt by polling ``currentBulkOperation`` or from
the ``bulk_operations/finish`` webhook; the result is a JSONL file at ``url`` (null when the
query matched nothing), one object per line, where each node of a nested connection is a
line of its own carrying ``__parentId`` (its parent's id) and appears after its parent;
nested connections may go at most two levels deep.

The result is streamed line by line, never held whole in memory.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

from stocksync.domain.ports import PermanentPlatformError, Product, TransientPlatformError
from stocksync.platforms.shopify.client import ShopifyClient
from stocksync.platforms.shopify.documents import document
from stocksync.platforms.shopify.ids import numeric_id
from stocksync.platforms.shopify.mapping import product_from_node

FINISHED_BADLY = frozenset({"FAILED", "CANCELED", "EXPIRED"})

# One lock per shop and event loop: bulk queries of one shop queue behind each other even if
# several client instances of that shop exist; other shops never wait.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def shop_lock(shop_domain: str) -> asyncio.Lock:
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(shop_domain, asyncio.Lock())


class BulkOperationInProgressError(TransientPlatformError):
    """Another bulk query (maybe from another process of this app) runs on this shop."""


class BulkOperations:
    def __init__(
        self, client: ShopifyClient, *, poll_interval: float = 1.0, max_wait: float = 6 * 3600
    ) -> None:
        self.client = client
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self._finished: dict[str, asyncio.Event] = {}

    def notify_finished(self, operation_id: str) -> None:
        """Called on a ``bulk_operations/finish`` webhook: the waiting poll checks at once."""
        event = self._finished.get(numeric_id(operation_id, "BulkOperation"))
        if event is not None:
            event.set()

    async def run(self, query: str) -> AsyncIterator[dict[str, Any]]:
        """Run ``query`` as a bulk operation and yield its JSONL objects in order."""
        async with shop_lock(self.client.shop_domain):
            url = await self._run_to_completion(query)
        if url is None:
            return
        async for line in self.client.stream_lines(url):
            if line.strip():
                value = json.loads(line)
                if isinstance(value, dict):
                    yield value

    async def _run_to_completion(self, query: str) -> str | None:
        answer = await self.client.execute(
            "bulk_operation_run_query",
            document("bulk_operation_run_query"),
            {"query": query},
            retry_safe=False,  # a second start is refused (one at a time), never doubled
        )
        payload = answer.data["bulkOperationRunQuery"]
        errors = payload["userErrors"]
        if errors:
            message = "; ".join(str(e.get("message")) for e in errors)
            if any(e.get("code") == "OPERATION_IN_PROGRESS" for e in errors):
                raise BulkOperationInProgressError(f"{self.client.shop_domain}: {message}")
            raise PermanentPlatformError(f"{self.client.shop_domain}: bulk query: {message}")
        operation_id = numeric_id(payload["bulkOperation"]["id"], "BulkOperation")
        event = self._finished.setdefault(operation_id, asyncio.Event())
        waited = 0.0
        try:
            while True:
                current = (
                    await self.client.execute(
                        "current_bulk_operation", document("current_bulk_operation")
                    )
                ).data["currentBulkOperation"]
                if current is None or numeric_id(current["id"]) != operation_id:
                    raise PermanentPlatformError(
                        f"{self.client.shop_domain}: bulk operation {operation_id} vanished"
                    )
                status = current["status"]
                if status == "COMPLETED":
                    url = current.get("url")
                    return str(url) if url else None
                if status in FINISHED_BADLY:
                    raise PermanentPlatformError(
                        f"{self.client.shop_domain}: bulk operation {operation_id} {status}"
                        f" ({current.get('errorCode')})"
                    )
                if waited >= self.max_wait:
                    raise TransientPlatformError(
                        f"{self.client.shop_domain}: bulk operation {operation_id} still"
                        f" {status} after {waited:.0f} s"
                    )
                if not event.is_set():
                    sleeper = asyncio.ensure_future(self.client.sleep(self.poll_interval))
                    notified = asyncio.ensure_future(event.wait())
                    _, pending = await asyncio.wait(
                        {sleeper, notified}, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in pending:
                        task.cancel()
                event.clear()
                waited += self.poll_interval
        finally:
            self._finished.pop(operation_id, None)

    async def catalog(self) -> list[Product]:
        """Every product with its variants (images are not included: use get_product)."""
        products: dict[str, dict[str, Any]] = {}
        variants: dict[str, list[dict[str, Any]]] = {}
        async for row in self.run(document("bulk_catalog")):
            parent = row.get("__parentId")
            if parent is None:
                products[row["id"]] = row
                variants.setdefault(row["id"], [])
            else:
                variants.setdefault(parent, []).append(row)
        return [product_from_node(node, variants.get(gid, [])) for gid, node in products.items()]

    async def inventory(self) -> dict[tuple[str, str], int]:
        """The available quantity of every stocked (item, location) of the shop."""
        levels: dict[tuple[str, str], int] = {}
        async for row in self.run(document("bulk_inventory")):
            parent = row.get("__parentId")
            if parent is None:
                continue  # an inventory item line; its levels follow with __parentId
            item_id = numeric_id(parent, "InventoryItem")
            location_id = numeric_id(row["location"]["id"], "Location")
            for quantity in row.get("quantities") or []:
                if quantity.get("name") == "available":
                    levels[(item_id, location_id)] = int(quantity["quantity"])
        return levels
