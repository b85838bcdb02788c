"""Which webhook topics a Shopify store is subscribed to, and keeping them there.

Subscriptions are created by API at install (``webhookSubscriptionCreate``) for the topics that
API accepts; the privacy topics are declared in the app's configuration instead. Shopify
deletes an API-created subscription after its deliveries have failed for long enough, so the
same comparison runs again periodically and from ``stocksync doctor --fix``: only what is
missing is created, so running it twice changes nothing."""

from __future__ import annotations

from stocksync.domain.ports import PlatformError, SubscriptionReport
from stocksync.platforms.shopify.client import ShopifyClient
from stocksync.platforms.shopify.documents import document

# What each role needs to hear about. app/uninstalled always (B5).
# A location activated, deactivated or deleted changes a source's summed levels and may take a
# destination's receiving location away; Shopify reports each change under its own topic.
LOCATION_TOPICS = (
    "LOCATIONS_UPDATE",
    "LOCATIONS_ACTIVATE",
    "LOCATIONS_DEACTIVATE",
    "LOCATIONS_DELETE",
)
SOURCE_TOPICS = (
    "INVENTORY_LEVELS_UPDATE",
    "INVENTORY_LEVELS_DISCONNECT",  # an item no longer stocked at a location
    "PRODUCTS_CREATE",
    "PRODUCTS_UPDATE",
    "PRODUCTS_DELETE",
    *LOCATION_TOPICS,
)
DESTINATION_TOPICS = (
    "INVENTORY_LEVELS_UPDATE",  # echoes of our writes and manual changes to undo (B15, B18)
    "PRODUCTS_UPDATE",  # a SKU changed on the destination breaks its link (B8)
    "PRODUCTS_DELETE",
    "ORDERS_CREATE",
    "ORDERS_PAID",
    "ORDERS_UPDATED",
    "ORDERS_CANCELLED",
    "ORDERS_EDITED",
    "REFUNDS_CREATE",
    *LOCATION_TOPICS,
)


def webhook_topics(*, source: bool, destination: bool) -> list[str]:
    topics = ["APP_UNINSTALLED"]
    for wanted, names in ((source, SOURCE_TOPICS), (destination, DESTINATION_TOPICS)):
        if wanted:
            topics += [t for t in names if t not in topics]
    return topics


async def ensure_subscriptions(
    client: ShopifyClient, topics: list[str], callback_url: str, *, create: bool = True
) -> SubscriptionReport:
    """Subscribe ``callback_url`` to each of ``topics`` it is not yet subscribed to.

    Reading the list may raise a :class:`PlatformError` (nothing is known then); a topic whose
    creation fails is reported in ``failed`` and the others are still tried."""
    report = SubscriptionReport()
    answer = await client.execute(
        "webhook_subscriptions", document("webhook_subscriptions"), {"callbackUrl": callback_url}
    )
    have = {n["topic"] for n in answer.data["webhookSubscriptions"]["nodes"]}
    for topic in topics:
        if topic in have:
            report.existing.append(topic)
        elif not create:
            report.missing.append(topic)
        else:
            try:
                created = await client.execute(
                    "webhook_subscription_create",
                    document("webhook_subscription_create"),
                    {"topic": topic, "callbackUrl": callback_url},
                )
            except PlatformError as exc:
                report.failed[topic] = str(exc)
                continue
            errors = created.data["webhookSubscriptionCreate"]["userErrors"]
            if errors:
                report.failed[topic] = "; ".join(str(e.get("message")) for e in errors)
            else:
                report.created.append(topic)
    return report
