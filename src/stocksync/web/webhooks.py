"""Webhook receivers. The signature is checked on the raw body before anything is stored; the
delivery is recorded (inbox row, state change, jobs) in one transaction; then it is answered,
well inside Shopify's five seconds because no platform call happens here."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from stocksync.config import Settings
from stocksync.domain.events import AppUninstalled, InboundEvent, PrivacyRequest
from stocksync.engine.ingest import Inbound, Ingestor
from stocksync.logs import elapsed_ms, get_logger
from stocksync.platforms.shopify.webhooks import (
    WebhookPayloadError,
    followed,
    parse_webhook,
    verify_hmac,
)

log = get_logger("stocksync.web.webhooks")

PRIVACY_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})


class BodyTooLargeError(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, message: str) -> Response:
    return Response(
        json.dumps({"status": status, "message": message}),
        status_code=status,
        media_type="application/json",
    )


# What a delivery became, for the log: the intake's outcome, named for an operator.
_RESULTS = {"recorded": "stored"}


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


class _Delivery:
    """The log line of one delivery: its headers' ids, never its body."""

    def __init__(self, request: Request) -> None:
        self.start = time.perf_counter()
        headers = request.headers
        found = {
            "topic": (headers.get("x-shopify-topic") or "").strip().lower(),
            "shop": (headers.get("x-shopify-shop-domain") or "").strip().lower(),
            "webhook_id": headers.get("x-shopify-webhook-id"),
            "event_id": headers.get("x-shopify-event-id"),
        }
        self.fields: dict[str, Any] = {"platform": "shopify"}
        self.fields.update((name, value) for name, value in found.items() if value)

    def accepted(self, result: str, message: str, **fields: Any) -> Response:
        log.info(
            "webhook",
            result=result,
            status=200,
            duration_ms=elapsed_ms(self.start, time.perf_counter()),
            **self.fields,
            **_present(fields),
        )
        return _answer(200, message)

    def refused(self, status: int, reason: str, **fields: Any) -> Response:
        log.warning(
            "webhook",
            result="refused",
            status=status,
            reason=reason,
            duration_ms=elapsed_ms(self.start, time.perf_counter()),
            **self.fields,
            **_present(fields),
        )
        return _answer(status, reason)


def shopify_router(settings: Settings, ingestor: Ingestor) -> APIRouter:
    router = APIRouter()

    @router.post("/webhooks/shopify", include_in_schema=False)
    async def shopify_webhook(request: Request) -> Response:
        delivery = _Delivery(request)
        try:
            body = await read_limited(request, settings.webhook_max_bytes)
        except BodyTooLargeError:
            return delivery.refused(413, "the webhook body is larger than this receiver accepts")
        secrets = settings.shopify_secrets(datetime.now(UTC))
        if not secrets:
            return delivery.refused(
                503, "no Shopify app secret is configured (STOCKSYNC_SHOPIFY_API_SECRET)"
            )
        if not verify_hmac(secrets, body, request.headers.get("x-shopify-hmac-sha256")):
            # Nothing is stored for a delivery we cannot attribute: it may be forged.
            return delivery.refused(401, "invalid webhook signature")
        topic = (request.headers.get("x-shopify-topic") or "").strip().lower()
        shop = (request.headers.get("x-shopify-shop-domain") or "").strip().lower()
        event_id = request.headers.get("x-shopify-event-id") or request.headers.get(
            "x-shopify-webhook-id"
        )
        if not topic or not shop or not event_id:
            return delivery.refused(
                400, "missing X-Shopify-Topic, -Shop-Domain or -Event-Id header"
            )
        event: InboundEvent | None
        unreadable = False
        if topic == "app/uninstalled":
            event = AppUninstalled()
        elif topic in PRIVACY_TOPICS:
            event = PrivacyRequest(topic)
        elif not followed(topic):
            # Signed, so it is Shopify's; nothing in it is ours to apply (a bulk operation's
            # completion, say, is also read by polling).
            return delivery.accepted("not_followed", f"not followed: {topic}")
        else:
            try:
                event = parse_webhook(topic, body)
            except WebhookPayloadError:
                event, unreadable = None, True
        result = await ingestor.submit(
            Inbound("shopify", shop, event_id.strip(), topic, event, body)
        )
        if unreadable:
            # Recorded (inbox and activity log) so that it can be inspected, and refused so
            # that the platform's own delivery logs show the failure.
            return delivery.refused(
                400, "the webhook body could not be read", inbox_id=result.inbox_id
            )
        return delivery.accepted(
            _RESULTS.get(result.outcome, result.outcome), result.outcome, inbox_id=result.inbox_id
        )

    return router
