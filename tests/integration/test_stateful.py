"""B17 and B18 under everything that can go wrong, as a hypothesis state machine.

Each example installs a source and three destinations (different counting settings, one with
a safety buffer), imports a small catalog with few units (so destinations race for the last
ones), then interleaves: source adjustments; destination orders in every financial state,
late payments, edits, refunds and cancellations with and without restock; manual corrections
on destinations; webhooks delivered late, duplicated, reordered or lost; platform faults
(timeouts, 5xx, throttling, a write applied whose response was lost, a level changed between
read and write); and crashes at every enumerated crash point. After quiescence (remaining
webhooks delivered, orders backfilled, a reconciliation) it asserts exactly:

- B17: the source's level of each SKU is its start, plus its own changes, minus the units of
  every counted destination order line (after edits), plus every restocked unit, each once;
- B18: every destination shows ``max(0, source - buffer)``.

The expected values come from the model below, written from the behaviours, not from the
engine's code. Run longer with ``make stateful-long`` (see docs/testing.md).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from stocksync.domain.connection import ConnectionSettings
from stocksync.engine import crash
from stocksync.engine.catalog import import_products
from stocksync.engine.orders import backfill_orders
from stocksync.engine.reconcile import reconcile_source
from stocksync.platforms.memory import Delivery
from tests.harness import Harness

# Hypothesis ends some examples early (its first, simplest ones especially), so more are run
# than must reach the full length: by default at least 200 examples of at least 50 steps.
EXAMPLES = int(os.environ.get("STOCKSYNC_STATEFUL_EXAMPLES", "340"))
STEPS = int(os.environ.get("STOCKSYNC_STATEFUL_STEPS", "50"))
MIN_FULL = int(os.environ.get("STOCKSYNC_STATEFUL_MIN_FULL", "200" if EXAMPLES >= 340 else "0"))

SKUS = ("TEE-S", "TEE-M", "MUG")
START = {"TEE-S": 4, "TEE-M": 2, "MUG": 6}
DESTS = {
    # paid only (the default)
    "dest-paid": ConnectionSettings(),
    # every state counts: authorized, partially paid and pending too
    "dest-all": ConnectionSettings(
        count_authorized=True, count_partially_paid=True, count_pending=True
    ),
    # paid only, and a safety buffer of one unit
    "dest-buffer": ConnectionSettings(safety_buffer=1),
}
PLACED = ("paid", "pending", "authorized", "partially_paid")
CALL_FAULTS = ("timeout", "server_error", "throttled", "lost_response")
# What happens at each step, with repetition as weight.
ACTIONS = (
    *["customer_orders"] * 4,
    *["webhooks_arrive"] * 4,
    *["workers_run"] * 3,
    *["source_adjusts"] * 2,
    *["payment_arrives"] * 2,
    *["staff_refunds"] * 2,
    "staff_edits",
    "staff_cancels",
    "destination_staff_corrects",
    *["platform_fails"] * 2,
    "level_changes_between_read_and_write",
    *["worker_will_crash"] * 2,
)


class SimulatedCrash(Exception):
    """The worker dies here: what was done on the platform stays, the transaction does not."""


CRASH_HITS: Counter[str] = Counter()
STEP_COUNTS: list[int] = []


def counts_for(settings: ConnectionSettings, status: str) -> bool:
    """The model's own reading of B15 (not the engine's function)."""
    if status in ("paid", "partially_refunded", "refunded"):
        return True
    return {
        "authorized": settings.count_authorized,
        "partially_paid": settings.count_partially_paid,
        "pending": settings.count_pending,
    }.get(status, False)


@dataclass
class ModelOrder:
    dest: str
    order_id: str
    lines: dict[str, tuple[str, int]]  # line id -> (sku, quantity after edits)
    history: list[str]
    refunds: list[tuple[str, int, bool]] = field(default_factory=list)  # line, qty, restock
    cancelled: bool = False

    @property
    def counted(self) -> bool:
        return any(counts_for(DESTS[self.dest], s) for s in self.history)


class SyncMachine(RuleBasedStateMachine):
    url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.h: Harness = self.run(Harness.create(self.url, fresh=True))
        self.own_changes: Counter[str] = Counter()
        self.model: dict[str, ModelOrder] = {}
        self.inflight: list[Delivery] = []  # taken from the platform, not yet delivered
        self.rng = random.Random(0)
        self.steps = 0
        self.armed: set[str] = set()  # each fires once, the next time it is reached
        self.installed = False
        crash.install(self._crash_hook)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _crash_hook(self, name: str) -> None:
        if name in self.armed:
            self.armed.discard(name)
            CRASH_HITS[name] += 1
            raise SimulatedCrash(name)

    # -- setup ---------------------------------------------------------------------------------

    @initialize()
    def install(self) -> None:
        async def setup() -> None:
            h = self.h
            await h.add_store("source", "source")
            src = h.shop("source")
            src.add_location("Back room")
            from stocksync.engine.stores import set_locations

            async with h.db.begin() as conn:
                await set_locations(conn, h.stores["source"].id, await src.list_locations())
            for sku in SKUS:
                product = src.add_product(sku, [sku], available=0)
                item = product.variants[0].item_id
                src.set_available(item, src.location_ids()[0], START[sku] // 2)
                src.set_available(item, src.location_ids()[1], START[sku] - START[sku] // 2)
            for dest, conn_settings in DESTS.items():
                await h.add_store(dest, "destination")
                record = await h.connect(dest, "source", conn_settings)
                await import_products(h.rt, record.id)
            h.world.take_outbox()
            await h.settle()
            self.installed = True

        self.run(setup())

    # -- one step: a weighted choice of what happens next ----------------------------------------

    @rule(kind=st.sampled_from(ACTIONS), data=st.data())
    def step(self, kind: str, data: st.DataObject) -> None:
        self.steps += 1
        getattr(self, kind)(data)

    # -- the source merchant -------------------------------------------------------------------

    def source_adjusts(self, data: st.DataObject) -> None:
        sku = data.draw(st.sampled_from(SKUS))
        delta = data.draw(st.integers(-3, 5))
        where = data.draw(st.integers(0, 1))
        src = self.h.shop("source")
        src.adjust(src.variant_by_sku(sku).item_id, src.location_ids()[where], delta)
        self.own_changes[sku] += delta

    # -- destination customers and staff -------------------------------------------------------

    def _pick_order(self, data: st.DataObject) -> ModelOrder | None:
        if not self.model:
            return None
        return self.model[data.draw(st.sampled_from(sorted(self.model)))]

    def customer_orders(self, data: st.DataObject) -> None:
        dest = data.draw(st.sampled_from(sorted(DESTS)))
        picks = data.draw(
            st.lists(
                st.tuples(st.sampled_from(SKUS), st.integers(1, 3)),
                min_size=1,
                max_size=2,
                unique_by=lambda t: t[0],
            )
        )
        status = data.draw(st.sampled_from(PLACED))
        shop = self.h.shop(dest)
        snapshot = shop.place_order(
            [(shop.variant_by_sku(sku).id, qty) for sku, qty in picks],
            financial_status=status,  # type: ignore[arg-type]
        )
        lines = {
            line.id: (sku, line.quantity)
            for line, (sku, _) in zip(snapshot.lines, picks, strict=True)
        }
        self.model[snapshot.id] = ModelOrder(dest, snapshot.id, lines, [status])

    def payment_arrives(self, data: st.DataObject) -> None:
        m = self._pick_order(data)
        if m is None or m.cancelled:
            return
        if m.history[-1] not in ("pending", "authorized", "partially_paid"):
            return
        snap = self.h.shop(m.dest).mark_paid(m.order_id)
        m.history.append(snap.financial_status)

    def staff_edits(self, data: st.DataObject) -> None:
        m = self._pick_order(data)
        if m is None or m.cancelled or m.refunds:
            return
        line_id = data.draw(st.sampled_from(sorted(m.lines)))
        quantity = data.draw(st.integers(0, 4))
        if (
            quantity > m.lines[line_id][1]
            and m.history[-1] in ("paid", "partially_refunded")
            and not DESTS[m.dest].count_partially_paid
        ):
            # Adding units to a paid order makes it partially paid. Whether it was paid before
            # cannot be told from a partially paid order alone; if every webhook of its paid
            # state was lost, it is counted only where partially paid orders count (see the
            # known limits in docs/architecture.md).
            return
        snap = self.h.shop(m.dest).edit_order(m.order_id, line_id, quantity)
        m.lines[line_id] = (m.lines[line_id][0], quantity)
        m.history.append(snap.financial_status)

    def staff_refunds(self, data: st.DataObject) -> None:
        m = self._pick_order(data)
        if m is None or m.cancelled:
            return
        if m.history[-1] not in ("paid", "partially_refunded", "partially_paid"):
            return
        line_id = data.draw(st.sampled_from(sorted(m.lines)))
        left = m.lines[line_id][1] - sum(q for lid, q, _ in m.refunds if lid == line_id)
        quantity = min(data.draw(st.integers(1, 3)), left)
        if quantity <= 0:
            return
        restock = data.draw(st.booleans())
        self.h.shop(m.dest).refund(m.order_id, [(line_id, quantity)], restock=restock)
        m.refunds.append((line_id, quantity, restock))
        m.history.append(self.h.shop(m.dest).order(m.order_id).financial_status)

    def staff_cancels(self, data: st.DataObject) -> None:
        m = self._pick_order(data)
        if m is None or m.cancelled:
            return
        restock = data.draw(st.booleans())
        left = {
            lid: q - sum(r for l2, r, _ in m.refunds if l2 == lid)
            for lid, (_, q) in m.lines.items()
        }
        snap = self.h.shop(m.dest).cancel_order(m.order_id, restock=restock)
        m.cancelled = True
        m.refunds.extend((lid, n, restock) for lid, n in left.items() if n > 0)
        m.history.append(snap.financial_status)

    def destination_staff_corrects(self, data: st.DataObject) -> None:
        dest = data.draw(st.sampled_from(sorted(DESTS)))
        sku = data.draw(st.sampled_from(SKUS))
        qty = data.draw(st.integers(0, 9))
        shop = self.h.shop(dest)
        shop.set_available(shop.variant_by_sku(sku).item_id, shop.primary_location_id, qty)

    # -- the network, the platforms and the workers --------------------------------------------

    def webhooks_arrive(self, data: st.DataObject) -> None:
        """Some in-flight webhooks arrive: late, out of order, some twice, some never.

        What is in flight depends on how the workers interleaved, which may differ between a
        run and its replay; so the choices are drawn as a seed, not as indexes into it."""
        # Drawn before looking at what is in flight: the draws must not depend on it.
        choices = random.Random(data.draw(st.integers(0, 2**32 - 1)))
        share = data.draw(st.sampled_from((0.25, 0.5, 1.0)))
        self.inflight.extend(self.h.world.take_outbox())
        if not self.inflight:
            return
        choices.shuffle(self.inflight)
        count = max(1, int(len(self.inflight) * share))
        chosen, self.inflight = self.inflight[:count], self.inflight[count:]
        batch: list[Delivery] = []
        for d in chosen:
            fate = choices.choice(("once", "once", "once", "twice", "lost"))
            if fate != "lost":
                batch.extend([d] * (2 if fate == "twice" else 1))
        for d in batch:
            try:
                self.run(self.h.deliver([d]))
            except SimulatedCrash:
                # Not acknowledged: the platform delivers it again later.
                self.inflight.append(d)

    def platform_fails(self, data: st.DataObject) -> None:
        store = data.draw(st.sampled_from(("source", *sorted(DESTS))))
        kind = data.draw(st.sampled_from(CALL_FAULTS))
        self.h.shop(store).faults.fail_next(kind, retry_after=0.01)  # type: ignore[arg-type]

    def level_changes_between_read_and_write(self, data: st.DataObject) -> None:
        dest = data.draw(st.sampled_from(sorted(DESTS)))
        self.h.shop(dest).faults.fail_next("race", delta=-1)

    def worker_will_crash(self, data: st.DataObject) -> None:
        self.armed.add(data.draw(st.sampled_from(crash.POINTS)))

    def workers_run(self, data: st.DataObject) -> None:
        self.run(self.h.drain())

    # -- quiescence and the exact checks -----------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.installed:
                self.run(self._quiesce_and_check())
        finally:
            crash.install(None)
            if hasattr(self, "h"):
                self.run(self.h.close())
            self.loop.close()
            STEP_COUNTS.append(self.steps)

    async def _diagnose(self) -> str:
        """What the engine recorded, to explain a failed check."""
        from sqlalchemy import text

        lines = []
        async with self.h.db.connect() as conn:
            for query in (
                "SELECT kind, natural_key, delta, status, root_item_id FROM ledger ORDER BY id",
                "SELECT order_id, line_id, counted, restocked FROM order_lines",
                "SELECT order_id, connection_id, financial_status, counted, version"
                " FROM orders_seen",
                "SELECT kind, message FROM activity_log WHERE level = 'error'",
            ):
                rows = (await conn.execute(text(query))).all()
                lines.append(query.split(" FROM ")[1].split()[0] + ": " + repr(rows))
        for m in self.model.values():
            lines.append(f"model {m}")
        return "\n".join(lines)

    async def _quiesce_and_check(self) -> None:
        h = self.h
        self.armed.clear()
        for store in h.world.stores.values():
            store.faults.clear()
        await h.deliver(self.inflight + h.world.take_outbox())
        self.inflight = []
        await h.settle()
        # Webhooks lost for good: orders come back by polling, levels by reconciliation.
        for dest in DESTS:
            await backfill_orders(h.rt, h.stores[dest].id)
        await h.settle()
        await reconcile_source(h.rt, h.stores["source"].id)
        await h.settle()

        expected = Counter({sku: START[sku] + self.own_changes[sku] for sku in SKUS})
        for m in self.model.values():
            if not m.counted:
                continue
            for line_id, (sku, qty) in m.lines.items():
                expected[sku] -= qty
                given = 0
                for lid, q, restock in m.refunds:
                    if lid == line_id and restock:
                        give = min(q, qty - given)
                        given += max(0, give)
                expected[sku] += given
        src = h.shop("source")
        actual = {
            sku: sum(
                src.level(src.variant_by_sku(sku).item_id, loc) or 0 for loc in src.location_ids()
            )
            for sku in SKUS
        }
        if actual != dict(expected):
            raise AssertionError(
                f"B17: source {actual} != expected {dict(expected)}\n" + await self._diagnose()
            )
        for dest, conn_settings in DESTS.items():
            shown = {sku: h.level(dest, sku) for sku in SKUS}
            want = {sku: max(0, actual[sku] - conn_settings.safety_buffer) for sku in SKUS}
            assert shown == want, f"B18: {dest} shows {shown}, source implies {want}"


@pytest.fixture
def machine_url(db_url: str) -> str:
    return db_url


# Hundreds of examples take minutes, far beyond the suite's per-test limit.
@pytest.mark.timeout(2400)
def test_stateful_exactly_once_and_convergence(machine_url: str) -> None:
    CRASH_HITS.clear()
    STEP_COUNTS.clear()
    SyncMachine.url = machine_url
    run_state_machine_as_test(
        SyncMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS + 1,  # the install counts as one
            deadline=None,
            derandomize=os.environ.get("STOCKSYNC_STATEFUL_RANDOM") != "1",
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    full = sum(1 for n in STEP_COUNTS if n >= STEPS)
    backend = "postgres" if machine_url.startswith("postgresql") else "sqlite"
    report = (
        f"stateful [{backend}]: {len(STEP_COUNTS)} examples, {full} of {STEPS}+ steps; "
        "crash points hit: " + ", ".join(f"{p}={CRASH_HITS[p]}" for p in crash.POINTS)
    )
    print("\n" + report)
    # Shown at the end of `make test` (pytest hides the output of passing tests).
    reports = Path(os.environ.get("STOCKSYNC_TEST_REPORTS", ".test-reports"))
    reports.mkdir(parents=True, exist_ok=True)
    (reports / f"stateful-{backend}.txt").write_text(report + "\n")
    assert full >= MIN_FULL, f"only {full} examples reached {STEPS} steps (want {MIN_FULL})"
    missed = [p for p in crash.POINTS if CRASH_HITS[p] == 0]
    assert not missed, f"crash points never hit: {missed}"
