"""An engine wired to the in-memory platform on a real database, for integration tests.

The world's webhooks stay in its outbox until the test delivers them, so a test decides about
duplicates, reordering and loss. ``settle`` delivers and runs jobs until nothing is left."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.domain.connection import ConnectionSettings
from stocksync.engine.failures import store_of_dead_letter
from stocksync.engine.ingest import IngestResult, ingest, payload_of
from stocksync.engine.records import ConnectionRecord, StoreRecord
from stocksync.engine.runtime import Runtime
from stocksync.engine.stores import connect, install_store, set_locations
from stocksync.engine.tasks import build_registry
from stocksync.jobs.embedded import EmbeddedJobQueue
from stocksync.jobs.pg import ProcrastinateJobQueue, ensure_procrastinate_schema
from stocksync.jobs.queue import JobQueue, TaskRegistry
from stocksync.jobs.retry import ExponentialBackoff
from stocksync.platforms.memory import Delivery, MemoryStore, MemoryWorld
from stocksync.storage.crypto import Vault
from stocksync.storage.db import create_engine
from stocksync.storage.schema import create_all


def quick_backoff() -> ExponentialBackoff:
    # Retries within milliseconds, so that a drain sees them; seeded for reproducible runs.
    return ExponentialBackoff(base=0.005, cap=0.04, rng=random.Random(1))


async def make_queue(db: AsyncEngine, url: str, max_attempts: int = 25) -> JobQueue:
    if db.dialect.name == "postgresql":
        await ensure_procrastinate_schema(db)
        return ProcrastinateJobQueue(
            db,
            url,
            max_attempts=max_attempts,
            backoff=quick_backoff(),
            poll_interval=0.005,
            heartbeat_interval=0.5,
            stalled_worker_timeout=2.0,
            drain_horizon=0.5,
            store_of_job=store_of_dead_letter,
        )
    return EmbeddedJobQueue(
        db,
        poll_interval=0.01,
        lease_seconds=5.0,
        drain_horizon=0.5,
        max_attempts=max_attempts,
        backoff=quick_backoff(),
        store_of_job=store_of_dead_letter,
    )


async def truncate_all(db: AsyncEngine) -> None:
    """Empty every table (faster than a new database for each of many examples)."""
    from sqlalchemy import text

    from stocksync.storage.tables import metadata

    async with db.begin() as conn:
        if db.dialect.name == "postgresql":
            names = ", ".join(t.name for t in metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            await conn.execute(text("TRUNCATE procrastinate_jobs RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())


@dataclass
class Harness:
    world: MemoryWorld
    db: AsyncEngine
    rt: Runtime
    registry: TaskRegistry
    vault: Vault
    # The vault's key, for worker processes started on the same database: they must open
    # what this process stored.
    secret_key: str
    stores: dict[str, StoreRecord] = field(default_factory=dict)
    connections: dict[str, ConnectionRecord] = field(default_factory=dict)

    @classmethod
    async def create(cls, url: str, *, batch_size: int = 250, fresh: bool = False) -> Harness:
        db = create_engine(url)
        await create_all(db)
        world = MemoryWorld()
        queue = await make_queue(db, url)
        if fresh:
            await truncate_all(db)
        rt = Runtime(
            db=db,
            queue=queue,
            platforms=lambda store: world.platform(store.external_id),
            batch_size=batch_size,
            debounce=timedelta(0),
            apply_linger=timedelta(0),  # as the debounce: drains need no wait
            # Jobs are drained as soon as they are due: no pacing, or drains would wait.
            flush_interval=timedelta(0),
        )
        key = Fernet.generate_key().decode()
        return cls(world, db, rt, build_registry(rt), Vault([key]), key)

    async def close(self) -> None:
        await self.db.dispose()

    def shop(self, name: str) -> MemoryStore:
        return self.world.platform(name)

    async def add_store(self, name: str, role: str, **kw: object) -> StoreRecord:
        shop = self.world.add_store(name)
        async with self.db.begin() as conn:
            store, _key = await install_store(
                self.rt,
                conn,
                vault=self.vault,
                platform="memory",
                external_id=name,
                role=role,
                **kw,  # type: ignore[arg-type]
            )
            await set_locations(conn, store.id, await shop.list_locations())
        self.stores[name] = store
        return store

    async def connect(
        self, destination: str, source: str, settings: ConnectionSettings | None = None
    ) -> ConnectionRecord:
        from stocksync.engine.stores import show_key

        async with self.db.begin() as conn:
            key = await show_key(conn, self.vault, self.stores[source].id)
            record = await connect(
                self.rt,
                conn,
                destination_store_id=self.stores[destination].id,
                key=key,
                receiving_location=self.shop(destination).primary_location_id,
                settings=settings,
            )
        self.connections[destination] = record
        return record

    async def deliver(self, deliveries: Sequence[Delivery]) -> list[IngestResult]:
        results = []
        for d in deliveries:
            results.append(
                await ingest(
                    self.rt,
                    platform="memory",
                    store_ref=d.store_ref,
                    event_id=d.event_id,
                    topic=d.topic,
                    event=d.event,
                    payload=payload_of(d.event),
                )
            )
        return results

    async def drain(self, deadline: float = 60.0) -> None:
        await self.rt.queue.drain(self.registry, deadline)

    async def settle(self, rounds: int = 50) -> None:
        """Deliver every webhook and run every job until the world is quiet."""
        for _ in range(rounds):
            await self.drain()
            pending = self.world.take_outbox()
            if not pending:
                return
            await self.deliver(pending)
        raise AssertionError(f"not quiet after {rounds} rounds of deliveries")

    def level(self, store: str, sku: str) -> int | None:
        shop = self.shop(store)
        variant = shop.variant_by_sku(sku)
        return shop.level(variant.item_id, shop.primary_location_id)
