"""Wiring: settings -> database, job queue, secrets and platforms -> an engine runtime.

The CLI and the web app both start here, so that the same parts run embedded (SQLite, one
process) and distributed (PostgreSQL, many workers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.config import Settings
from stocksync.domain.ports import StorePlatform
from stocksync.engine.periodic import ensure_periodic
from stocksync.engine.records import StoreRecord
from stocksync.engine.runtime import Runtime
from stocksync.engine.tasks import build_registry
from stocksync.jobs.factory import make_job_queue
from stocksync.jobs.queue import TaskRegistry
from stocksync.storage.crypto import Vault
from stocksync.storage.db import create_engine


class UnsupportedPlatformError(RuntimeError):
    pass


def platform_for(store: StoreRecord, vault: Vault) -> StorePlatform:
    """The adapter for a store, by its platform name."""
    if store.platform == "memory":
        from stocksync.platforms.memory_http import HttpMemoryPlatform

        if not store.base_url:
            raise UnsupportedPlatformError(f"{store.name}: an in-memory store needs a base URL")
        return HttpMemoryPlatform(store.base_url, store.external_id)
    if store.platform == "shopify":
        from stocksync.platforms.shopify.adapter import ShopifyPlatform
        from stocksync.platforms.shopify.versions import DEFAULT_VERSION

        if not store.credentials:
            # Erased at uninstall (B5): the merchant must install the app again.
            raise UnsupportedPlatformError(f"{store.name}: no access token; install it again")
        return ShopifyPlatform(
            shop_domain=store.external_id,
            access_token=vault.decrypt(store.credentials),
            api_version=store.api_version or DEFAULT_VERSION,
            base_url=store.base_url,
        )
    raise UnsupportedPlatformError(f"{store.name}: platform {store.platform!r} is not supported")


@dataclass
class App:
    settings: Settings
    db: AsyncEngine
    vault: Vault
    runtime: Runtime

    def registry(self) -> TaskRegistry:
        return build_registry(self.runtime, timedelta(seconds=self.settings.periodic_seconds))

    async def start_periodic(self) -> None:
        await ensure_periodic(self.runtime, timedelta(seconds=self.settings.periodic_seconds))

    async def close(self) -> None:
        await self.db.dispose()


def build_app(settings: Settings) -> App:
    db = create_engine(settings.resolved_database_url)
    vault = Vault.from_setting(settings.secret_key, settings.data_dir)
    queue = make_job_queue(db, settings.resolved_database_url, settings)
    cache: dict[int, StorePlatform] = {}

    def resolve(store: StoreRecord) -> StorePlatform:
        # One adapter per store and process: it owns the store's HTTP client and throttle.
        if store.id not in cache:
            cache[store.id] = platform_for(store, vault)
        return cache[store.id]

    runtime = Runtime(
        db=db,
        queue=queue,
        platforms=resolve,
        batch_size=settings.flush_batch_size,
        debounce=timedelta(milliseconds=settings.flush_debounce_ms),
    )
    return App(settings=settings, db=db, vault=vault, runtime=runtime)
