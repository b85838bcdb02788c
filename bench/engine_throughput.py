"""Engine throughput: source level changes ingested and fanned out, in process, no HTTP.

10,000 source level changes over 1,000 variants, each ingested as a webhook would be (inbox
row, dirty mark and coalesced job in one transaction), processed by the job worker and fanned
out to 10 destinations on the in-memory platform (zero latency). Prints, per backend:

- end-to-end changes per second (first ingest -> every destination equal to the source);
- platform write calls, against one call per change per destination (the naive count);
- per change, the time until every destination shows it or a later value (p50, p99).

Usage: .venv/bin/python bench/engine_throughput.py [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import contextlib

from stocksync.domain.ports import LevelWrite, SetOutcome
from stocksync.engine.catalog import import_products
from stocksync.engine.ingest import Inbound, Ingestor, payload_of
from stocksync.engine.runtime import Runtime
from stocksync.engine.stores import connect_with_own_key, install_located
from stocksync.engine.tasks import build_registry
from stocksync.jobs.embedded import EmbeddedJobQueue
from stocksync.jobs.pg import ProcrastinateJobQueue, ensure_procrastinate_schema
from stocksync.jobs.queue import JobQueue
from stocksync.platforms.memory import MemoryStore, MemoryWorld
from stocksync.storage.crypto import Vault
from stocksync.storage.db import create_engine
from stocksync.storage.schema import create_all

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def first_shown(
    changes: list[tuple[float, int]], level_before: int, writes: list[tuple[float, int]]
) -> float | None:
    """When a destination first shows the value of ``changes[0]`` or of a later change,
    given its level before ``changes[0]`` and its writes (both in time order)."""
    t0 = changes[0][0]
    level = level_before
    k = 0
    while k < len(writes) and writes[k][0] < t0:
        level = writes[k][1]
        k += 1
    acceptable: set[int] = set()
    events = sorted([(t, 0, v) for t, v in changes] + [(t, 1, v) for t, v in writes[k:]])
    for t, kind, v in events:
        if kind == 0:
            acceptable.add(v)
        else:
            level = v
        if level in acceptable:
            return t
    return None


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class WriteLog:
    """Timestamps of every level a destination was set to, per item."""

    def __init__(self) -> None:
        self.writes: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)

    def wrap(self, store: MemoryStore, dest: str, source_item_of: dict[str, str]) -> None:
        original = store.set_levels

        async def set_levels(writes: Sequence[LevelWrite]) -> SetOutcome:
            outcome = await original(writes)
            if outcome.applied:
                now = time.perf_counter()
                for w in writes:
                    self.writes[(dest, source_item_of[w.item_id])].append((now, w.quantity))
            return outcome

        store.set_levels = set_levels  # type: ignore[method-assign]


async def run(  # noqa: C901, PLR0912, PLR0915  one benchmark run, read in order
    backend: str, changes: int, variants: int, destinations: int, seed: int
) -> dict[str, float]:
    rng = random.Random(seed)
    db_name = None
    if backend == "postgres":
        db_name = f"stocksync_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{db_name}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{db_name}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='stocksync-bench-')}/bench.db"
    db = create_engine(url)
    await create_all(db)
    queue: JobQueue
    if backend == "postgres":
        await ensure_procrastinate_schema(db)
        queue = ProcrastinateJobQueue(db, url, poll_interval=0.05)
    else:
        queue = EmbeddedJobQueue(db, poll_interval=0.05)
    world = MemoryWorld()
    rt = Runtime(
        db=db,
        queue=queue,
        platforms=lambda store: world.platform(store.external_id),
        debounce=timedelta(milliseconds=100),
    )
    vault = Vault([Fernet.generate_key().decode()])
    registry = build_registry(rt)
    try:
        source = world.add_store("source")
        per_product = 10
        for p in range(variants // per_product):
            source.add_product(
                f"Product {p}", [f"SKU-{p}-{v}" for v in range(per_product)], available=50
            )
        src, _ = await install_located(
            rt,
            vault=vault,
            platform_name="memory",
            external_id="source",
            role="source",
            locations_of=await source.list_locations(),
        )
        log = WriteLog()
        items = [v.item_id for p in await source.list_products() for v in p.variants]
        for d in range(destinations):
            name = f"dest-{d}"
            shop = world.add_store(name)
            dest, _ = await install_located(
                rt,
                vault=vault,
                platform_name="memory",
                external_id=name,
                role="destination",
                locations_of=await shop.list_locations(),
            )
            record = await connect_with_own_key(
                rt,
                vault=vault,
                source_store_id=src.id,
                destination_store_id=dest.id,
                receiving_location=shop.primary_location_id,
            )
            await import_products(rt, record.id)
        await queue.drain(registry, 600)
        mapping: dict[str, dict[str, str]] = {}
        for d in range(destinations):
            shop = world.platform(f"dest-{d}")
            by_sku = {v.sku: v.item_id for p in await shop.list_products() for v in p.variants}
            src_by_sku = {
                v.sku: v.item_id for p in await source.list_products() for v in p.variants
            }
            mapping[f"dest-{d}"] = {by_sku[s]: src_by_sku[s] for s in by_sku}
            log.wrap(shop, f"dest-{d}", mapping[f"dest-{d}"])
        world.take_outbox()
        world.reset_counters()

        location = source.primary_location_id
        history: dict[str, list[tuple[float, int]]] = defaultdict(list)
        start_levels: dict[tuple[int, str], int] = {}
        for d in range(destinations):
            shop = world.platform(f"dest-{d}")
            for dest_item, src_item in mapping[f"dest-{d}"].items():
                start_levels[(d, src_item)] = shop.level(dest_item, shop.primary_location_id) or 0
        worker = asyncio.create_task(queue.run_worker(registry, concurrency=4))

        ingestor = Ingestor(rt)
        # Webhooks arrive concurrently: up to 64 deliveries in flight, as a web server has.
        in_flight = asyncio.Semaphore(64)
        tasks: list[asyncio.Task[None]] = []

        async def deliver(inbound: Inbound) -> None:
            async with in_flight:
                await ingestor.submit(inbound)

        async def ingest_all() -> None:
            for n in range(changes):
                item = rng.choice(items)
                current = source.level(item, location) or 0
                value = max(0, current + rng.choice((-3, -2, -1, 1, 2, 3)))
                if value == current:
                    value += 1
                source.set_available(item, location, value)
                history[item].append((time.perf_counter(), value))
                for d in world.take_outbox():
                    inbound = Inbound(
                        "memory", d.store_ref, d.event_id, d.topic, d.event, payload_of(d.event)
                    )
                    tasks.append(asyncio.create_task(deliver(inbound)))
                if n % 16 == 0:
                    await asyncio.sleep(0)  # let deliveries and the worker run
            await asyncio.gather(*tasks)

        started = time.perf_counter()
        await ingest_all()
        ingested = time.perf_counter()

        def converged() -> bool:
            for d in range(destinations):
                shop = world.platform(f"dest-{d}")
                loc = shop.primary_location_id
                for dest_item, src_item in mapping[f"dest-{d}"].items():
                    if shop.level(dest_item, loc) != source.level(src_item, location):
                        return False
            return True

        while not converged():
            world.take_outbox()  # destinations' echoes of our writes are not under test here
            await asyncio.sleep(0.02)  # polling the platform for convergence in a benchmark
            if time.perf_counter() - started > 900:
                raise TimeoutError("no convergence in 15 minutes")
        finished = time.perf_counter()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

        # For each change: the first instant at which every destination shows the value of
        # that change or of a later one (a destination already showing it needs no write).
        latencies: list[float] = []
        for item, changes_of_item in history.items():
            for i, (t_change, _v) in enumerate(changes_of_item):
                worst = 0.0
                for d in range(destinations):
                    seen = first_shown(
                        changes_of_item[i:],
                        start_levels[(d, item)],
                        log.writes.get((f"dest-{d}", item), []),
                    )
                    if seen is None:
                        worst = float("inf")
                        break
                    worst = max(worst, seen - t_change)
                latencies.append(worst)
        write_calls = sum(
            world.platform(f"dest-{d}").counters.write_calls for d in range(destinations)
        )
        read_calls = source.counters.total_calls
        finite = [x for x in latencies if x != float("inf")]
        return {
            "changes": changes,
            "seconds": finished - started,
            "ingest_seconds": ingested - started,
            "changes_per_s": changes / (finished - started),
            "write_calls": write_calls,
            "naive_calls": changes * destinations,
            "write_ratio": write_calls / (changes * destinations),
            "source_calls": read_calls,
            "p50_ms": 1000 * statistics.median(finite),
            "p99_ms": 1000 * percentile(finite, 99),
            "unmatched": len(latencies) - len(finite),
        }
    finally:
        await db.dispose()
        if db_name:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--variants", type=int, default=1_000)
    parser.add_argument("--destinations", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    for backend in backends:
        r = asyncio.run(run(backend, args.changes, args.variants, args.destinations, args.seed))
        print(
            f"{backend:8s} {r['changes']} changes in {r['seconds']:.1f} s "
            f"(ingest {r['ingest_seconds']:.1f} s): {r['changes_per_s']:.0f} changes/s; "
            f"destination write calls {r['write_calls']:.0f} = {100 * r['write_ratio']:.2f}% of "
            f"{r['naive_calls']:.0f} naive; source calls {r['source_calls']:.0f}; "
            f"change -> all destinations p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms"
            + (f"; {r['unmatched']:.0f} unmatched" if r["unmatched"] else "")
        )


if __name__ == "__main__":
    main()
