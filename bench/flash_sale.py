"""Flash sale: paid orders on the destinations reaching the source and every other destination.

The stores are set up as in ``shopify_propagation.py`` (one source seeded with ``--variants``
variants at one location, imported by stocksync into ``--destinations`` destination shops,
every shop on the same plan and answering every API call after ``--latency-ms``; stocksync's
web and worker processes with the product's default settings, on SQLite or a fresh PostgreSQL
database). Then customers buy: ``--rate`` paid orders per second for ``--seconds`` seconds,
each of one variant (1 or 2 units, seeded) drawn from ``--hot`` variants, on a destination
drawn at random. Each order is a checkout on the destination's sandbox state, as Shopify
makes it: the destination's level goes down at once (its ``inventory_levels/update``), then
``orders/create`` and ``orders/paid`` go out. A checkout the destination refuses (it shows
fewer units than asked, policy DENY) is a sale that did not happen: counted, not measured.

What is measured
- Sale latency: for the k-th sale of a variant (``S_k`` units of it sold so far, this one
  included), the time from the checkout until the source and every destination other than
  the seller show at most ``start - S_k`` units of it (every store starts at the source's
  level, buffer 0, and nothing else changes the levels during the run). The seller shows it
  at once. Its largest value over those stores is the sale's latency; never shown: infinite.
- Re-opened stock: during the run every true change is a decrease, so every level that goes up
  is looked at. One raised above what the source still had at that instant (its start less
  every unit of the variant sold by then) shows sold stock for sale again (B24 wants none):
  counted, with the most units at once. One raised to no more than that corrects a level
  that was shown too low, and is counted apart.
- Source adjustment calls: adjustment groups recorded on the source (one per
  ``inventoryAdjustQuantities`` call), against the sales made; and the sandbox's counters
  (requests, points, throttled answers) per shop from the first sale until stocksync settled.
- Exactness at the end: the source at its starting level minus the units sold, and every
  destination equal to the source, for every variant.

Run ``shopify_propagation.py --strategy stocksync`` beside it in the same sitting to compare
source-change propagation (see bench/README.md).

Usage: .venv/bin/python bench/flash_sale.py [--seconds 60] [--rate 20] [--variants 2000]
       [--hot 200] [--destinations 5] [--latency-ms 50] [--seed 1] [--plan standard]
       [--database-url postgresql://...] [--drain-seconds 120] [--setting NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engine_throughput import percentile
from shopify_propagation import (
    SETUP_TIMEOUT,
    SOURCE,
    Options,
    build_sandbox,
    counters,
    cpu_seconds,
    database,
    dest_mappings,
    dest_name,
    only_location,
    options_from,
    product_settings,
    run_arguments,
    settle,
    setup_stocksync,
)
from stocksync.bootstrap import build_app
from stocksync.demo_shopify import Processes, start_web, start_worker, wait_ready
from stocksync.sandbox import Sandbox, serve_in_task
from stocksync.sandbox.state import AdjustmentGroup, Shop, ShopError
from stocksync.storage.migrate import upgrade_async
from stocksync.storage.tables import inbox, ledger, ledger_batches
from stocksync.web.install import WEBHOOK_PATH


@dataclass
class Sale:
    at: float
    destination: int
    sku: str
    units: int
    sold_before: int  # units of this SKU sold before this sale (all destinations)
    order_id: str = ""
    wall: float = 0.0  # ``at`` on the wall clock, which stocksync's records are kept in


class LevelLog:
    """Every level change of every watched store, per (store, SKU), timestamped on this
    process's monotonic clock when the sandbox applies it."""

    def __init__(self) -> None:
        self.changes: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
        self.start: dict[tuple[str, str], int] = {}

    def watch(self, shop: Shop) -> None:
        location = only_location(shop)
        sku_of = {v.inventory_item_id: v.sku for v in shop.variants.values() if v.sku}
        for item, sku in sku_of.items():
            level = shop.level(item, location)
            self.start[(shop.name, sku)] = level.available if level else 0
        emit = shop.emit

        def observed(topic: str, payload: dict[str, Any]) -> None:
            if topic == "inventory_levels/update" and payload.get("location_id") == location:
                sku = sku_of.get(int(payload["inventory_item_id"]))
                if sku is not None:
                    self.changes[(shop.name, sku)].append(
                        (time.monotonic(), int(payload["available"]))
                    )
            emit(topic, payload)

        shop.emit = observed

    def shown(self, store: str, sku: str, since: float, at_most: int) -> float | None:
        """The first instant at or after ``since`` when ``store`` shows at most ``at_most``."""
        changes = self.changes.get((store, sku), [])
        level = self.start[(store, sku)]
        k = 0
        while k < len(changes) and changes[k][0] < since:
            level = changes[k][1]
            k += 1
        if level <= at_most:
            return since
        for t, value in changes[k:]:
            if value <= at_most:
                return t
        return None

    def increases(self, sales: list[Sale]) -> tuple[int, int, int]:
        """Levels that went up, when every true change is a decrease: (re-opened, the most
        units re-opened at once, corrections). An increase to more than the source still has
        at that instant (its start less every unit of the variant sold by then) re-opens sold
        stock (B24); one to no more than that corrects a level shown too low."""
        sold_by: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for sale in sorted(sales, key=lambda x: x.at):
            before = sold_by[sale.sku][-1][1] if sold_by[sale.sku] else 0
            sold_by[sale.sku].append((sale.at, before + sale.units))
        reopened = largest = corrections = 0
        for (store, sku), changes in self.changes.items():
            level = self.start[(store, sku)]
            timeline = sold_by.get(sku, [])
            times = [t for t, _ in timeline]
            for t, value in changes:
                if value > level:
                    k = bisect.bisect_right(times, t)
                    # A checkout's own decrease is applied just before its sale is timed.
                    sold = timeline[k - 1][1] if k else 0
                    remaining = max(0, self.start[(SOURCE, sku)] - sold)
                    if value > remaining:
                        reopened += 1
                        largest = max(largest, value - remaining)
                    else:
                        corrections += 1
                level = value
        return reopened, largest, corrections


class AdjustCounter:
    """Adjustment groups recorded on the source: one per inventoryAdjustQuantities call."""

    def __init__(self, shop: Shop) -> None:
        self.calls = 0
        self.changes = 0
        record = shop.record_adjustment

        def counted(reason: str, uri: str | None, changes: list[Any]) -> AdjustmentGroup:
            self.calls += 1
            self.changes += len(changes)
            return record(reason, uri, changes)

        shop.record_adjustment = counted  # type: ignore[method-assign]


async def shop_sales(
    sandbox: Sandbox, opts: Options, hot: int, rng: random.Random
) -> tuple[list[Sale], int, float]:
    """Checkouts at ``opts.rate`` per second; returns the sales, refused checkouts and the
    driver's largest lag behind schedule."""
    source = sandbox.shop(SOURCE)
    skus = sorted(v.sku for v in source.variants.values() if v.sku)
    hot_skus = rng.sample(skus, min(hot, len(skus)))
    variant_of = [
        {v.sku: v.id for v in sandbox.shop(dest_name(d)).variants.values() if v.sku}
        for d in range(opts.destinations)
    ]
    sold: dict[str, int] = defaultdict(int)
    sales: list[Sale] = []
    refused = 0
    started = time.monotonic()
    worst_lag = 0.0
    for k in range(opts.changes):
        due = started + k / opts.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the customers at --rate
        d = rng.randrange(opts.destinations)
        sku = rng.choice(hot_skus)
        units = rng.choice((1, 1, 1, 2))
        shop = sandbox.shop(dest_name(d))
        try:
            order = shop.create_order(
                lines=[{"variant_id": variant_of[d][sku], "quantity": units}],
                financial_status="PAID",
                inventory_behaviour="DECREMENT_OBEYING_POLICY",
            )
        except ShopError:
            refused += 1  # the destination showed fewer units than asked: no sale
            continue
        now, wall = time.monotonic(), time.time()
        worst_lag = max(worst_lag, now - due)
        sales.append(Sale(now, d, sku, units, sold[sku], str(order.id), wall))
        sold[sku] += units
    return sales, refused, worst_lag


def sale_latencies(sales: list[Sale], log: LevelLog, destinations: int) -> list[float]:
    values: list[float] = []
    for sale in sales:
        stores = [SOURCE] + [dest_name(d) for d in range(destinations) if d != sale.destination]
        worst = 0.0
        for store in stores:
            at_most = log.start[(SOURCE, sale.sku)] - sale.sold_before - sale.units
            if store != SOURCE:
                at_most = max(0, at_most)  # a destination never shows less than 0
            seen = log.shown(store, sale.sku, sale.at, at_most)
            if seen is None:
                worst = math.inf
                break
            worst = max(worst, seen - sale.at)
        values.append(worst)
    return values


def shown_at(
    sales: list[Sale], log: LevelLog, destinations: int
) -> tuple[list[float], list[float]]:
    """Per sale: until the source shows it, and until every other destination does."""
    to_source: list[float] = []
    to_others: list[float] = []
    for sale in sales:
        at_most = log.start[(SOURCE, sale.sku)] - sale.sold_before - sale.units
        seen = log.shown(SOURCE, sale.sku, sale.at, at_most)
        to_source.append(math.inf if seen is None else seen - sale.at)
        worst = 0.0
        for d in range(destinations):
            if d == sale.destination:
                continue
            seen = log.shown(dest_name(d), sale.sku, sale.at, max(0, at_most))
            worst = math.inf if seen is None else max(worst, seen - sale.at)
        to_others.append(worst)
    return to_source, to_others


async def stages(app: Any, sales: list[Sale]) -> dict[str, list[float]]:
    """Where a sale's time goes, from stocksync's own records (its wall-clock timestamps):
    checkout -> order webhook recorded -> order event processed (its ledger row written) ->
    the row's batch recorded -> that batch applied on the source (the call returned)."""
    wall = {sale.order_id: sale.wall for sale in sales}
    out: dict[str, list[float]] = defaultdict(list)

    def seconds(value: datetime) -> float:
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        return aware.timestamp()

    async with app.db.connect() as conn:
        first: dict[str, tuple[float, float | None]] = {}
        for event, received, processed in await conn.execute(
            select(inbox.c.event, inbox.c.received_at, inbox.c.processed_at)
            .where(inbox.c.topic.in_(("orders/create", "orders/paid")))
            .order_by(inbox.c.id)
        ):
            order = (event or {}).get("data", {}).get("order", {}) if event else {}
            order_id = str(order.get("id", ""))
            if order_id in wall and order_id not in first:
                first[order_id] = (
                    seconds(received),
                    seconds(processed) if processed is not None else None,
                )
        for order_id, (received, processed) in first.items():
            out["checkout -> order webhook recorded"].append(received - wall[order_id])
            if processed is not None:
                out["order webhook recorded -> processed"].append(processed - received)
        for order_id, created, formed, applied in await conn.execute(
            select(
                ledger.c.order_id,
                ledger.c.created_at,
                ledger_batches.c.created_at,
                ledger_batches.c.applied_at,
            ).join(ledger_batches, ledger_batches.c.id == ledger.c.batch_id)
        ):
            if str(order_id) not in wall or created is None:
                continue
            out["ledger row -> its batch recorded"].append(seconds(formed) - seconds(created))
            if applied is not None:
                out["batch recorded -> applied (source call)"].append(
                    seconds(applied) - seconds(formed)
                )
    return out


def oversold(log: LevelLog, sales: list[Sale]) -> int:
    """Units sold beyond the source's starting stock (sold while a destination still showed
    units the source no longer had)."""
    sold: dict[str, int] = defaultdict(int)
    for sale in sales:
        sold[sale.sku] += sale.units
    return sum(max(0, units - log.start[(SOURCE, sku)]) for sku, units in sold.items())


def exactness(sandbox: Sandbox, log: LevelLog, sales: list[Sale], destinations: int) -> list[str]:
    """Every variant: source at start minus units sold, every destination equal to it."""
    sold: dict[str, int] = defaultdict(int)
    for sale in sales:
        sold[sale.sku] += sale.units
    wrong: list[str] = []
    source = sandbox.shop(SOURCE)
    location = only_location(source)
    for variant in source.variants.values():
        if not variant.sku:
            continue
        level = source.level(variant.inventory_item_id, location)
        expected = log.start[(SOURCE, variant.sku)] - sold[variant.sku]
        if level is None or level.available != expected:
            wrong.append(f"source {variant.sku}: {level and level.available}, expected {expected}")
    source_by_sku = {v.sku: v for v in source.variants.values() if v.sku}
    for d in range(destinations):
        shop = sandbox.shop(dest_name(d))
        dest_location = only_location(shop)
        for variant in shop.variants.values():
            src_variant = source_by_sku.get(variant.sku or "")
            if src_variant is None:
                continue
            src_level = source.level(src_variant.inventory_item_id, location)
            dst_level = shop.level(variant.inventory_item_id, dest_location)
            want = max(0, src_level.available) if src_level else None
            got = dst_level.available if dst_level else None
            if got != want:
                wrong.append(f"{shop.name} {variant.sku}: {got}, source {want}")
    return wrong


async def run(opts: Options, hot: int, log_line: Any) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="stocksync-bench-flash-"))
    procs = Processes(data_dir)
    app_secret = secrets.token_urlsafe(24)
    sandbox = build_sandbox(opts, app_secret)
    async with database(opts.database_url, data_dir) as database_url:
        env, settings = product_settings(data_dir, database_url, app_secret, opts.settings)
        shown = make_url(database_url).render_as_string(hide_password=True)
        log_line(f"stocksync: database {shown}, logs in {data_dir}")
        await upgrade_async(settings.resolved_database_url)
        app = build_app(settings)
        try:
            async with serve_in_task(sandbox) as running, httpx.AsyncClient() as http:
                web_url = start_web(procs, env)
                start_worker(procs, env)
                await wait_ready(http, f"{web_url}/readyz", procs)
                log_line(f"  sandbox at {running.url}, stocksync at {web_url}")
                started = time.monotonic()
                sandbox.set_throttling(False)  # the import is preparation, not measured
                await setup_stocksync(
                    app, sandbox, web_url + WEBHOOK_PATH, opts.destinations, log_line
                )
                mappings = dest_mappings(sandbox, opts.destinations)
                if not await settle(app, sandbox, mappings, procs, SETUP_TIMEOUT):
                    raise RuntimeError("the destinations did not reach the source's levels")
                await asyncio.sleep(3.0)  # the import's last echoes, before counting
                sandbox.set_throttling(True)
                log_line(f"  set up in {time.monotonic() - started:.0f} s; customers buying")

                levels = LevelLog()
                for name in [SOURCE] + [dest_name(d) for d in range(opts.destinations)]:
                    levels.watch(sandbox.shop(name))
                adjusts = AdjustCounter(sandbox.shop(SOURCE))
                pids = {name: process.pid for name, process, _ in procs.running}
                cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                before = counters(sandbox)
                began = time.monotonic()
                sales, refused, lag = await shop_sales(sandbox, opts, hot, random.Random(opts.seed))
                stopped = time.monotonic()
                log_line(
                    f"  {len(sales)} sales ({refused} checkouts refused, sold out) in "
                    f"{stopped - began:.1f} s (largest lag {lag * 1000:.0f} ms); draining"
                )
                settled = await settle(app, sandbox, mappings, procs, opts.drain_seconds)
                ended = time.monotonic()
                spent = {n: c.minus(before[n]) for n, c in counters(sandbox).items()}
                cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
                breakdown = await stages(app, sales)
                return report(
                    opts,
                    sandbox,
                    levels,
                    sales,
                    adjusts,
                    spent,
                    settled,
                    ended - stopped,
                    cpu,
                    breakdown,
                    log_line,
                )
        finally:
            procs.stop()
            await app.close()


def report(
    opts: Options,
    sandbox: Sandbox,
    levels: LevelLog,
    sales: list[Sale],
    adjusts: AdjustCounter,
    spent: dict[str, Any],
    settled: bool,
    drained: float,
    cpu: dict[str, float],
    breakdown: dict[str, list[float]],
    log_line: Any,
) -> int:
    values = sale_latencies(sales, levels, opts.destinations)
    done = [v for v in values if v != math.inf]
    if done:
        log_line(
            f"sale -> source and every other destination: p50 {statistics.median(done):.2f} s, "
            f"p95 {percentile(done, 95):.2f} s, p99 {percentile(done, 99):.2f} s, "
            f"max {max(done):.2f} s ({len(done)} of {len(values)} sales shown everywhere)"
        )
    else:
        log_line("no sale was shown everywhere")
    to_source, to_others = shown_at(sales, levels, opts.destinations)
    log_line("where a sale's time goes (median / p99 over the sales):")
    for name, figures in [
        *breakdown.items(),
        ("sale -> source shows it", to_source),
        ("sale -> every other destination shows it", to_others),
    ]:
        known = [v for v in figures if v != math.inf]
        if known:
            log_line(
                f"  {name}: {statistics.median(known):.2f} s / {percentile(known, 99):.2f} s"
                f" ({len(known)} sales)"
            )
    per_call = len(sales) / adjusts.calls if adjusts.calls else math.inf
    log_line(
        f"source adjustment calls: {adjusts.calls} for {len(sales)} sales "
        f"({adjusts.changes} quantity changes recorded; {per_call:.1f} sales per call)"
    )
    log_line(f"oversold: {oversold(levels, sales)} units sold beyond the source's stock")
    count, largest, corrections = levels.increases(sales)
    log_line(
        f"re-opened stock: {count} levels raised above what the source still had (at most "
        f"{largest} units); {corrections} raised back after being shown too low"
    )
    for name, c in sorted(spent.items()):
        log_line(
            f"  {name}: {c.requests:,} requests, {c.points:,.0f} points, {c.throttled} throttled"
        )
    log_line("CPU seconds: " + ", ".join(f"{n} {s:.1f}" for n, s in cpu.items()))
    wrong = exactness(sandbox, levels, sales, opts.destinations)
    log_line(
        f"settled {drained:.1f} s after the last sale"
        if settled
        else f"NOT settled {opts.drain_seconds:.0f} s after the last sale"
    )
    if wrong:
        log_line(f"NOT exact: {len(wrong)} problems: " + "; ".join(wrong[:20]))
        return 1
    log_line("exact: every source level is its start minus the units sold; every destination equal")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    run_arguments(parser, seconds=60.0, rate=20.0, rate_help="paid orders per second")
    parser.add_argument("--hot", type=int, default=200, help="variants the customers buy")
    args = parser.parse_args()
    opts = options_from(parser, args)

    def log_line(line: str) -> None:
        print(line, flush=True)

    log_line(
        f"{opts.changes:,} checkouts at {opts.rate:g}/s over {args.hot} of {opts.variants:,} "
        f"variants, {opts.destinations} destinations, {opts.latency_ms:g} ms API latency, "
        f"plan {opts.plan}, seed {opts.seed}"
    )
    sys.exit(asyncio.run(run(opts, args.hot, log_line)))


if __name__ == "__main__":
    main()
