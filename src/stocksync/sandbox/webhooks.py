"""Webhook subscriptions and delivery, as Shopify does them.

- Signed: `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of the raw body with the app's
  client secret (one secret for every shop, as one app has one secret).
- At least once: a delivery that does not answer 2xx within the timeout (5 s) is retried
  8 times over about 4 hours with growing delays, on the sandbox's clock (so time-scaled).
  After the last retry fails, a subscription created through the API is removed.
- Order is not guaranteed: each delivery runs on its own; faults can drop, duplicate,
  delay or reorder deliveries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stocksync.sandbox.http_post import DeliveryError, KeepAlivePoster
from stocksync.sandbox.ids import gid
from stocksync.sandbox.timefmt import iso_z

if TYPE_CHECKING:
    from stocksync.sandbox.sandbox import Sandbox
    from stocksync.sandbox.state import Shop

log = logging.getLogger("stocksync.sandbox.webhooks")

# Delays before each of the 8 retries: about 3.9 hours in total.
RETRY_DELAYS = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
DELIVERY_TIMEOUT = 5.0
# Deliveries on the wire at once, each on a kept-alive connection; more wait their turn
# (see http_post.py for why deliveries do not go through a general HTTP client).
MAX_DELIVERIES_IN_FLIGHT = 16
PRIVACY_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")


def topic_enum(topic: str) -> str:
    """`orders/create` -> `ORDERS_CREATE`."""
    return topic.replace("/", "_").upper()


def topic_name(enum: str) -> str:
    """`ORDERS_CREATE` -> `orders/create` (the first underscore separates resource and verb,
    except for the multi-word resources below)."""
    lowered = enum.lower()
    for resource in ("inventory_levels", "inventory_items", "bulk_operations", "app"):
        if lowered.startswith(resource + "_"):
            return resource + "/" + lowered[len(resource) + 1 :]
    resource, _, verb = lowered.partition("_")
    return f"{resource}/{verb}"


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(body: bytes, secret: str, header: str) -> bool:
    return hmac.compare_digest(sign(body, secret), header)


@dataclass
class Subscription:
    id: int
    shop_domain: str
    topic: str  # enum form, e.g. ORDERS_CREATE
    callback_url: str
    api_version: str
    created_at: float
    updated_at: float
    format: str = "JSON"
    include_fields: list[str] = field(default_factory=list)
    api_created: bool = True

    @property
    def gid(self) -> str:
        return gid("WebhookSubscription", self.id)

    @property
    def endpoint(self) -> dict[str, Any]:
        return {"__typename": "WebhookHttpEndpoint", "callbackUrl": self.callback_url}


@dataclass
class Delivery:
    shop: Shop
    topic: str
    url: str
    body: bytes
    api_version: str
    event_id: str
    triggered_at: float
    subscription_id: int | None
    webhook_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: int = 0


class WebhookDispatcher:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.subscriptions: dict[str, dict[int, Subscription]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: KeepAlivePoster | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._backlog: list[Delivery] = []
        self.timeout = DELIVERY_TIMEOUT
        self.log: list[dict[str, Any]] = []  # every attempt, for the admin endpoint and tests

    # ------------------------------------------------------------ subscriptions
    def subscribe(
        self,
        shop: Shop,
        topic: str,
        url: str,
        api_version: str,
        include_fields: list[str] | None = None,
        fmt: str = "JSON",
    ) -> Subscription:
        now = self.sandbox.clock.now()
        sub = Subscription(
            shop.ids(),
            shop.domain,
            topic,
            url,
            api_version,
            now,
            now,
            fmt,
            list(include_fields or []),
        )
        self.subscriptions.setdefault(shop.domain, {})[sub.id] = sub
        return sub

    def unsubscribe(self, shop: Shop, sub_id: int) -> bool:
        return self.subscriptions.get(shop.domain, {}).pop(sub_id, None) is not None

    def of_shop(self, shop: Shop) -> list[Subscription]:
        return list(self.subscriptions.get(shop.domain, {}).values())

    # ------------------------------------------------------------------ events
    def on_event(self, shop: Shop, topic: str, payload: dict[str, Any]) -> None:
        """Called synchronously by the shop's state; deliveries run later on the loop."""
        enum = topic_enum(topic)
        now = self.sandbox.clock.now()
        event_id = str(uuid.uuid4())
        for sub in self.of_shop(shop):
            if sub.topic != enum:
                continue
            body = payload
            if sub.include_fields:
                body = {k: v for k, v in payload.items() if k in sub.include_fields}
            self._enqueue(
                Delivery(
                    shop,
                    topic,
                    sub.callback_url,
                    json.dumps(body).encode(),
                    sub.api_version,
                    event_id,
                    now,
                    sub.id,
                )
            )

    def send_direct(
        self, shop: Shop, topic: str, url: str, payload: dict[str, Any], api_version: str
    ) -> None:
        """A delivery not tied to a subscription (the privacy topics, declared in the app's
        configuration)."""
        self._enqueue(
            Delivery(
                shop,
                topic,
                url,
                json.dumps(payload).encode(),
                api_version,
                str(uuid.uuid4()),
                self.sandbox.clock.now(),
                None,
            )
        )

    def _enqueue(self, delivery: Delivery) -> None:
        loop = self.loop
        if loop is None:
            self._backlog.append(delivery)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn(self._start(delivery))
        else:
            loop.call_soon_threadsafe(lambda: self._spawn(self._start(delivery)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = KeepAlivePoster(MAX_DELIVERIES_IN_FLIGHT, self.timeout)  # on this loop
        backlog, self._backlog = self._backlog, []
        for delivery in backlog:
            self._spawn(self._start(delivery))

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        self.loop = None

    # ---------------------------------------------------------------- delivery
    async def _start(self, delivery: Delivery) -> None:
        faults = self.sandbox.faults_of(delivery.shop)
        stats = self.sandbox.stats_of(delivery.shop)
        if faults.take("webhook_drop"):
            stats.webhooks_dropped += 1
            self._record(delivery, "dropped", None)
            return
        copies = 1
        if faults.take("webhook_duplicate"):
            copies = 2
            stats.webhooks_duplicated += 1
        delay = faults.webhook_delay()
        if delay > 0:
            stats.webhooks_delayed += 1
        if faults.take("webhook_reorder"):
            # Held back so that the deliveries that follow overtake it.
            stats.webhooks_reordered += 1
            delay += faults.webhook_reorder_hold_s
        if delay > 0:
            await self.sandbox.clock.sleep(delay)
        for _ in range(copies - 1):
            self._spawn(self._attempts(delivery))
        await self._attempts(delivery)

    async def _attempts(self, delivery: Delivery) -> None:
        stats = self.sandbox.stats_of(delivery.shop)
        for retry in range(len(RETRY_DELAYS) + 1):
            if retry:
                await self.sandbox.clock.sleep(RETRY_DELAYS[retry - 1])
                if delivery.subscription_id is not None and delivery.subscription_id not in (
                    self.subscriptions.get(delivery.shop.domain, {})
                ):
                    return
            status = await self._post(delivery)
            if status is not None and 200 <= status < 300:
                stats.webhooks_sent += 1
                return
            stats.webhooks_failed_attempts += 1
        if delivery.subscription_id is not None:
            sub = self.subscriptions.get(delivery.shop.domain, {}).get(delivery.subscription_id)
            if sub is not None and sub.api_created:
                self.unsubscribe(delivery.shop, sub.id)
                stats.subscriptions_removed += 1
                log.warning("removed webhook subscription %s after failed retries", sub.gid)

    async def _post(self, delivery: Delivery) -> int | None:
        assert self.client is not None
        delivery.attempts += 1
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": delivery.topic,
            "X-Shopify-Hmac-Sha256": sign(delivery.body, self.sandbox.app.client_secret),
            "X-Shopify-Shop-Domain": delivery.shop.domain,
            "X-Shopify-Webhook-Id": delivery.webhook_id,
            "X-Shopify-Event-Id": delivery.event_id,
            "X-Shopify-Triggered-At": iso_z(delivery.triggered_at).replace("Z", ".000Z"),
            "X-Shopify-API-Version": delivery.api_version,
        }
        status: int | None
        try:
            status = await self.client.post(delivery.url, delivery.body, headers)
        except DeliveryError as exc:
            status = None
            log.debug("webhook to %s failed: %s", delivery.url, exc)
        self._record(delivery, "delivered" if status and 200 <= status < 300 else "failed", status)
        return status

    def _record(self, delivery: Delivery, outcome: str, status: int | None) -> None:
        self.log.append(
            {
                "shop": delivery.shop.domain,
                "topic": delivery.topic,
                "url": delivery.url,
                "webhook_id": delivery.webhook_id,
                "attempt": delivery.attempts,
                "outcome": outcome,
                "status": status,
            }
        )
        if len(self.log) > 10_000:
            del self.log[:5_000]
