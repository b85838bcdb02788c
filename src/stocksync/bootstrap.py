"""Wiring: settings -> database, job queue, secrets and platforms -> an engine runtime.

The CLI and the web app both start here, so that the same parts run embedded (SQLite, one
process) and distributed (PostgreSQL, many workers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.config import Settings
from stocksync.domain.ports import StorePlatform
from stocksync.engine.failures import store_of_dead_letter
from stocksync.engine.periodic import ensure_periodic
from stocksync.engine.records import StoreRecord
from stocksync.engine.runtime import Runtime
from stocksync.engine.tasks import build_registry
from stocksync.jobs.factory import make_job_queue
from stocksync.jobs.queue import TaskRegistry
from stocksync.storage.crypto import Vault
from stocksync.storage.db import create_engine

# A replaced adapter's HTTP client outlives the calls that were using it by this much.
RETIRED_ADAPTER_GRACE_SECONDS = 60.0


class UnsupportedPlatformError(RuntimeError):
    pass


PlatformFactory = Callable[[StoreRecord, Vault], StorePlatform]


def shopify_platform(store: StoreRecord, vault: Vault) -> StorePlatform:
    # Imported when a Shopify store is first resolved: a command that reaches no store does
    # not load the Shopify client.
    from stocksync.platforms.shopify.adapter import ShopifyPlatform
    from stocksync.platforms.shopify.versions import DEFAULT_VERSION, refusal

    if not store.credentials:
        # Erased at uninstall (B5): the merchant must install the app again.
        raise UnsupportedPlatformError(f"{store.name}: no access token; install it again")
    reason = refusal(store.api_version or DEFAULT_VERSION)
    if reason is not None:
        # Stored before such versions were refused: nothing is sent until it is changed.
        raise UnsupportedPlatformError(f"{store.name}: {reason}")
    return ShopifyPlatform(
        shop_domain=store.external_id,
        access_token=vault.decrypt(store.credentials),
        api_version=store.api_version or DEFAULT_VERSION,
        base_url=store.base_url,
    )


# The adapters by platform name. Shopify's is built in; any other is plugged in with
# register_platform by the program that runs it (the in-memory platform served over HTTP is,
# by the worker processes of the engine's kill tests), so that this wiring imports no fake.
PLATFORMS: dict[str, PlatformFactory] = {"shopify": shopify_platform}


def register_platform(name: str, factory: PlatformFactory) -> None:
    PLATFORMS[name] = factory


def platform_for(store: StoreRecord, vault: Vault) -> StorePlatform:
    """The adapter for a store, by its platform name."""
    factory = PLATFORMS.get(store.platform)
    if factory is None:
        raise UnsupportedPlatformError(
            f"{store.name}: platform {store.platform!r} is not supported"
        )
    return factory(store, vault)


class AdapterCache:
    """One adapter per store and process: it owns the store's HTTP client and throttle.

    Jobs load the store afresh, so an adapter built from credentials that have since changed
    (a reinstall with a new token, another API version or address) is seen to be stale on the
    next job in every process, replaced, and closed once the calls still using it are done."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._adapters: dict[int, tuple[tuple[object, ...], StorePlatform]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    @staticmethod
    def _fingerprint(store: StoreRecord) -> tuple[object, ...]:
        return (store.platform, store.credentials, store.api_version, store.base_url)

    def resolve(self, store: StoreRecord) -> StorePlatform:
        fingerprint = self._fingerprint(store)
        cached = self._adapters.get(store.id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        adapter = platform_for(store, self.vault)
        self._adapters[store.id] = (fingerprint, adapter)
        if cached is not None:
            self._retire(cached[1])
        return adapter

    def _retire(self, adapter: StorePlatform) -> None:
        close = getattr(adapter, "aclose", None)
        if close is None:
            return

        async def later() -> None:
            # Calls already under way on the old adapter finish first.
            await asyncio.sleep(RETIRED_ADAPTER_GRACE_SECONDS)
            await close()

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop to close it on; the process is ending
        task = loop.create_task(later())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


@dataclass
class App:
    settings: Settings
    db: AsyncEngine
    vault: Vault
    runtime: Runtime

    def registry(self) -> TaskRegistry:
        return build_registry(self.runtime, self.runtime.periodic_interval)

    async def start_periodic(self) -> None:
        await ensure_periodic(self.runtime, self.runtime.periodic_interval)

    async def close(self) -> None:
        await self.db.dispose()


def build_app(settings: Settings) -> App:
    db = create_engine(settings.resolved_database_url)
    vault = Vault.from_setting(settings.secret_key, settings.data_dir)
    queue = make_job_queue(
        db, settings.resolved_database_url, settings, store_of_job=store_of_dead_letter
    )
    adapters = AdapterCache(vault)

    def webhook_url(store: StoreRecord) -> str | None:
        if not settings.public_url:
            return None
        return f"{settings.public_url.rstrip('/')}/webhooks/{store.platform}"

    runtime = Runtime(
        db=db,
        queue=queue,
        platforms=adapters.resolve,
        webhook_url=webhook_url,
        periodic_interval=timedelta(seconds=settings.periodic_seconds),
        batch_size=settings.flush_batch_size,
        debounce=timedelta(milliseconds=settings.flush_debounce_ms),
        flush_interval=timedelta(milliseconds=settings.flush_interval_ms),
        apply_linger=timedelta(milliseconds=settings.ledger_linger_ms),
        sale_grace=timedelta(seconds=settings.sale_grace_seconds),
    )
    return App(settings=settings, db=db, vault=vault, runtime=runtime)
