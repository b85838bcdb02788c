"""Keeping a store's webhook subscriptions in place (periodically and on demand).

A platform can drop a subscription (Shopify does, after its deliveries failed for long
enough); the store then changes without telling us. Order backfill and reconciliation repair
what was missed, and this check makes sure it stops being missed."""

from __future__ import annotations

from stocksync.domain.ports import PlatformError, SubscriptionReport, WebhookSubscriptions
from stocksync.engine.records import load_store
from stocksync.engine.runtime import Runtime
from stocksync.storage import activity


async def check_subscriptions(
    rt: Runtime, store_id: int, *, fix: bool = True
) -> SubscriptionReport | None:
    """Compare (and with ``fix``, repair) the store's subscriptions; None when the store's
    platform has none to keep or no public URL is configured. Every repair and failure
    reaches the activity log."""
    async with rt.db.begin() as conn:
        store = await load_store(conn, store_id)
    if store is None or store.status != "active":
        return None
    callback = rt.webhook_url(store)
    platform = rt.platforms(store)
    if callback is None or not isinstance(platform, WebhookSubscriptions):
        return None
    try:
        report = await platform.ensure_subscriptions(
            source=store.is_source,
            destination=store.is_destination,
            callback_url=callback,
            create=fix,
        )
    except PlatformError as exc:
        async with rt.db.begin() as conn:
            await activity.record(
                conn,
                store_id=store_id,
                level="error",
                kind="webhooks_unchecked",
                message=f"the webhook subscriptions could not be checked: {exc}",
                details={"callback_url": callback, "error": type(exc).__name__},
            )
        raise
    if report.created or report.failed:
        async with rt.db.begin() as conn:
            if report.created:
                await activity.record(
                    conn,
                    store_id=store_id,
                    level="warning",
                    kind="webhooks_recreated",
                    message="webhook subscriptions were missing and have been created again: "
                    + ", ".join(report.created),
                    details={"created": report.created, "callback_url": callback},
                )
            if report.failed:
                await activity.record(
                    conn,
                    store_id=store_id,
                    level="error",
                    kind="webhooks_not_registered",
                    message="some webhook subscriptions could not be created; changes may "
                    "arrive only through reconciliation until they are",
                    details={"failed": report.failed, "callback_url": callback},
                )
    return report
