"""The Shopify platform: Admin GraphQL client, webhook parsing and verification.

Ids are decimal text of Shopify's numeric ids, in the client and in webhooks alike.
"""

from __future__ import annotations

from stocksync.platforms.shopify.adapter import ShopifyPlatform
from stocksync.platforms.shopify.bulk import BulkOperations
from stocksync.platforms.shopify.client import RetryPolicy, ShopifyClient
from stocksync.platforms.shopify.versions import DEFAULT_VERSION, SUPPORTED_VERSIONS
from stocksync.platforms.shopify.webhooks import WebhookPayloadError, parse_webhook, verify_hmac

__all__ = [
    "DEFAULT_VERSION",
    "SUPPORTED_VERSIONS",
    "BulkOperations",
    "RetryPolicy",
    "ShopifyClient",
    "ShopifyPlatform",
    "WebhookPayloadError",
    "parse_webhook",
    "verify_hmac",
]
