"""What every engine operation needs: the database, the job queue and the platforms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.domain.ports import StorePlatform
from stocksync.engine.records import StoreRecord
from stocksync.jobs.queue import JobQueue

PlatformResolver = Callable[[StoreRecord], StorePlatform]
# Where a store's platform should send its webhooks; None when no public URL is configured.
WebhookUrlResolver = Callable[[StoreRecord], "str | None"]


def no_webhook_url(store: StoreRecord) -> str | None:
    return None


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    db: AsyncEngine
    queue: JobQueue
    platforms: PlatformResolver
    batch_size: int = 250
    # A source change waits this long before its levels are read, so that a burst of changes
    # costs one read and one write per destination instead of one per change.
    debounce: timedelta = field(default_factory=lambda: timedelta(milliseconds=200))
    # Writes to one destination start at most once per interval (see flush_destination).
    flush_interval: timedelta = field(default_factory=lambda: timedelta(seconds=1))
    # Sales wait this long before they are applied to their source, so that the sales of a
    # burst go in one adjustment call (up to ``batch_size`` changes) instead of a few each.
    apply_linger: timedelta = field(default_factory=lambda: timedelta(milliseconds=500))
    stale_retries: int = 3
    clock: Callable[[], datetime] = utcnow
    webhook_url: WebhookUrlResolver = no_webhook_url
    # A destination level that went down with no order to explain it (its order webhook
    # still on its way) is not raised again for this long; past it, it was a manual change
    # and is set back (B15, B24; domain/sales.py).
    sale_grace: timedelta = field(default_factory=lambda: timedelta(seconds=60))
    # How often each store's safety nets run (engine/periodic.py).
    periodic_interval: timedelta = field(default_factory=lambda: timedelta(minutes=10))
