"""Shopify propagation: source changes fanned out to destinations on the Shopify sandbox.

One source shop with a seeded catalog of ``--variants`` variants (one location), imported by
stocksync into ``--destinations`` destination shops, every shop on the same plan (Standard by
default: the sandbox's ``standard`` plan restores 100 points per second into a 2,000-point
bucket, as documented in ``stocksync.sandbox.ratelimit``) and answering every API call after
``--latency-ms`` (the sandbox's ``latency_ms`` fault). A driver then makes ``--rate`` source
inventory changes per second for ``--seconds`` seconds (seeded: the variant and a delta of
-3..+3, never a no-op), and the benchmark measures how long each change takes to reach every
destination.

How it runs
- The sandbox is served from this process (``serve_in_task``), so that the driver and the
  measurement see its state directly. stocksync runs as an operator runs it: ``stocksync
  serve --no-worker`` and ``stocksync worker`` as separate processes, with the product's
  default settings, on SQLite in a temporary directory (``--database-url postgresql://...``:
  a fresh database on that server, dropped afterwards). This process only installs the stores
  with their admin tokens, connects the destinations with the source's key and imports the
  catalog into the destinations at once (what ``stocksync store add``, ``connect`` and
  ``import`` do), then waits until every destination shows the source's levels, the sandbox
  has delivered every webhook and the engine has nothing pending. The rate
  limits are not enforced during that preparation (importing 2,000 variants into a shop on
  the Standard plan takes minutes); they are from the first change on, every bucket full.
- The driver changes the source's levels on the sandbox's state, not through its Admin API:
  50 changes per second through ``inventoryAdjustQuantities`` would cost 500 points per
  second, five times what the Standard plan restores, and one app's bucket per shop is what
  stocksync is given; a shop's own sales and stock moves do not spend an app's points. Each
  change still produces the ``inventory_levels/update`` webhook Shopify sends. So every
  request and cost point the sandbox counts during the run is stocksync's (or the naive
  consumer's): the driver and the measurement make no API calls.
- Webhooks go out as the sandbox sends them, at most 16 deliveries on the wire at once; the
  time each delivery waits and takes is reported: when the receiver answers more slowly than
  webhooks arrive, deliveries queue and that queue is part of the latency.
- The naive strategy, run afterwards on a fresh sandbox with the same seed, conditions and
  change stream: a consumer written here (not product code) receives the source's
  ``inventory_levels/update`` webhooks over HTTP and, for each change and each destination,
  reads the source item's current level (one call) and sets it on the destination (one
  call), in arrival order with four workers per destination, waiting out the cost bucket as
  the throttle status tells it. Its destinations start with the same catalog and levels,
  created on the sandbox's state. It is stopped when the driver stops; what it has not done
  by then is its backlog.

What is measured
- Propagation latency: each destination shop's ``emit`` is wrapped, so that every change of
  a destination level is timestamped (on this process's monotonic clock, the clock the driver
  timestamps its changes with) at the moment the sandbox applies the write. A change is
  propagated to a destination at the first instant that destination shows the level of that
  change or of a later change of the same variant (a destination already showing it needs
  no write, and one whose level comes back to it, the source having returned to that level,
  counts too: the destination is then right); its latency is the largest over the
  destinations. A change never shown everywhere is unpropagated. stocksync is given
  ``--drain-seconds`` after the driver stops to finish; the backlog at the driver's stop
  counts the changes not yet shown everywhere.
- API calls and cost points: the sandbox's per-shop counters (requests served, points spent,
  throttled answers) from the driver's first change until stocksync has settled (every
  destination equal to the source and nothing pending), or until the naive consumer is
  stopped. Calls include throttled answers; the ratios below use calls that were executed,
  which is the conservative choice (the naive consumer is throttled far more often).
- The naive strategy does not finish the stream in the time given, so its spending for the
  whole stream is its measured spending per (change, destination) it completed, times the
  changes and destinations of the stream; the ratio stocksync/naive is taken against that,
  and against what the naive consumer actually spent in its run.

Usage: .venv/bin/python bench/shopify_propagation.py [--seconds 200] [--rate 50]
       [--variants 2000] [--destinations 5] [--latency-ms 50] [--seed 1]
       [--strategy both|stocksync|naive] [--database-url postgresql://...]
       [--drain-seconds 120] [--plan standard] [--setting NAME=VALUE ...]
(``--setting`` passes a stocksync setting to its processes, e.g. ``flush_debounce_ms=1000``.)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engine_throughput import first_shown, percentile
from stocksync.bootstrap import App, build_app
from stocksync.config import Settings
from stocksync.demo_shopify import (
    Processes,
    install,
    outstanding,
    shops_from_manifest,
    start_web,
    start_worker,
    stocksync_env,
    wait_ready,
)
from stocksync.engine.catalog import import_products
from stocksync.engine.stores import connect, show_key
from stocksync.sandbox import Sandbox, SeedSpec, seed_shop, serve_in_task
from stocksync.sandbox.oauth import AppConfig
from stocksync.sandbox.state import Shop
from stocksync.storage.migrate import upgrade_async
from stocksync.web.install import WEBHOOK_PATH

SOURCE = "source"
VARIANTS_PER_PRODUCT = 10
DELTAS = (-3, -2, -1, 1, 2, 3)
NAIVE_WORKERS = 4  # per destination
NAIVE_API_VERSION = "2025-01"
SETUP_TIMEOUT = 900.0
# The product's defaults: the demo's environment makes them snappier, a benchmark must not.
PRODUCT_DEFAULTS = ("job_poll_seconds", "flush_debounce_ms", "sale_grace_seconds")


def dest_name(d: int) -> str:
    return f"dest-{d}"


# --- the sandbox ------------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float
    rate: float
    variants: int
    destinations: int
    latency_ms: float
    seed: int
    plan: str
    drain_seconds: float
    database_url: str | None
    settings: dict[str, str]

    @property
    def changes(self) -> int:
        return round(self.seconds * self.rate)


def build_sandbox(opts: Options, app_secret: str) -> Sandbox:
    """The source seeded with the catalog; the destinations empty. Same seed, same ids."""
    sandbox = Sandbox(seed=opts.seed, app=AppConfig(client_secret=app_secret))
    faults = {"latency_ms": opts.latency_ms}
    source = sandbox.create_shop(SOURCE, locations=["Warehouse"], plan=opts.plan, faults=faults)
    seed_shop(
        source,
        SeedSpec(
            products=opts.variants // VARIANTS_PER_PRODUCT,
            variants=VARIANTS_PER_PRODUCT,
            seed=opts.seed + 1,
            hidden_ratio=0.0,
            untracked_ratio=0.0,
        ),
    )
    for d in range(opts.destinations):
        sandbox.create_shop(dest_name(d), locations=["Warehouse"], plan=opts.plan, faults=faults)
    return sandbox


def only_location(shop: Shop) -> int:
    return shop.active_locations()[0].id


def source_items(shop: Shop) -> list[int]:
    """The source's inventory items in a stable order (the change stream indexes them)."""
    return sorted(v.inventory_item_id for v in shop.variants.values())


def items_by_sku(shop: Shop) -> dict[str, int]:
    return {v.sku: v.inventory_item_id for v in shop.variants.values() if v.sku}


@dataclass
class ShopCounters:
    requests: int
    points: float
    throttled: int

    @staticmethod
    def of(sandbox: Sandbox, name: str) -> ShopCounters:
        stats = sandbox.stats_of(sandbox.shop(name))
        return ShopCounters(stats.requests, stats.points_spent, stats.throttled)

    def minus(self, other: ShopCounters) -> ShopCounters:
        return ShopCounters(
            self.requests - other.requests,
            self.points - other.points,
            self.throttled - other.throttled,
        )


def counters(sandbox: Sandbox) -> dict[str, ShopCounters]:
    return {name: ShopCounters.of(sandbox, name) for name in sandbox.runtimes}


# --- the change stream and its observation ----------------------------------------------------


def change_stream(opts: Options, start_levels: Sequence[int]) -> list[tuple[int, int]]:
    """(item index, new level) for every change, from the seed and the starting levels."""
    rng = random.Random(opts.seed)
    levels = list(start_levels)
    stream: list[tuple[int, int]] = []
    for _ in range(opts.changes):
        index = rng.randrange(len(levels))
        value = max(0, levels[index] + rng.choice(DELTAS))
        if value == levels[index]:
            value += 1
        levels[index] = value
        stream.append((index, value))
    return stream


class Observer:
    """Timestamps every change of a destination's level, keyed by the source item; times
    how long the webhooks' receiver takes to answer each delivery."""

    def __init__(self) -> None:
        self.writes: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
        self.start_levels: dict[tuple[int, int], int] = {}
        self.deliveries: list[float] = []
        self.level_reads: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # calls, levels

    def count_level_reads(self, sandbox: Sandbox) -> None:
        """Queries that read inventory levels, per shop (the sandbox remembers each one)."""
        remember = sandbox.remember_reads

        def counted(shop: Shop, levels: list[tuple[int, int]]) -> None:
            entry = self.level_reads[shop.name]
            entry[0] += 1
            entry[1] += len(levels)
            remember(shop, levels)

        sandbox.remember_reads = counted  # type: ignore[method-assign]

    def reads_summary(self) -> str:
        return "level reads (calls/levels): " + ", ".join(
            f"{name} {calls:,}/{levels:,}"
            for name, (calls, levels) in sorted(self.level_reads.items())
        )

    def time_deliveries(self, sandbox: Sandbox) -> None:
        dispatcher = sandbox.webhooks
        post = dispatcher._post

        async def timed(delivery: Any) -> int | None:
            started = time.monotonic()
            try:
                return await post(delivery)
            finally:
                self.deliveries.append(time.monotonic() - started)

        dispatcher._post = timed  # type: ignore[method-assign]

    def delivery_summary(self) -> str:
        d = self.deliveries
        if not d:
            return "no webhook delivered"
        return (
            f"{len(d):,} webhook deliveries answered in p50 {1000 * statistics.median(d):.0f} ms, "
            f"p99 {1000 * percentile(d, 99):.0f} ms, max {1000 * max(d):.0f} ms"
        )

    def watch(self, d: int, shop: Shop, source_item_of: dict[int, int]) -> None:
        location = only_location(shop)
        for dest_item, src_item in source_item_of.items():
            level = shop.level(dest_item, location)
            self.start_levels[(d, src_item)] = level.available if level else 0
        emit = shop.emit

        def observed(topic: str, payload: dict[str, Any]) -> None:
            if topic == "inventory_levels/update" and payload.get("location_id") == location:
                src_item = source_item_of.get(int(payload["inventory_item_id"]))
                if src_item is not None:
                    self.writes[(d, src_item)].append((time.monotonic(), int(payload["available"])))
            emit(topic, payload)

        shop.emit = observed


def dest_mappings(sandbox: Sandbox, destinations: int) -> list[dict[int, int]]:
    """Per destination: destination item -> source item (by SKU)."""
    source = items_by_sku(sandbox.shop(SOURCE))
    out = []
    for d in range(destinations):
        dest = items_by_sku(sandbox.shop(dest_name(d)))
        out.append({dest[sku]: source[sku] for sku in dest if sku in source})
    return out


def level_pairs(sandbox: Sandbox, mappings: list[dict[int, int]]) -> list[tuple[Any, Any]]:
    """(source level, destination level) of every linked variant: the sandbox keeps these
    objects for the life of the level, so comparing them later is cheap."""
    source = sandbox.shop(SOURCE)
    src_loc = only_location(source)
    pairs = []
    for d, mapping in enumerate(mappings):
        shop = sandbox.shop(dest_name(d))
        loc = only_location(shop)
        for dest_item, src_item in mapping.items():
            pairs.append((source.level(src_item, src_loc), shop.level(dest_item, loc)))
    return pairs


def differing(pairs: list[tuple[Any, Any]]) -> int:
    """How many destination levels differ from their source's."""
    return sum(
        1
        for src, dst in pairs
        if dst is None or src is None or dst.available != max(0, src.available)
    )


async def drive(
    sandbox: Sandbox, opts: Options, items: list[int], stream: list[tuple[int, int]]
) -> tuple[dict[int, list[tuple[float, int]]], float, float]:
    """Apply the stream to the source at ``--rate`` per second; returns each item's changes
    (time, level), the driver's end, and its largest lag behind schedule."""
    source = sandbox.shop(SOURCE)
    location = only_location(source)
    history: dict[int, list[tuple[float, int]]] = defaultdict(list)
    started = time.monotonic()
    worst_lag = 0.0
    for k, (index, value) in enumerate(stream):
        due = started + k / opts.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the driver at --rate
        item = items[index]
        level = source.level(item, location)
        assert level is not None
        source.change_level(level, "available", value - level.available)
        now = time.monotonic()
        worst_lag = max(worst_lag, now - due)
        history[item].append((now, value))
    return history, time.monotonic(), worst_lag


@dataclass
class Latencies:
    values: list[float]  # seconds, inf when never shown everywhere
    backlog_at_stop: int  # changes not shown everywhere when the driver stopped

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values if v != math.inf]

    @property
    def unpropagated(self) -> int:
        return len(self.values) - len(self.finite)

    def summary(self) -> str:
        done = self.finite
        if not done:
            return "no change propagated"
        return (
            f"p50 {statistics.median(done):.2f} s, p95 {percentile(done, 95):.2f} s, "
            f"p99 {percentile(done, 99):.2f} s, max {max(done):.2f} s "
            f"({len(done)} of {len(self.values)} changes propagated)"
        )


def latencies(
    history: dict[int, list[tuple[float, int]]], observer: Observer, destinations: int, stop: float
) -> Latencies:
    values: list[float] = []
    backlog = 0
    for item, changes in history.items():
        for i, (t_change, _value) in enumerate(changes):
            worst = 0.0
            for d in range(destinations):
                seen = first_shown(
                    changes[i:],
                    observer.start_levels[(d, item)],
                    observer.writes.get((d, item), []),
                )
                if seen is None:
                    worst = math.inf
                    break
                worst = max(worst, seen - t_change)
            values.append(worst)
            if t_change + worst > stop:
                backlog += 1
    return Latencies(values, backlog)


# --- CPU of the processes ---------------------------------------------------------------------


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU of a process (this one by default), from /proc."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# --- stocksync --------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    latencies: Latencies
    spent: dict[str, ShopCounters]
    window: float  # seconds over which the counters were taken
    notes: list[str] = field(default_factory=list)
    # the naive consumer only: (change, destination) pairs completed, and left at the stop
    completed: int | None = None
    backlog_pairs: int | None = None

    @property
    def calls(self) -> int:
        return sum(c.requests - c.throttled for c in self.spent.values())

    @property
    def calls_with_throttled(self) -> int:
        return sum(c.requests for c in self.spent.values())

    @property
    def throttled(self) -> int:
        return sum(c.throttled for c in self.spent.values())

    @property
    def points(self) -> float:
        return sum(c.points for c in self.spent.values())


@contextlib.asynccontextmanager
async def database(url: str | None, data_dir: Path) -> Any:
    """The database stocksync uses: SQLite in ``data_dir``, or a fresh PostgreSQL database on
    the server of ``url``, dropped afterwards."""
    if not url or url.startswith("sqlite"):
        yield url or f"sqlite:///{data_dir / 'stocksync.db'}"
        return
    parsed = make_url(url.replace("postgresql+psycopg://", "postgresql://"))
    name = f"stocksync_bench_{uuid.uuid4().hex[:8]}"
    admin_url = parsed.render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def product_settings(
    data_dir: Path, database_url: str, app_secret: str, extra: dict[str, str]
) -> tuple[dict[str, str], Settings]:
    """stocksync's environment with the product's defaults (plus ``--setting`` overrides)."""
    env, settings = stocksync_env(data_dir, database_url, app_secret)
    for name in PRODUCT_DEFAULTS:
        env.pop(f"STOCKSYNC_{name.upper()}", None)
    updates: dict[str, Any] = {n: Settings.model_fields[n].default for n in PRODUCT_DEFAULTS}
    for name, value in extra.items():
        env[f"STOCKSYNC_{name.upper()}"] = value
        updates[name] = value
    # Validated as the processes will validate them from their environment.
    settings = Settings.model_validate({**settings.model_dump(), **updates})
    return env, settings


async def setup_stocksync(
    app: App, sandbox: Sandbox, hook: str, destinations: int, log: Callable[[str], None]
) -> None:
    shops = shops_from_manifest(sandbox.manifest())
    source_id, _ = await install(app, shops[SOURCE], "source", hook)
    connection_ids: list[int] = []
    for d in range(destinations):
        dest_id, dest_locations = await install(app, shops[dest_name(d)], "destination", hook)
        async with app.db.begin() as conn:
            key = await show_key(conn, app.vault, source_id)
            record = await connect(
                app.runtime,
                conn,
                destination_store_id=dest_id,
                key=key,
                receiving_location=dest_locations[0],
            )
        connection_ids.append(record.id)

    async def import_into(d: int, connection_id: int) -> None:
        started = time.monotonic()
        report = await import_products(app.runtime, connection_id)
        log(
            f"  {dest_name(d)}: imported {len(report.products)} products, "
            f"{report.linked_variants} variants in {time.monotonic() - started:.0f} s"
        )

    # As merchants of several destinations would, each on their own.
    await asyncio.gather(*(import_into(d, c) for d, c in enumerate(connection_ids)))


async def settle(
    app: App,
    sandbox: Sandbox,
    mappings: list[dict[int, int]],
    procs: Processes,
    within: float,
) -> bool:
    """Wait until every destination shows the source's levels, the sandbox has delivered
    every webhook (the import's echoes too, or they would be queued ahead of the run's), and
    the engine has nothing pending."""
    deadline = time.monotonic() + within
    pairs = level_pairs(sandbox, mappings)
    while time.monotonic() < deadline:
        procs.check()
        if any(dst is None for _, dst in pairs):  # a level the import has not stocked yet
            pairs = level_pairs(sandbox, mappings)
        if not differing(pairs) and not sandbox.webhooks.tasks and not await outstanding(app):
            return True
        await asyncio.sleep(0.25)  # polling the stores and the engine's tables
    return False


async def run_stocksync(opts: Options, log: Callable[[str], None]) -> Result:
    data_dir = Path(tempfile.mkdtemp(prefix="stocksync-bench-shopify-"))
    procs = Processes(data_dir)
    app_secret = secrets.token_urlsafe(24)
    sandbox = build_sandbox(opts, app_secret)
    async with database(opts.database_url, data_dir) as database_url:
        env, settings = product_settings(data_dir, database_url, app_secret, opts.settings)
        shown = make_url(database_url).render_as_string(hide_password=True)
        log(f"stocksync: database {shown}, logs in {data_dir}")
        await upgrade_async(settings.resolved_database_url)
        app = build_app(settings)
        try:
            async with serve_in_task(sandbox) as running, httpx.AsyncClient() as http:
                web_url = start_web(procs, env)
                start_worker(procs, env)
                await wait_ready(http, f"{web_url}/readyz", procs)
                log(f"  sandbox at {running.url}, stocksync at {web_url}")
                started = time.monotonic()
                # The import is preparation, not what is measured: the plan's limits are
                # enforced from the first change on (every bucket is full then).
                sandbox.set_throttling(False)
                await setup_stocksync(app, sandbox, web_url + WEBHOOK_PATH, opts.destinations, log)
                mappings = dest_mappings(sandbox, opts.destinations)
                linked = sum(len(m) for m in mappings)
                if linked != opts.variants * opts.destinations:
                    raise RuntimeError(f"{linked} variants linked, expected {opts.variants} each")
                if not await settle(app, sandbox, mappings, procs, SETUP_TIMEOUT):
                    raise RuntimeError("the destinations did not reach the source's levels")
                await asyncio.sleep(3.0)  # the import's last echoes, before counting
                sandbox.set_throttling(True)
                log(f"  set up in {time.monotonic() - started:.0f} s; driving")
                return await measure_stocksync(opts, app, sandbox, mappings, procs, log)
        finally:
            procs.stop()
            await app.close()


async def measure_stocksync(
    opts: Options,
    app: App,
    sandbox: Sandbox,
    mappings: list[dict[int, int]],
    procs: Processes,
    log: Callable[[str], None],
) -> Result:
    source = sandbox.shop(SOURCE)
    items = source_items(source)
    location = only_location(source)
    start_levels = [lv.available if (lv := source.level(i, location)) else 0 for i in items]
    stream = change_stream(opts, start_levels)
    observer = Observer()
    for d, mapping in enumerate(mappings):
        observer.watch(d, sandbox.shop(dest_name(d)), mapping)
    observer.time_deliveries(sandbox)
    observer.count_level_reads(sandbox)
    pids = {name: process.pid for name, process, _ in procs.running}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"bench": cpu_seconds()}
    before = counters(sandbox)
    started = time.monotonic()
    history, stopped, lag = await drive(sandbox, opts, items, stream)
    log(f"  driver done in {stopped - started:.1f} s (largest lag {lag * 1000:.0f} ms); draining")
    settled = await settle(app, sandbox, mappings, procs, opts.drain_seconds)
    ended = time.monotonic()
    spent = {n: c.minus(before[n]) for n, c in counters(sandbox).items()}
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["bench"] = cpu_seconds() - cpu_before["bench"]
    result = Result(
        "stocksync",
        latencies(history, observer, opts.destinations, stopped),
        spent,
        ended - started,
    )
    result.notes.append(
        f"settled {ended - stopped:.1f} s after the driver stopped"
        if settled
        else f"NOT settled {opts.drain_seconds:.0f} s after the driver stopped "
        f"({differing(level_pairs(sandbox, mappings))} levels differ, "
        f"{len(sandbox.webhooks.tasks)} webhooks undelivered, {await outstanding(app)} rows "
        "pending)"
    )
    result.notes.append(observer.reads_summary())
    result.notes.append(observer.delivery_summary())
    result.notes.append(
        "CPU seconds over the run: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
    )
    return result


# --- the naive consumer -----------------------------------------------------------------------

NAIVE_READ = """
query($id: ID!, $location: ID!) {
  inventoryItem(id: $id) {
    inventoryLevel(locationId: $location) { quantities(names: ["available"]) { quantity } }
  }
}"""
NAIVE_WRITE = """
mutation($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) { userErrors { code message } }
}"""
READ_COST, WRITE_COST = 3.0, 10.0


class Pacer:
    """Waits before a call until the shop's bucket should hold its cost, as the last
    ``throttleStatus`` tells, and after a THROTTLED answer until it does."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.available: float | None = None
        self.rate = 0.0
        self.at = 0.0

    def estimate(self) -> float | None:
        if self.available is None:
            return None
        return self.available + (time.monotonic() - self.at) * self.rate

    async def acquire(self, cost: float) -> None:
        async with self.lock:
            available = self.estimate()
            if available is not None and available < cost and self.rate > 0:
                await asyncio.sleep((cost - available) / self.rate)  # the bucket's refill
                available = cost
            if available is not None:
                self.available, self.at = available - cost, time.monotonic()

    def update(self, status: dict[str, Any]) -> None:
        self.available = float(status["currentlyAvailable"])
        self.rate = float(status["restoreRate"])
        self.at = time.monotonic()


class NaiveConsumer:
    def __init__(
        self,
        sandbox: Sandbox,
        http: httpx.AsyncClient,
        mappings: list[dict[int, int]],
        app_secret: str,
    ) -> None:
        self.sandbox = sandbox
        self.http = http
        self.secret = app_secret
        self.source_location = only_location(sandbox.shop(SOURCE))
        # source item -> destination item, per destination (the naive app's SKU mapping)
        self.targets = [{s: t for t, s in m.items()} for m in mappings]
        self.dest_locations = [
            only_location(sandbox.shop(dest_name(d))) for d in range(len(mappings))
        ]
        self.queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in mappings]
        self.pacers = {name: Pacer() for name in sandbox.runtimes}
        self.in_flight = 0
        self.completed = 0
        self.stopping = False
        self.idle = asyncio.Event()  # set when stopping and no call is under way

    def app(self) -> Starlette:
        async def webhook(request: Request) -> Response:
            body = await request.body()
            expected = base64.b64encode(
                hmac.new(self.secret.encode(), body, hashlib.sha256).digest()
            ).decode()
            if not hmac.compare_digest(expected, request.headers.get("x-shopify-hmac-sha256", "")):
                return Response(status_code=401)
            payload = json.loads(body)
            if int(payload["location_id"]) == self.source_location:
                for queue in self.queues:
                    queue.put_nowait(int(payload["inventory_item_id"]))
            return Response(status_code=200)

        return Starlette(routes=[Route("/webhooks", webhook, methods=["POST"])])

    async def call(self, shop: str, query: str, variables: dict[str, Any], cost: float) -> Any:
        runtime = self.sandbox.runtimes[shop]
        url = self.sandbox.graphql_url(runtime.shop, NAIVE_API_VERSION)
        pacer = self.pacers[shop]
        while True:
            await pacer.acquire(cost)
            response = await self.http.post(
                url,
                json={"query": query, "variables": variables},
                headers={"X-Shopify-Access-Token": runtime.shop.access_token},
            )
            response.raise_for_status()
            answer = response.json()
            status = (answer.get("extensions") or {}).get("cost", {}).get("throttleStatus")
            if status:
                pacer.update(status)
            errors = answer.get("errors") or []
            if any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors):
                continue  # the pacer now knows the bucket's level and waits for it
            if errors:
                raise RuntimeError(f"{shop}: {errors}")
            return answer["data"]

    async def worker(self, d: int) -> None:
        queue = self.queues[d]
        location_gid = f"gid://shopify/Location/{self.dest_locations[d]}"
        source_location = f"gid://shopify/Location/{self.source_location}"
        while not self.stopping:
            item = await queue.get()
            self.in_flight += 1
            data = await self.call(
                SOURCE,
                NAIVE_READ,
                {"id": f"gid://shopify/InventoryItem/{item}", "location": source_location},
                READ_COST,
            )
            level = data["inventoryItem"]["inventoryLevel"]["quantities"][0]["quantity"]
            target = self.targets[d][item]
            data = await self.call(
                dest_name(d),
                NAIVE_WRITE,
                {
                    "input": {
                        "name": "available",
                        "reason": "correction",
                        "ignoreCompareQuantity": True,
                        "quantities": [
                            {
                                "inventoryItemId": f"gid://shopify/InventoryItem/{target}",
                                "locationId": location_gid,
                                "quantity": max(0, int(level)),
                            }
                        ],
                    }
                },
                WRITE_COST,
            )
            if data["inventorySetQuantities"]["userErrors"]:
                raise RuntimeError(f"{dest_name(d)}: {data['inventorySetQuantities']}")
            self.in_flight -= 1
            self.completed += 1
            if self.stopping and not self.in_flight:
                self.idle.set()

    @property
    def backlog(self) -> int:
        return sum(q.qsize() for q in self.queues) + self.in_flight


def copy_catalog(sandbox: Sandbox, destinations: int) -> None:
    """The naive consumer's destinations: the source's catalog and levels, on the state."""
    source = sandbox.shop(SOURCE)
    src_loc = only_location(source)
    for d in range(destinations):
        shop = sandbox.shop(dest_name(d))
        loc = only_location(shop)
        for product in list(source.products.values()):
            variants = []
            for vid in product.variant_ids:
                variant = source.variants[vid]
                level = source.level(variant.inventory_item_id, src_loc)
                variants.append(
                    {
                        "sku": variant.sku,
                        "price": variant.price,
                        "option_values": variant.option_values,
                        "quantities": {loc: level.available if level else 0},
                    }
                )
            shop.create_product(title=product.title, variants=variants, emit=False)


@contextlib.asynccontextmanager
async def serve_app(app: Starlette) -> Any:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("the naive consumer's receiver did not start")
        await asyncio.sleep(0.01)  # waiting for the receiver to listen
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def run_naive(opts: Options, log: Callable[[str], None]) -> Result:
    app_secret = secrets.token_urlsafe(24)
    sandbox = build_sandbox(opts, app_secret)
    copy_catalog(sandbox, opts.destinations)
    mappings = dest_mappings(sandbox, opts.destinations)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with (
        serve_in_task(sandbox),
        httpx.AsyncClient(limits=limits, timeout=60.0, trust_env=False) as http,
    ):
        consumer = NaiveConsumer(sandbox, http, mappings, app_secret)
        async with serve_app(consumer.app()) as receiver:
            source = sandbox.shop(SOURCE)
            sandbox.webhooks.subscribe(
                source, "INVENTORY_LEVELS_UPDATE", receiver + "/webhooks", NAIVE_API_VERSION
            )
            items = source_items(source)
            location = only_location(source)
            start_levels = [lv.available if (lv := source.level(i, location)) else 0 for i in items]
            stream = change_stream(opts, start_levels)
            observer = Observer()
            for d, mapping in enumerate(mappings):
                observer.watch(d, sandbox.shop(dest_name(d)), mapping)
            observer.time_deliveries(sandbox)
            workers = [
                asyncio.create_task(consumer.worker(d))
                for d in range(opts.destinations)
                for _ in range(NAIVE_WORKERS)
            ]
            cpu_before = cpu_seconds()
            before = counters(sandbox)
            started = time.monotonic()
            history, stopped, lag = await drive(sandbox, opts, items, stream)
            spent = {n: c.minus(before[n]) for n, c in counters(sandbox).items()}
            backlog, completed = consumer.backlog, consumer.completed
            cpu = cpu_seconds() - cpu_before
            measured = latencies(history, observer, opts.destinations, stopped)
            # Calls under way finish (uncounted) rather than being cut off mid-request.
            consumer.stopping = True
            if consumer.in_flight:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(consumer.idle.wait(), 15.0)
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for task in workers:
                if not task.cancelled() and task.exception() is not None:
                    raise RuntimeError("a naive worker failed") from task.exception()
    log(f"  driver done in {stopped - started:.1f} s (largest lag {lag * 1000:.0f} ms)")
    result = Result(
        "naive",
        measured,
        spent,
        stopped - started,
        completed=completed,
        backlog_pairs=backlog,
    )
    result.notes.append(observer.delivery_summary())
    result.notes.append(f"CPU seconds over the run: bench (sandbox, driver, consumer) {cpu:.1f}")
    return result


# --- report -----------------------------------------------------------------------------------


def report(opts: Options, result: Result) -> None:
    lat = result.latencies
    print(f"\n{result.name}: {lat.summary()}")
    print(
        f"  unpropagated at the end: {lat.unpropagated}; not yet shown everywhere when the "
        f"driver stopped: {lat.backlog_at_stop}"
    )
    if result.backlog_pairs is not None:
        print(
            f"  (change, destination) pairs done: {result.completed}, left at the stop "
            f"(queued or in flight): {result.backlog_pairs}"
        )
    print(
        f"  over {result.window:.1f} s: {result.calls:,} API calls executed "
        f"(+{result.throttled:,} throttled), {result.points:,.0f} cost points"
    )
    for name, c in result.spent.items():
        print(
            f"    {name:8s} {c.requests - c.throttled:6,} calls (+{c.throttled:,} throttled) "
            f"{c.points:9,.0f} points"
        )
    for note in result.notes:
        print(f"  {note}")


def compare(opts: Options, ours: Result, naive: Result) -> None:
    pairs = naive.completed or 0
    full = opts.changes * opts.destinations
    print("\nstocksync / naive")
    if pairs:
        per_calls = naive.calls / pairs
        per_points = naive.points / pairs
        naive_calls = per_calls * full
        naive_points = per_points * full
        print(
            f"  naive per (change, destination): {per_calls:.2f} calls, {per_points:.2f} points; "
            f"for the whole stream ({full:,} pairs): {naive_calls:,.0f} calls, "
            f"{naive_points:,.0f} points"
        )
        print(
            f"  calls:  {ours.calls:,} / {naive_calls:,.0f} = "
            f"{100 * ours.calls / naive_calls:.2f} %"
            f"  (against what naive spent in its run: "
            f"{100 * ours.calls / max(1, naive.calls):.1f} %)"
        )
        print(
            f"  points: {ours.points:,.0f} / {naive_points:,.0f} = "
            f"{100 * ours.points / naive_points:.2f} %"
            f"  (against what naive spent in its run: "
            f"{100 * ours.points / max(1.0, naive.points):.1f} %)"
        )
    done = ours.latencies.finite
    if done:
        p50, p99 = statistics.median(done), percentile(done, 99)
        print("acceptance")
        print(f"  p50 {p50:.2f} s <= 2 s: {'holds' if p50 <= 2 else 'MISSED'}")
        print(f"  p99 {p99:.2f} s <= 5 s: {'holds' if p99 <= 5 else 'MISSED'}")
        if ours.latencies.unpropagated:
            print(f"  {ours.latencies.unpropagated} changes unpropagated: MISSED")
        if pairs:
            calls_ratio = ours.calls / (naive.calls / pairs * full)
            points_ratio = ours.points / (naive.points / pairs * full)
            for what, ratio in (("calls", calls_ratio), ("points", points_ratio)):
                verdict = "holds" if ratio <= 0.02 else "MISSED"
                print(f"  {what} {100 * ratio:.2f} % <= 2 %: {verdict}")


def parse_settings(values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in values:
        name, eq, value = text.partition("=")
        if not eq or name.lower() not in Settings.model_fields:
            raise SystemExit(f"--setting expects NAME=VALUE with a stocksync setting, got {text!r}")
        out[name.lower()] = value
    return out


def run_arguments(
    parser: argparse.ArgumentParser, *, seconds: float, rate: float, rate_help: str
) -> None:
    """The arguments every Shopify sandbox run takes (this benchmark's and the flash sale's)."""
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--rate", type=float, default=rate, help=rate_help)
    parser.add_argument("--variants", type=int, default=2000)
    parser.add_argument("--destinations", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plan", default="standard", help="the sandbox's plan for every shop")
    parser.add_argument(
        "--drain-seconds", type=float, default=120.0, help="stocksync's time to finish"
    )
    parser.add_argument(
        "--database-url", help="postgresql://... runs stocksync on a fresh database there"
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        help="a stocksync setting for its processes, NAME=VALUE (e.g. flush_debounce_ms=100)",
    )


def options_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Options:
    if args.variants % VARIANTS_PER_PRODUCT:
        parser.error(f"--variants must be a multiple of {VARIANTS_PER_PRODUCT}")
    return Options(
        seconds=args.seconds,
        rate=args.rate,
        variants=args.variants,
        destinations=args.destinations,
        latency_ms=args.latency_ms,
        seed=args.seed,
        plan=args.plan,
        drain_seconds=args.drain_seconds,
        database_url=args.database_url,
        settings=parse_settings(args.setting),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    run_arguments(parser, seconds=200.0, rate=50.0, rate_help="source changes per second")
    parser.add_argument("--strategy", choices=("both", "stocksync", "naive"), default="both")
    args = parser.parse_args()
    opts = options_from(parser, args)

    def log(line: str) -> None:
        print(line, flush=True)

    log(
        f"{opts.changes:,} source changes at {opts.rate:g}/s over {opts.variants:,} variants, "
        f"{opts.destinations} destinations, {opts.latency_ms:g} ms API latency, "
        f"plan {opts.plan}, seed {opts.seed}"
    )
    results: dict[str, Result] = {}
    if args.strategy in ("both", "stocksync"):
        results["stocksync"] = asyncio.run(run_stocksync(opts, log))
        report(opts, results["stocksync"])
    if args.strategy in ("both", "naive"):
        log("\nnaive: one read and one write per change per destination")
        results["naive"] = asyncio.run(run_naive(opts, log))
        report(opts, results["naive"])
    if len(results) == 2:
        compare(opts, results["stocksync"], results["naive"])


if __name__ == "__main__":
    main()
