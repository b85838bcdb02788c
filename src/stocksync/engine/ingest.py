"""Inbound events: recorded once in the inbox, with their state change and jobs, in one
transaction, before the platform is answered (the first step of the data path).

Webhooks arrive concurrently; :class:`Ingestor` gathers those in flight into one transaction
(group commit) and :func:`ingest_many` handles a batch with a fixed number of statements, so
that SQLite's single writer is not the bottleneck. Each caller still gets its own result, and
only after the transaction holding its event has committed."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.codec import encode_event
from stocksync.domain.events import (
    AppUninstalled,
    InboundEvent,
    LevelChanged,
    LocationsChanged,
    OrderEdited,
    OrderSeen,
    PrivacyRequest,
    ProductChanged,
    ProductDeleted,
    RefundSeen,
)
from stocksync.domain.inventory import ReportMeaning, destination_report, is_echo, trusted
from stocksync.domain.levels import plausible_quantity
from stocksync.engine import crash, lifecycle, sales, schedule
from stocksync.engine import levels_reported as reported
from stocksync.engine.levels_reported import Report
from stocksync.engine.marks import mark_pending, mark_source_dirty
from stocksync.engine.records import StoreRecord
from stocksync.engine.runtime import Runtime
from stocksync.storage.activity import utcnow
from stocksync.storage.db import reading
from stocksync.storage.sql import insert_many_ignore
from stocksync.storage.tables import (
    activity_log,
    connections,
    inbox,
    stores,
    sync_state,
    variant_links,
)

Outcome = Literal["recorded", "duplicate", "unknown_store", "ignored", "rejected", "echo"]


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    inbox_id: int | None = None


@dataclass(frozen=True)
class Inbound:
    """One delivery: ``event`` is the adapter's reading of ``payload`` (None if unreadable)."""

    platform: str
    store_ref: str
    event_id: str
    topic: str
    event: InboundEvent | None
    payload: str | bytes

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.platform, self.store_ref, self.event_id)


async def ingest(
    rt: Runtime,
    *,
    platform: str,
    store_ref: str,
    event_id: str,
    topic: str,
    event: InboundEvent | None,
    payload: str | bytes,
) -> IngestResult:
    """Record one delivery. A repeated ``event_id`` is a duplicate and has no second effect."""
    (result,) = await ingest_many(
        rt, [Inbound(platform, store_ref, event_id, topic, event, payload)]
    )
    return result


async def ingest_many(rt: Runtime, batch: Sequence[Inbound]) -> list[IngestResult]:
    """Record a batch of deliveries in one transaction; results in the batch's order."""
    async with rt.db.begin() as conn:
        results = await _Batch(rt, conn).run(batch)
        crash.point("ingest.before_commit")
    return results


@dataclass
class _Batch:
    rt: Runtime
    conn: AsyncConnection
    statuses: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    activities: list[dict[str, Any]] = field(default_factory=list)

    def note(
        self,
        store_id: int | None,
        level: str,
        kind: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.activities.append(
            {
                "store_id": store_id,
                "at": utcnow(),
                "level": level,
                "kind": kind,
                "message": message,
                "details": details or {},
                "retry": None,
            }
        )

    async def run(self, batch: Sequence[Inbound]) -> list[IngestResult]:
        now = self.rt.clock()
        first: dict[tuple[str, str, str], Inbound] = {}
        for item in batch:
            first.setdefault(item.key, item)
        rows = await insert_many_ignore(
            self.conn,
            inbox,
            [
                {
                    "platform": i.platform,
                    "store_ref": i.store_ref,
                    "event_id": i.event_id,
                    "topic": i.topic,
                    "payload": _text(i.payload),
                    "event": encode_event(i.event) if i.event is not None else None,
                    "status": "pending",
                    "received_at": now,
                }
                for i in first.values()
            ],
            conflict=("platform", "store_ref", "event_id"),
            returning=("id", "platform", "store_ref", "event_id"),
        )
        new_ids = {(r[1], r[2], r[3]): int(r[0]) for r in rows}
        known = await self._stores({(i.platform, i.store_ref) for i in first.values()})
        outcomes: dict[tuple[str, str, str], Outcome] = {}
        levels: list[tuple[StoreRecord, int, LevelChanged]] = []
        for key, item in first.items():
            inbox_id = new_ids.get(key)
            if inbox_id is None:
                outcomes[key] = "duplicate"
                continue
            store = known.get((item.platform, item.store_ref))
            outcomes[key] = await self._route(item, inbox_id, store, levels)
        ignored = await self._levels(levels)
        for key, inbox_id in new_ids.items():
            if inbox_id in ignored:
                outcomes[key] = "ignored"
        await self._flush_statuses()
        if self.activities:
            await self.conn.execute(activity_log.insert(), self.activities)
        results: list[IngestResult] = []
        seen: set[tuple[str, str, str]] = set()
        for item in batch:
            if item.key in seen:
                results.append(IngestResult("duplicate"))
                continue
            seen.add(item.key)
            results.append(IngestResult(outcomes[item.key], new_ids.get(item.key)))
        return results

    async def _route(
        self,
        item: Inbound,
        inbox_id: int,
        store: StoreRecord | None,
        levels: list[tuple[StoreRecord, int, LevelChanged]],
    ) -> Outcome:
        """What a new delivery does: its inbox status, its job, or its level report added to
        ``levels`` (recorded together after the batch)."""
        if store is None:
            self.statuses[inbox_id] = ("ignored", "unknown store")
            self.note(
                None,
                "warning",
                "unknown_store",
                f"a {item.topic} event arrived for {item.store_ref}, which is not "
                "installed; it was ignored",
                {"platform": item.platform, "store": item.store_ref, "event": item.event_id},
            )
            return "unknown_store"
        elif item.event is None:
            self.statuses[inbox_id] = ("failed", "unreadable payload")
            self.note(
                store.id,
                "error",
                "event_unreadable",
                f"a {item.topic} event could not be read and was not applied",
                {"event_id": item.event_id, "inbox_id": inbox_id},
            )
            return "rejected"
        elif isinstance(item.event, AppUninstalled | PrivacyRequest):
            # Lifecycle events apply whatever the store's state: a shop is redacted
            # days after the app was uninstalled.
            await self._lifecycle(store, item.event)
            self.statuses[inbox_id] = ("processed", None)
            return "recorded"
        elif store.status != "active":
            self.statuses[inbox_id] = ("ignored", f"store is {store.status}")
            return "ignored"
        elif isinstance(item.event, LevelChanged):
            levels.append((store, inbox_id, item.event))
            return "recorded"
        elif isinstance(item.event, OrderSeen | OrderEdited | RefundSeen):
            ev = item.event
            order_id = ev.order.id if isinstance(ev, OrderSeen) else ev.order_id
            await schedule.process_event(self.rt, self.conn, inbox_id, store.id, order_id)
            return "recorded"
        elif isinstance(item.event, LocationsChanged):
            await schedule.refresh_locations(self.rt, self.conn, store.id)
            # Done once the job is enqueued: the job reads the locations, not this event.
            self.statuses[inbox_id] = ("processed", None)
            return "recorded"
        elif isinstance(item.event, ProductChanged | ProductDeleted):
            # Product detail sync and source deletions belong to the catalog; until that
            # handler exists the event is kept and marked, visible in the inbox.
            self.statuses[inbox_id] = ("ignored", "product events are not synced yet")
            return "ignored"
        else:
            self.statuses[inbox_id] = ("ignored", f"unhandled topic {item.topic}")
            return "ignored"

    async def _lifecycle(self, store: StoreRecord, event: AppUninstalled | PrivacyRequest) -> None:
        if isinstance(event, AppUninstalled):
            if store.status == "active":
                await lifecycle.app_uninstalled(self.conn, store)
        elif event.topic == "shop/redact":
            await lifecycle.shop_redact(self.conn, store)
        else:
            await lifecycle.customer_privacy(self.conn, store, event.topic)

    async def _stores(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StoreRecord]:
        refs = list(refs)
        rows = await self.conn.execute(
            select(stores).where(tuple_(stores.c.platform, stores.c.external_id).in_(refs))
        )
        found = [StoreRecord.from_row(r) for r in rows]
        return {(s.platform, s.external_id): s for s in found}

    async def _levels(self, levels: list[tuple[StoreRecord, int, LevelChanged]]) -> set[int]:
        """Mark source items dirty and destination drift pending; returns ignored inbox ids."""
        if not levels:
            return set()
        for store, _id, ev in levels:
            if ev.available is not None and not plausible_quantity(ev.available):
                self.note(
                    store.id,
                    "warning",
                    "implausible_level",
                    f"{store.name} reported {ev.available} units of item {ev.item_id}; the "
                    "level will be read again instead of trusted",
                    {"item_id": ev.item_id, "location": ev.location_id},
                )
        handled: set[int] = set()
        reports: list[tuple[int, Report]] = []
        # Source items to take again: item -> whether every report of it can be trusted.
        dirty: dict[int, dict[str, bool]] = defaultdict(dict)
        sources = [(s, i, e) for s, i, e in levels if s.is_source]
        if sources:
            pairs = {(s.id, e.item_id) for s, _, e in sources}
            linked = {
                (r[0], r[1])
                for r in await self.conn.execute(
                    select(variant_links.c.source_store_id, variant_links.c.source_item_id)
                    .join(connections, connections.c.id == variant_links.c.connection_id)
                    .where(
                        tuple_(variant_links.c.source_store_id, variant_links.c.source_item_id).in_(
                            list(pairs)
                        ),
                        variant_links.c.status == "active",
                        # Paused too: a paused connection's source level is still read (only
                        # writes stop), or resuming would write the level from before (B4).
                        connections.c.status.in_(("active", "paused")),
                    )
                    .distinct()
                )
            }
            for store, inbox_id, ev in sources:
                if (store.id, ev.item_id) in linked:
                    report = _trusted(ev)
                    if report is not None:
                        reports.append((store.id, report))
                    marks = dirty[store.id]
                    marks[ev.item_id] = marks.get(ev.item_id, True) and report is not None
                    handled.add(inbox_id)
        dests = [(s, i, e) for s, i, e in levels if s.is_destination]
        pending: dict[tuple[int, int, int], bool] = {}
        seen: list[tuple[int, sales.Observation]] = []
        if dests:
            handled |= await self._destination_levels(dests, reports, pending, seen)
        # Every transaction takes these rows in one order: sync_state, source_dirty,
        # flush_pending (and each table in key order): PostgreSQL deadlocks otherwise.
        await reported.record_reports(self.conn, reports, self.rt.clock())
        # In the platform's order of the changes, so that each decrease is from the last.
        await sales.observe(self.rt, self.conn, [o for _, o in sorted(seen, key=lambda x: x[0])])
        for store_id, marks in sorted(dirty.items()):
            await mark_source_dirty(
                self.rt,
                self.conn,
                store_id,
                list(marks),
                reported=[i for i, trusted in marks.items() if trusted],
            )
        await mark_pending(
            self.rt,
            self.conn,
            list(pending),
            forced=[link for link, force in pending.items() if force],
        )
        ignored: set[int] = set()
        unlinked: dict[int, list[str]] = defaultdict(list)
        names: dict[int, str] = {}
        for store, inbox_id, ev in levels:
            if inbox_id in handled:
                self.statuses[inbox_id] = ("processed", None)
            else:
                ignored.add(inbox_id)
                self.statuses[inbox_id] = ("ignored", "item not linked")
                unlinked[store.id].append(ev.item_id)
                names[store.id] = store.name
        for store_id, items in unlinked.items():
            self.note(
                store_id,
                "info",
                "event_ignored",
                f"{len(items)} stock change(s) on {names[store_id]} ignored: the items are not "
                "linked to any other store",
                {"item_ids": sorted(set(items))[:100]},
            )
        return ignored

    async def _destination_levels(
        self,
        dests: list[tuple[StoreRecord, int, LevelChanged]],
        reports: list[tuple[int, Report]],
        pending: dict[tuple[int, int, int], bool],
        seen: list[tuple[int, sales.Observation]],
    ) -> set[int]:
        """Our own write coming back (an echo) is recognised by comparing with the level we
        last wrote, or are writing; anything else (a sale, a manual change) schedules the
        variant to be set back to the source's level (B15, B18). A report newer than the last
        one recorded is taken as the destination's level, unconfirmed: the compare value of
        the next write, which is made even if the level equals the target (a wrong one only
        costs a failed compare and a read); an older one is stale and ignored. A decrease
        that no order explains yet is held, not set back at once (engine/sales.py). Fills
        ``reports``, ``pending`` (link -> whether the level must be read first) and ``seen``
        (the levels taken, with their time of change)."""
        by_pair = await _destination_links(self.conn, {(s.id, e.item_id) for s, _, e in dests})
        handled: set[int] = set()
        for store, inbox_id, ev in dests:
            at_location = [
                r for r in by_pair.get((store.id, ev.item_id), []) if r.location == ev.location_id
            ]
            if not at_location:
                continue
            handled.add(inbox_id)
            echo = all(is_echo(ev.available, r.last_written, r.writing) for r in at_location)
            report = _trusted(ev, unconfirmed=not echo)
            if report is not None:
                reports.append((store.id, report))
            for r in at_location:
                meaning = destination_report(
                    ev.available,
                    ev.changed_at,
                    last_written=r.last_written,
                    writing=r.writing,
                    reported_at=r.reported_at,
                    last_read=r.last_read,
                )
                link = (r.connection_id, r.link_id, store.id)
                if meaning is ReportMeaning.UNTRUSTED:
                    pending[link] = True
                elif meaning is ReportMeaning.NEWER and report is not None:
                    pending[link] = pending.get(link, False)
                    seen.append(
                        (
                            report.changed_at,
                            sales.Observation(
                                store.id,
                                ev.item_id,
                                ev.location_id,
                                r.link_id,
                                r.last_read,
                                report.available,
                            ),
                        )
                    )
                elif meaning is ReportMeaning.DISAGREES:
                    pending[link] = True  # two reports of one second disagree
                # else: our own write's echo, a stale report, or one saying nothing new
        return handled

    async def _flush_statuses(self) -> None:
        groups: dict[tuple[str, str | None], list[int]] = defaultdict(list)
        for inbox_id, outcome in self.statuses.items():
            groups[outcome].append(inbox_id)
        now = utcnow()
        for (status, error), ids in groups.items():
            await self.conn.execute(
                update(inbox)
                .where(inbox.c.id.in_(ids))
                .values(status=status, error=error, processed_at=now)
            )


class _DestinationLink(NamedTuple):
    """An active link of a destination item, with what is recorded at its receiving location."""

    connection_id: int
    link_id: int
    store_id: int
    item_id: str
    location: str | None
    last_written: int | None
    writing: int | None
    reported_at: int | None
    last_read: int | None


async def _destination_links(
    conn: AsyncConnection, pairs: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], list[_DestinationLink]]:
    """(destination store id, item id) -> its active links."""
    rows = (
        await conn.execute(
            select(
                variant_links.c.connection_id,
                variant_links.c.id,
                variant_links.c.destination_store_id,
                variant_links.c.destination_item_id,
                connections.c.receiving_location,
                sync_state.c.last_written,
                sync_state.c.writing,
                sync_state.c.reported_at,
                sync_state.c.last_read,
            )
            .join(connections, connections.c.id == variant_links.c.connection_id)
            .outerjoin(
                sync_state,
                (sync_state.c.store_id == variant_links.c.destination_store_id)
                & (sync_state.c.item_id == variant_links.c.destination_item_id)
                & (sync_state.c.location == connections.c.receiving_location),
            )
            .where(
                tuple_(
                    variant_links.c.destination_store_id, variant_links.c.destination_item_id
                ).in_(list(pairs)),
                variant_links.c.status == "active",
                connections.c.status == "active",
            )
        )
    ).all()
    by_pair: dict[tuple[int, str], list[_DestinationLink]] = defaultdict(list)
    for r in rows:
        link = _DestinationLink(*r)
        by_pair[(link.store_id, link.item_id)].append(link)
    return by_pair


async def recognise_echoes(rt: Runtime, batch: Sequence[Inbound]) -> set[int]:
    """The positions in ``batch`` of deliveries that are only echoes of our own writes to a
    destination: level reports equal, at every link of the item at that location, to what we
    wrote or are writing. They change nothing, so they are answered without a write
    transaction and not kept in the inbox; with a busy source they are most of the traffic
    (one per destination per change), and on SQLite every write transaction queues for the
    one writer. A store that is also a source (a hub) is left to the full path: its levels
    are its stock too."""
    candidates = [
        (n, item)
        for n, item in enumerate(batch)
        if isinstance(item.event, LevelChanged) and item.event.available is not None
    ]
    if not candidates:
        return set()
    async with reading(rt.db) as conn:
        refs = sorted({(item.platform, item.store_ref) for _, item in candidates})
        found = {
            (s.platform, s.external_id): s
            for s in (
                StoreRecord.from_row(r)
                for r in await conn.execute(
                    select(stores).where(tuple_(stores.c.platform, stores.c.external_id).in_(refs))
                )
            )
            if s.status == "active" and s.is_destination and not s.is_source
        }
        eligible = [
            (n, found[(item.platform, item.store_ref)], item.event)
            for n, item in candidates
            if (item.platform, item.store_ref) in found and isinstance(item.event, LevelChanged)
        ]
        if not eligible:
            return set()
        links = await _destination_links(conn, {(s.id, ev.item_id) for _, s, ev in eligible})
    echoes: set[int] = set()
    for n, store, ev in eligible:
        at_location = [
            r for r in links.get((store.id, ev.item_id), []) if r.location == ev.location_id
        ]
        if at_location and all(
            is_echo(ev.available, r.last_written, r.writing) for r in at_location
        ):
            echoes.add(n)
    return echoes


def _trusted(ev: LevelChanged, *, unconfirmed: bool = True) -> Report | None:
    """The report as a level to take, or None when it must be read instead: no level (a
    disconnect), no time of change to order it by, or an implausible quantity."""
    if ev.available is None or ev.changed_at is None or not trusted(ev.available, ev.changed_at):
        return None
    return Report(ev.item_id, ev.location_id, ev.available, ev.changed_at, unconfirmed)


def _text(payload: str | bytes) -> str:
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload


class Ingestor:
    """Group commit: deliveries submitted while a transaction is being written are gathered
    into the next one. ``submit`` returns once the delivery's transaction has committed."""

    def __init__(self, rt: Runtime, max_batch: int = 500, linger: float = 0.003) -> None:
        self.rt = rt
        self.max_batch = max_batch
        # How long a small batch waits for company before its transaction starts: a few
        # milliseconds of latency buy batches of dozens under load.
        self.linger = linger
        self._waiting: list[tuple[Inbound, asyncio.Future[IngestResult]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Inbound) -> IngestResult:
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._waiting:
            if len(self._waiting) < self.max_batch and self.linger > 0:
                await asyncio.sleep(self.linger)
            taken, self._waiting = (
                self._waiting[: self.max_batch],
                self._waiting[self.max_batch :],
            )
            try:
                echoes = await recognise_echoes(self.rt, [item for item, _ in taken])
                for n in echoes:
                    if not taken[n][1].done():
                        taken[n][1].set_result(IngestResult("echo"))
                taken = [t for n, t in enumerate(taken) if n not in echoes]
                results = await ingest_many(self.rt, [item for item, _ in taken]) if taken else []
            except BaseException as exc:  # every waiter learns of the failure
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in zip(taken, results, strict=True):
                if not future.done():
                    future.set_result(result)


def payload_of(event: InboundEvent) -> str:
    """A JSON body for events produced without a raw payload (the in-memory platform)."""
    return json.dumps(encode_event(event), separators=(",", ":"))
