"""Unique keys (B2): how a destination finds and connects to a source.

A key has 192 bits of randomness, URL-safe. Only its SHA-256 is searchable; the key itself is
kept encrypted so that the source's dashboard can show it."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

KEY_PREFIX = "ssk_"
KEY_BYTES = 24  # 192 bits, above the 128 the product promises


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.strip().encode()).hexdigest()


def looks_like_key(key: str) -> bool:
    key = key.strip()
    return key.startswith(KEY_PREFIX) and 20 <= len(key) <= 200


@dataclass(frozen=True)
class KeyAttemptPolicy:
    """Repeated wrong keys are rate-limited per actor (a destination store or an address)."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)

    def retry_after(self, failures: Sequence[datetime], now: datetime) -> timedelta | None:
        """None when another attempt is allowed, else how long to wait."""
        recent = sorted(t for t in failures if now - t < self.window)
        if len(recent) < self.max_failures:
            return None
        return recent[-self.max_failures] + self.window - now
