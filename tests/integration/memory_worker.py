"""``stocksync`` with the in-memory platform served over HTTP plugged in
(``platforms/memory_http.py``): the worker processes of the engine's kill tests reach the stores
their test serves. The product's own wiring knows Shopify alone."""

from __future__ import annotations

from stocksync.bootstrap import UnsupportedPlatformError, register_platform
from stocksync.cli import main
from stocksync.domain.ports import StorePlatform
from stocksync.engine.records import StoreRecord
from stocksync.platforms.memory_http import HttpMemoryPlatform
from stocksync.storage.crypto import Vault


def memory_platform(store: StoreRecord, vault: Vault) -> StorePlatform:
    if not store.base_url:
        raise UnsupportedPlatformError(f"{store.name}: an in-memory store needs a base URL")
    return HttpMemoryPlatform(store.base_url, store.external_id)


if __name__ == "__main__":
    register_platform("memory", memory_platform)
    main()
