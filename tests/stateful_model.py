"""The stateful test's model and rules, shared by the worlds it runs against.

A world (see :class:`World`) is where the stores live: the in-memory platform
(:class:`MemoryWorld`, below) or the Shopify sandbox over real HTTP
(``tests.sandbox_harness.SandboxWorld``). The merchant's and customers' actions, the
network's and the platforms' misbehaviour and the crash points are drawn the same way for
both, and both end with the same quiescence and the same exact checks of B17 and B18 against
the model below, written from the behaviours, not from the engine's code.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.domain.connection import ConnectionSettings
from stocksync.engine import crash
from stocksync.engine.catalog import import_products
from stocksync.engine.orders import backfill_orders
from stocksync.engine.reconcile import reconcile_source
from stocksync.engine.runtime import Runtime
from tests.harness import Harness

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


# Seconds a default run may take: hundreds of examples take minutes, far beyond the suite's
# per-test limit.
TIMEOUT = 2400


class SimulatedCrash(Exception):
    """The worker dies here: what was done on the platform stays, the transaction does not."""


def counts_for(settings: ConnectionSettings, status: str) -> bool:
    """The model's own reading of B15 (not the engine's function): an order counts once it
    was in a counted state. "Paid" means paid in full, which on the platform is the status
    ``paid`` (adding units makes it partially paid again); a refunded state says nothing of
    it (a deposit refunded in part was never paid), so it counts only through the states
    the order had before."""
    if status == "paid":
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


@dataclass
class Placed:
    """An order as the destination's platform took it."""

    order_id: str
    lines: dict[str, tuple[str, int]]  # line id -> (sku, quantity)
    financial_status: str


class World(Protocol):
    """A source (two locations) and the destinations of ``DESTS`` on one platform, the engine
    wired to it, and the merchants' hands on every store. Merchant actions return the order's
    financial status afterwards, as the platform reports it."""

    rt: Runtime
    db: AsyncEngine
    # Whether adding units to a paid order leaves it partially paid (and so not counted on a
    # paid-only connection if every webhook of its paid state was lost).
    adding_units_unpays: bool

    @property
    def store_ids(self) -> dict[str, int]:
        """The engine's id of each store, by name."""

    async def install(self) -> None:
        """Install the stores, import the catalog (``SKUS`` at ``START``), settle."""

    # -- the source merchant, customers and destination staff --------------------------------
    def source_adjust(self, sku: str, where: int, delta: int) -> None: ...
    def place_order(self, dest: str, picks: Sequence[tuple[str, int]], status: str) -> Placed: ...
    def mark_paid(self, dest: str, order_id: str) -> str: ...
    def edit_order(self, dest: str, order_id: str, line_id: str, quantity: int) -> str: ...
    def refund(
        self, dest: str, order_id: str, line_id: str, quantity: int, restock: bool
    ) -> str: ...
    def cancel_order(self, dest: str, order_id: str, restock: bool) -> str: ...
    def set_destination_level(self, dest: str, sku: str, quantity: int) -> None: ...

    # -- the network and the platforms ---------------------------------------------------------
    async def take_outbox(self) -> list[Any]:
        """Webhooks sent since the last call, not yet delivered to stocksync."""

    async def deliver(self, delivery: Any) -> None:
        """Deliver one webhook; raises SimulatedCrash when it was not acknowledged."""

    def fail_next_call(self, store: str, kind: str) -> None: ...
    def race_next_write(self, dest: str) -> None: ...
    def clear_faults(self) -> None: ...

    # -- the workers ---------------------------------------------------------------------------
    async def drain(self) -> None: ...
    async def settle(self) -> None:
        """Deliver every webhook and run every job until the world is quiet."""

    # -- what the stores show ------------------------------------------------------------------
    def source_levels(self) -> dict[str, int]:
        """Per SKU, the source's available units summed over its locations."""

    def destination_level(self, dest: str, sku: str) -> int | None: ...

    async def close(self) -> None: ...


WorldFactory = Callable[[str], Awaitable[World]]


class MemoryWorld:
    """The in-memory platform (``tests/harness.py``): webhooks are the world's outbox."""

    adding_units_unpays = True

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.rt = h.rt
        self.db = h.db

    @classmethod
    async def create(cls, url: str) -> MemoryWorld:
        return cls(await Harness.create(url, fresh=True))

    @property
    def store_ids(self) -> dict[str, int]:
        return {name: store.id for name, store in self.h.stores.items()}

    async def install(self) -> None:
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

    def source_adjust(self, sku: str, where: int, delta: int) -> None:
        src = self.h.shop("source")
        src.adjust(src.variant_by_sku(sku).item_id, src.location_ids()[where], delta)

    def place_order(self, dest: str, picks: Sequence[tuple[str, int]], status: str) -> Placed:
        shop = self.h.shop(dest)
        snapshot = shop.place_order(
            [(shop.variant_by_sku(sku).id, qty) for sku, qty in picks],
            financial_status=status,  # type: ignore[arg-type]
        )
        lines = {
            line.id: (sku, line.quantity)
            for line, (sku, _) in zip(snapshot.lines, picks, strict=True)
        }
        return Placed(snapshot.id, lines, snapshot.financial_status)

    def mark_paid(self, dest: str, order_id: str) -> str:
        return self.h.shop(dest).mark_paid(order_id).financial_status

    def edit_order(self, dest: str, order_id: str, line_id: str, quantity: int) -> str:
        return self.h.shop(dest).edit_order(order_id, line_id, quantity).financial_status

    def refund(self, dest: str, order_id: str, line_id: str, quantity: int, restock: bool) -> str:
        shop = self.h.shop(dest)
        shop.refund(order_id, [(line_id, quantity)], restock=restock)
        return shop.order(order_id).financial_status

    def cancel_order(self, dest: str, order_id: str, restock: bool) -> str:
        return self.h.shop(dest).cancel_order(order_id, restock=restock).financial_status

    def set_destination_level(self, dest: str, sku: str, quantity: int) -> None:
        shop = self.h.shop(dest)
        shop.set_available(shop.variant_by_sku(sku).item_id, shop.primary_location_id, quantity)

    async def take_outbox(self) -> list[Any]:
        return list(self.h.world.take_outbox())

    async def deliver(self, delivery: Any) -> None:
        await self.h.deliver([delivery])

    def fail_next_call(self, store: str, kind: str) -> None:
        self.h.shop(store).faults.fail_next(kind, retry_after=0.01)  # type: ignore[arg-type]

    def race_next_write(self, dest: str) -> None:
        self.h.shop(dest).faults.fail_next("race", delta=-1)

    def clear_faults(self) -> None:
        for store in self.h.world.stores.values():
            store.faults.clear()

    async def drain(self) -> None:
        await self.h.drain()

    async def settle(self) -> None:
        await self.h.settle()

    def source_levels(self) -> dict[str, int]:
        src = self.h.shop("source")
        return {
            sku: sum(
                src.level(src.variant_by_sku(sku).item_id, loc) or 0 for loc in src.location_ids()
            )
            for sku in SKUS
        }

    def destination_level(self, dest: str, sku: str) -> int | None:
        return self.h.level(dest, sku)

    async def close(self) -> None:
        await self.h.close()


_T = TypeVar("_T")


class SyncMachine(RuleBasedStateMachine):
    """One example: install, steps drawn from ``ACTIONS``, then quiescence and the checks.

    Subclasses (see :func:`machine_for`) name the world and the database."""

    url: ClassVar[str] = ""
    world_factory: ClassVar[WorldFactory]
    crash_hits: ClassVar[Counter[str]]
    step_counts: ClassVar[list[int]]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.world: World = self.run(type(self).world_factory(self.url))
        self.own_changes: Counter[str] = Counter()
        self.model: dict[str, ModelOrder] = {}
        self.inflight: list[Any] = []  # taken from the platform, not yet delivered
        self.steps = 0
        self.armed: set[str] = set()  # each fires once, the next time it is reached
        self.installed = False
        crash.install(self._crash_hook)

    def run(self, coro: Awaitable[_T]) -> _T:
        return self.loop.run_until_complete(coro)

    def _crash_hook(self, name: str) -> None:
        if name in self.armed:
            self.armed.discard(name)
            type(self).crash_hits[name] += 1
            raise SimulatedCrash(name)

    # -- setup ---------------------------------------------------------------------------------

    @initialize()
    def install(self) -> None:
        self.run(self.world.install())
        self.installed = True

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
        self.world.source_adjust(sku, where, delta)
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
        placed = self.world.place_order(dest, picks, status)
        self.model[placed.order_id] = ModelOrder(
            dest, placed.order_id, placed.lines, [placed.financial_status]
        )

    def payment_arrives(self, data: st.DataObject) -> None:
        m = self._pick_order(data)
        if m is None or m.cancelled:
            return
        if m.history[-1] not in ("pending", "authorized", "partially_paid"):
            return
        m.history.append(self.world.mark_paid(m.dest, m.order_id))

    def staff_edits(self, data: st.DataObject) -> None:
        m = self._pick_order(data)
        if m is None or m.cancelled or m.refunds:
            return
        line_id = data.draw(st.sampled_from(sorted(m.lines)))
        quantity = data.draw(st.integers(0, 4))
        if (
            self.world.adding_units_unpays
            and quantity > m.lines[line_id][1]
            and m.history[-1] in ("paid", "partially_refunded")
            and not DESTS[m.dest].count_partially_paid
        ):
            # Adding units to a paid order makes it partially paid. Whether it was paid before
            # cannot be told from a partially paid order alone; if every webhook of its paid
            # state was lost, it is counted only where partially paid orders count (see the
            # known limits in docs/architecture.md).
            return
        status = self.world.edit_order(m.dest, m.order_id, line_id, quantity)
        m.lines[line_id] = (m.lines[line_id][0], quantity)
        m.history.append(status)

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
        status = self.world.refund(m.dest, m.order_id, line_id, quantity, restock)
        m.refunds.append((line_id, quantity, restock))
        m.history.append(status)

    def staff_cancels(self, data: st.DataObject) -> None:
        m = self._pick_order(data)
        if m is None or m.cancelled:
            return
        restock = data.draw(st.booleans())
        left = {
            lid: q - sum(r for l2, r, _ in m.refunds if l2 == lid)
            for lid, (_, q) in m.lines.items()
        }
        status = self.world.cancel_order(m.dest, m.order_id, restock)
        m.cancelled = True
        m.refunds.extend((lid, n, restock) for lid, n in left.items() if n > 0)
        m.history.append(status)

    def destination_staff_corrects(self, data: st.DataObject) -> None:
        dest = data.draw(st.sampled_from(sorted(DESTS)))
        sku = data.draw(st.sampled_from(SKUS))
        qty = data.draw(st.integers(0, 9))
        self.world.set_destination_level(dest, sku, qty)

    # -- the network, the platforms and the workers --------------------------------------------

    def webhooks_arrive(self, data: st.DataObject) -> None:
        """Some in-flight webhooks arrive: late, out of order, some twice, some never.

        What is in flight depends on how the workers interleaved, which may differ between a
        run and its replay; so the choices are drawn as a seed, not as indexes into it."""
        # Drawn before looking at what is in flight: the draws must not depend on it.
        choices = random.Random(data.draw(st.integers(0, 2**32 - 1)))
        share = data.draw(st.sampled_from((0.25, 0.5, 1.0)))
        self.inflight.extend(self.run(self.world.take_outbox()))
        if not self.inflight:
            return
        choices.shuffle(self.inflight)
        count = max(1, int(len(self.inflight) * share))
        chosen, self.inflight = self.inflight[:count], self.inflight[count:]
        batch: list[Any] = []
        for d in chosen:
            fate = choices.choice(("once", "once", "once", "twice", "lost"))
            if fate != "lost":
                batch.extend([d] * (2 if fate == "twice" else 1))
        for d in batch:
            try:
                self.run(self.world.deliver(d))
            except SimulatedCrash:
                # Not acknowledged: the platform delivers it again later.
                self.inflight.append(d)

    def platform_fails(self, data: st.DataObject) -> None:
        store = data.draw(st.sampled_from(("source", *sorted(DESTS))))
        kind = data.draw(st.sampled_from(CALL_FAULTS))
        self.world.fail_next_call(store, kind)

    def level_changes_between_read_and_write(self, data: st.DataObject) -> None:
        dest = data.draw(st.sampled_from(sorted(DESTS)))
        self.world.race_next_write(dest)

    def worker_will_crash(self, data: st.DataObject) -> None:
        self.armed.add(data.draw(st.sampled_from(crash.POINTS)))

    def workers_run(self, data: st.DataObject) -> None:
        self.run(self.world.drain())

    # -- quiescence and the exact checks -----------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.installed:
                self.run(self._quiesce_and_check())
        finally:
            crash.install(None)
            if hasattr(self, "world"):
                self.run(self.world.close())
            self.loop.close()
            type(self).step_counts.append(self.steps)

    async def _diagnose(self) -> str:
        """What the engine recorded, to explain a failed check."""
        lines = []
        async with self.world.db.connect() as conn:
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
        world = self.world
        self.armed.clear()
        world.clear_faults()
        for d in self.inflight + await world.take_outbox():
            await world.deliver(d)
        self.inflight = []
        await world.settle()
        # Webhooks lost for good: orders come back by polling, levels by reconciliation.
        for dest in DESTS:
            await backfill_orders(world.rt, world.store_ids[dest])
        await world.settle()
        # Every order is known now: a destination decrease still unexplained was a manual
        # change, set back once its grace ends (B15, B24); the grace is over.
        world.rt.sale_grace = timedelta(0)
        await reconcile_source(world.rt, world.store_ids["source"])
        await world.settle()

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
        actual = world.source_levels()
        if actual != dict(expected):
            raise AssertionError(
                f"B17: source {actual} != expected {dict(expected)}\n" + await self._diagnose()
            )
        for dest, conn_settings in DESTS.items():
            shown = {sku: world.destination_level(dest, sku) for sku in SKUS}
            held = self._held(dest)
            want = {
                sku: max(0, actual[sku] - held[sku] - conn_settings.safety_buffer) for sku in SKUS
            }
            assert shown == want, f"B18: {dest} shows {shown}, source implies {want}"

    def _held(self, dest: str) -> Counter[str]:
        """Units of ``dest``'s orders known but not counted and still open: the destination
        took them off at checkout and keeps them off (B24) until they count or end."""
        held: Counter[str] = Counter()
        for m in self.model.values():
            if m.dest != dest or m.counted or m.cancelled:
                continue
            if m.history[-1] in ("voided", "expired"):
                continue
            for line_id, (sku, qty) in m.lines.items():
                back = sum(q for lid, q, restock in m.refunds if lid == line_id and restock)
                held[sku] += max(0, qty - back)
        return held


def machine_for(world_factory: WorldFactory, url: str) -> type[SyncMachine]:
    """A state machine class on ``url`` with its own counters of crash points and steps."""
    return type(
        "SyncMachine",
        (SyncMachine,),
        {
            "url": url,
            "world_factory": staticmethod(world_factory),
            "crash_hits": Counter(),
            "step_counts": [],
        },
    )


@dataclass(frozen=True)
class Budget:
    """How many examples of how many steps, how many must reach that length, and whether
    every crash point must have been hit."""

    examples: int
    steps: int
    min_full: int
    every_crash_point: bool = True
    # Seconds the whole run may take: the default budget's limit, scaled up for longer runs.
    timeout: int = TIMEOUT

    @classmethod
    def from_env(
        cls, prefix: str, examples: int, min_full: int, crash_points_from: int | None = None
    ) -> Budget:
        """``{prefix}_EXAMPLES``, ``_STEPS`` and ``_MIN_FULL``. The minimum applies by default
        only when at least the default number of examples runs; every crash point must be hit
        when at least ``crash_points_from`` examples run (always when None)."""
        count = int(os.environ.get(f"{prefix}_EXAMPLES", str(examples)))
        steps = int(os.environ.get(f"{prefix}_STEPS", "50"))
        minimum = int(
            os.environ.get(f"{prefix}_MIN_FULL", str(min_full if count >= examples else 0))
        )
        every = crash_points_from is None or count >= crash_points_from
        scale = max(1.0, (count * steps) / (examples * 50))
        return cls(count, steps, minimum, every, int(TIMEOUT * scale))


def run_stateful(world_factory: WorldFactory, url: str, budget: Budget, label: str) -> None:
    """Run the machine, report (and keep the report for the end of ``make test``), assert
    that enough examples reached full length and, if the budget says so, that every crash
    point was hit."""
    machine = machine_for(world_factory, url)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=budget.examples,
            stateful_step_count=budget.steps + 1,  # the install counts as one
            deadline=None,
            derandomize=os.environ.get("STOCKSYNC_STATEFUL_RANDOM") != "1",
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    full = sum(1 for n in machine.step_counts if n >= budget.steps)
    backend = "postgres" if url.startswith("postgresql") else "sqlite"
    name = f"{label} [{backend}]"
    report = (
        f"{name}: {len(machine.step_counts)} examples, {full} of {budget.steps}+ steps; "
        "crash points hit: " + ", ".join(f"{p}={machine.crash_hits[p]}" for p in crash.POINTS)
    )
    print("\n" + report)
    # Shown at the end of `make test` (pytest hides the output of passing tests).
    reports = Path(os.environ.get("STOCKSYNC_TEST_REPORTS", ".test-reports"))
    reports.mkdir(parents=True, exist_ok=True)
    (reports / f"{label.replace(' ', '-')}-{backend}.txt").write_text(report + "\n")
    assert full >= budget.min_full, (
        f"only {full} examples reached {budget.steps} steps (want {budget.min_full})"
    )
    missed = [p for p in crash.POINTS if machine.crash_hits[p] == 0]
    assert not (budget.every_crash_point and missed), f"crash points never hit: {missed}"
