"""The job queue contract, on every backend: embedded on SQLite, procrastinate on PostgreSQL,
and the embedded queue on PostgreSQL (which must work there too)."""

from __future__ import annotations

import asyncio
import importlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync.engine.failures import store_of_dead_letter
from stocksync.jobs.embedded import EmbeddedJobQueue
from stocksync.jobs.pg import (
    ProcrastinateJobQueue,
    ensure_procrastinate_schema,
    procrastinate_schema_sql,
)
from stocksync.jobs.queue import JobContext, PermanentJobError, TaskRegistry
from stocksync.jobs.retry import ExponentialBackoff
from stocksync.storage.db import create_engine
from stocksync.storage.tables import activity_log, inbox, jobs, stores
from tests.integration.jobs_worker_proc import BACKENDS, Queue, make_queue, prepare_database
from tests.log_capture import capture_logs


@dataclass
class Db:
    backend: str
    url: str
    engine: AsyncEngine

    def queue(self, **options: Any) -> Queue:
        return make_queue(self.backend, self.engine, self.url, **options)


@pytest.fixture(scope="module")
def shared_pg_url() -> Iterator[str]:
    """One PostgreSQL database for this module's tests, emptied before each of them.

    Creating a database per test costs more than most of these tests do.
    """
    # The shared fixtures' skip-or-fail rule and server, without type-checking conftest here.
    conftest = importlib.import_module("tests.conftest")
    conftest.require_postgres()
    admin_url: str = conftest.PG_ADMIN_URL
    name = f"stocksync_jobs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_pg_url(shared_pg_url: str) -> str:
    with psycopg.connect(shared_pg_url) as conn:
        # DELETE, cheaper than TRUNCATE on tables this small; as replica, in any table order.
        conn.execute("SET LOCAL session_replication_role = replica")
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in tables.fetchall():
            conn.execute(f'DELETE FROM "{table}"')
    return shared_pg_url


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield request.param, f"sqlite:///{tmp_path / 'stocksync.db'}"
    else:
        yield request.param, request.getfixturevalue("empty_pg_url")


@pytest.fixture
async def db(backend_url: tuple[str, str]) -> AsyncIterator[Db]:
    backend, url = backend_url
    engine = create_engine(url)
    await prepare_database(backend, engine)
    yield Db(backend, url, engine)
    await engine.dispose()


@dataclass
class Recorder:
    """Handlers that log (event, key, attempt) in memory, in the order things happened."""

    log: list[tuple[str, str, int]] = field(default_factory=list)
    running: int = 0
    max_running: int = 0

    def registry(self, **extra: Any) -> TaskRegistry:
        registry = TaskRegistry()
        registry.register("record", self.record)
        for name, handler in extra.items():
            registry.register(name, handler)
        return registry

    async def record(self, context: JobContext, args: dict[str, Any]) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.log.append(("start", args["key"], context.attempt))
        # Stands for the work of a real job, long enough for other jobs to start meanwhile.
        await asyncio.sleep(float(args.get("work", 0.0)))
        self.log.append(("end", args["key"], context.attempt))
        self.running -= 1

    def keys(self, event: str = "start") -> list[str]:
        return [key for kind, key, _ in self.log if kind == event]


async def add_inbox_row(conn: Any, event_id: str) -> None:
    await conn.execute(
        inbox.insert().values(
            platform="shopify",
            store_ref="a.myshopify.com",
            event_id=event_id,
            topic="inventory_levels/update",
            payload="{}",
            status="pending",
            received_at=datetime.now(UTC),
        )
    )


async def inbox_events(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.scalars(select(inbox.c.event_id).order_by(inbox.c.id))).all())


async def dead_letters(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(
                        activity_log.c.level,
                        activity_log.c.kind,
                        activity_log.c.details,
                        activity_log.c.retry,
                    ).order_by(activity_log.c.id)
                )
            ).all()
        )


def counts(todo: int = 0, doing: int = 0, succeeded: int = 0, failed: int = 0) -> dict[str, int]:
    return {"todo": todo, "doing": doing, "succeeded": succeeded, "failed": failed}


async def test_enqueue_commits_and_rolls_back_with_the_callers_transaction(db: Db) -> None:
    queue = db.queue()
    async with db.engine.begin() as conn:
        await add_inbox_row(conn, "e1")
        assert await queue.enqueue(conn, "record", {"key": "kept"}) is True

    async def failing_webhook() -> None:
        async with db.engine.begin() as conn:
            await add_inbox_row(conn, "e2")
            assert await queue.enqueue(conn, "record", {"key": "rolled-back"}) is True
            raise RuntimeError("the webhook handler failed after enqueueing")

    with pytest.raises(RuntimeError):
        await failing_webhook()

    assert await queue.counts() == counts(todo=1)
    assert await inbox_events(db.engine) == ["e1"]
    recorder = Recorder()
    await queue.drain(recorder.registry(), 20)
    assert recorder.keys() == ["kept"]
    assert await queue.counts() == counts(succeeded=1)


async def test_queueing_lock_conflict_never_aborts_the_callers_transaction(db: Db) -> None:
    queue = db.queue()
    async with db.engine.begin() as conn:
        await add_inbox_row(conn, "e1")
        assert await queue.enqueue(conn, "record", {"key": "a"}, queueing_lock="flush:7") is True
        assert await queue.enqueue(conn, "record", {"key": "b"}, queueing_lock="flush:7") is False
        await add_inbox_row(conn, "e2")

    assert await inbox_events(db.engine) == ["e1", "e2"]
    assert await queue.counts() == counts(todo=1)


async def test_queueing_lock_coalesces_a_waiting_job_but_not_a_running_one(db: Db) -> None:
    queue = db.queue()
    started, release = asyncio.Event(), asyncio.Event()
    log: list[tuple[str, str]] = []

    async def gate(context: JobContext, args: dict[str, Any]) -> None:
        log.append(("start", args["key"]))
        if args["key"] == "first":
            started.set()
            await release.wait()
        log.append(("end", args["key"]))

    registry = TaskRegistry()
    registry.register("gate", gate)
    options: dict[str, Any] = {"lock": "flush:7", "queueing_lock": "flush:7"}
    async with db.engine.begin() as conn:
        assert await queue.enqueue(conn, "gate", {"key": "first"}, **options) is True

    drain = asyncio.create_task(queue.drain(registry, 20, concurrency=2))
    await asyncio.wait_for(started.wait(), 20)
    async with db.engine.begin() as conn:
        # The first job is running: a new one is kept, and then absorbs the next.
        assert await queue.enqueue(conn, "gate", {"key": "second"}, **options) is True
        assert await queue.enqueue(conn, "gate", {"key": "third"}, **options) is False
    assert await queue.counts() == counts(todo=1, doing=1)
    release.set()
    await drain

    assert log == [("start", "first"), ("end", "first"), ("start", "second"), ("end", "second")]
    assert await queue.counts() == counts(succeeded=2)


async def test_a_lock_serialises_its_jobs_in_enqueue_order(db: Db) -> None:
    queue = db.queue()
    plan = ["L0", "M0", "free0", "L1", "M1", "L2", "free1", "M2", "L3", "M3"]
    async with db.engine.begin() as conn:
        for key in plan:
            lock = None if key.startswith("free") else f"lock:{key[0]}"
            await queue.enqueue(conn, "record", {"key": key, "work": 0.02}, lock=lock)

    recorder = Recorder()
    await queue.drain(recorder.registry(), 30, concurrency=4)

    for lock in "LM":
        mine = [(kind, key) for kind, key, _ in recorder.log if key[0] == lock]
        expected = [(kind, f"{lock}{i}") for i in range(4) for kind in ("start", "end")]
        assert mine == expected, f"jobs with lock {lock} overlapped or ran out of order"
    assert sorted(recorder.keys("end")) == sorted(plan)
    # Jobs with different locks did run side by side: the serialisation is the lock's doing.
    assert recorder.max_running > 1
    assert await queue.counts() == counts(succeeded=len(plan))


async def test_higher_priority_runs_first(db: Db) -> None:
    queue = db.queue()
    async with db.engine.begin() as conn:
        await queue.enqueue(conn, "record", {"key": "low"}, priority=0)
        await queue.enqueue(conn, "record", {"key": "high"}, priority=10)
        await queue.enqueue(conn, "record", {"key": "middle"}, priority=5)
    recorder = Recorder()
    await queue.drain(recorder.registry(), 20)
    assert recorder.keys() == ["high", "middle", "low"]


async def test_a_scheduled_job_does_not_run_early(db: Db) -> None:
    queue = db.queue()
    async with db.engine.begin() as conn:
        await queue.enqueue(
            conn, "record", {"key": "later"}, schedule_at=datetime.now(UTC) + timedelta(hours=1)
        )
        await queue.enqueue(conn, "record", {"key": "now"})
    recorder = Recorder()
    await queue.drain(recorder.registry(), 20)
    assert recorder.keys() == ["now"]
    assert await queue.counts() == counts(todo=1, succeeded=1)


async def test_retries_with_backoff_then_dead_letters_with_the_reason(db: Db) -> None:
    queue = db.queue(max_attempts=3, seed=7)
    started: list[tuple[int, float]] = []

    async def flaky(context: JobContext, args: dict[str, Any]) -> None:
        started.append((context.attempt, time.monotonic()))
        raise ValueError(f"platform answered 502 on attempt {context.attempt}")

    registry = TaskRegistry()
    registry.register("flaky", flaky)
    async with db.engine.begin() as conn:
        await queue.enqueue(conn, "flaky", {"store": "a.myshopify.com"}, lock="store:a")
    await queue.drain(registry, 30)

    assert [attempt for attempt, _ in started] == [1, 2, 3]
    # The same seeded draws as the queue's: the backoff after failures 1 and 2.
    expected = ExponentialBackoff(base=0.05, cap=0.2, rng=random.Random(7))
    delays = [expected.delay(1), expected.delay(2)]
    gaps = [started[1][1] - started[0][1], started[2][1] - started[1][1]]
    for gap, delay in zip(gaps, delays, strict=True):
        assert gap >= delay - 0.005, f"retried after {gap:.3f} s, backoff was {delay:.3f} s"
    assert await queue.counts() == counts(failed=1)
    [(level, kind, details, retry)] = await dead_letters(db.engine)
    assert (level, kind) == ("error", "job_dead_lettered")
    assert details["error"] == "ValueError: platform answered 502 on attempt 3"
    assert details["attempts"] == 3
    assert details["task"] == "flaky"
    assert retry == {"task": "flaky", "args": {"store": "a.myshopify.com"}}


async def test_permanent_error_dead_letters_at_once(db: Db) -> None:
    queue = db.queue(max_attempts=5)
    calls: list[int] = []

    async def hopeless(context: JobContext, args: dict[str, Any]) -> None:
        calls.append(context.attempt)
        raise PermanentJobError("variant 42 no longer exists")

    registry = TaskRegistry()
    registry.register("hopeless", hopeless)
    async with db.engine.begin() as conn:
        await queue.enqueue(conn, "hopeless", {"variant": "42"})
        await queue.enqueue(conn, "record", {"key": "unaffected"})
    recorder = Recorder()
    registry.register("record", recorder.record)
    await queue.drain(registry, 20)

    assert calls == [1]
    assert recorder.keys() == ["unaffected"]
    assert await queue.counts() == counts(succeeded=1, failed=1)
    [(level, kind, details, retry)] = await dead_letters(db.engine)
    assert (level, kind) == ("error", "job_dead_lettered")
    assert details["error"] == "PermanentJobError: variant 42 no longer exists"
    assert details["attempts"] == 1
    assert retry == {"task": "hopeless", "args": {"variant": "42"}}


async def test_a_retried_job_keeps_its_lock_ahead_of_later_jobs(db: Db) -> None:
    queue = db.queue(max_attempts=3)
    log: list[tuple[str, int]] = []

    async def once_broken(context: JobContext, args: dict[str, Any]) -> None:
        log.append((args["key"], context.attempt))
        if args["key"] == "first" and context.attempt == 1:
            raise ConnectionError("reset by peer")

    registry = TaskRegistry()
    registry.register("job", once_broken)
    async with db.engine.begin() as conn:
        for key in ("first", "second"):
            await queue.enqueue(conn, "job", {"key": key}, lock="item:1", queueing_lock=key)
    await queue.drain(registry, 20, concurrency=2)

    assert log == [("first", 1), ("first", 2), ("second", 1)]
    assert await queue.counts() == counts(succeeded=2)


async def test_a_job_failing_while_its_twin_waits_is_retried_and_both_run(db: Db) -> None:
    # The retry sends the job back to the queue while a job with its queueing lock waits:
    # the partial unique index must not make that retry fail (and the job stick in doing).
    # A long lease: the embedded queue must not need a lease expiry to get over it.
    queue = db.queue(max_attempts=3, lease_seconds=60)
    started, release = asyncio.Event(), asyncio.Event()
    log: list[tuple[str, int]] = []

    async def flush(context: JobContext, args: dict[str, Any]) -> None:
        log.append((args["key"], context.attempt))
        if args["key"] == "first" and context.attempt == 1:
            started.set()
            await release.wait()
            raise TimeoutError("platform timed out")

    registry = TaskRegistry()
    registry.register("flush", flush)
    options: dict[str, Any] = {"lock": "flush:7", "queueing_lock": "flush:7"}
    async with db.engine.begin() as conn:
        await queue.enqueue(conn, "flush", {"key": "first"}, **options)
    drain = asyncio.create_task(queue.drain(registry, 10))
    await asyncio.wait_for(started.wait(), 20)
    async with db.engine.begin() as conn:
        assert await queue.enqueue(conn, "flush", {"key": "twin"}, **options) is True
    release.set()
    await drain

    assert log == [("first", 1), ("first", 2), ("twin", 1)]
    assert await queue.counts() == counts(succeeded=2)


async def test_a_cancelled_worker_hands_its_job_back(db: Db) -> None:
    queue = db.queue()
    started = asyncio.Event()
    attempts: list[int] = []

    async def slow(context: JobContext, args: dict[str, Any]) -> None:
        attempts.append(context.attempt)
        if len(attempts) == 1:
            started.set()
            await asyncio.Event().wait()

    registry = TaskRegistry()
    registry.register("slow", slow)
    async with db.engine.begin() as conn:
        await queue.enqueue(conn, "slow", {}, lock="item:1")
    worker = asyncio.create_task(queue.run_worker(registry))
    await asyncio.wait_for(started.wait(), 20)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker

    # Handed back at once, not left for a lease or a stalled-worker timeout to expire.
    if isinstance(queue, EmbeddedJobQueue):
        async with db.engine.connect() as conn:
            row = (
                await conn.execute(select(jobs.c.status, jobs.c.attempts, jobs.c.lease_until))
            ).one()
        assert (row.status, row.attempts) == ("doing", 0)
        lease_until = row.lease_until.replace(tzinfo=row.lease_until.tzinfo or UTC)
        assert lease_until <= datetime.now(UTC)
    else:
        assert await queue.counts() == counts(todo=1)
    await queue.drain(registry, 20)
    # The embedded queue does not count the interrupted run; procrastinate's retry does.
    assert attempts == ([1, 2] if db.backend == "postgres" else [1, 1])
    assert await queue.counts() == counts(succeeded=1)


async def test_a_job_longer_than_its_lease_is_not_taken_over(db: Db) -> None:
    # Embedded: a 0.5 s lease, renewed while the job runs 2.4 times that long. procrastinate:
    # the job outlives the 1 s stalled-worker timeout while two workers sweep every 0.2 s.
    queue = db.queue(lease_seconds=0.5)
    duration = 1.5 if db.backend == "postgres" else 1.2
    runs: list[int] = []

    async def long_job(context: JobContext, args: dict[str, Any]) -> None:
        runs.append(context.attempt)
        # The job's work: longer than a lease, or than the stalled-worker timeout.
        await asyncio.sleep(duration)

    registry = TaskRegistry()
    registry.register("long", long_job)
    async with db.engine.begin() as conn:
        await queue.enqueue(conn, "long", {})
    await asyncio.gather(queue.drain(registry, 20), queue.drain(registry, 20))

    assert runs == [1]
    assert await queue.counts() == counts(succeeded=1)


async def test_stop_when_idle_returns_once_nothing_is_runnable(db: Db) -> None:
    queue = db.queue()
    async with db.engine.begin() as conn:
        await queue.enqueue(conn, "record", {"key": "a"}, lock="x")
        await queue.enqueue(conn, "record", {"key": "b"}, lock="x")
        await queue.enqueue(
            conn, "record", {"key": "later"}, schedule_at=datetime.now(UTC) + timedelta(hours=1)
        )
    recorder = Recorder()
    await asyncio.wait_for(
        queue.run_worker(recorder.registry(), concurrency=3, stop_when_idle=True), 20
    )
    assert recorder.keys() == ["a", "b"]
    assert await queue.counts() == counts(todo=1, succeeded=2)


# -- embedded only ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Db]:
    url = f"sqlite:///{tmp_path / 'stocksync.db'}"
    engine = create_engine(url)
    await prepare_database("sqlite", engine)
    yield Db("sqlite", url, engine)
    await engine.dispose()


async def test_embedded_schedule_follows_the_injected_clock(sqlite_db: Db) -> None:
    clock = FakeClock()
    queue = sqlite_db.queue(clock=clock)
    async with sqlite_db.engine.begin() as conn:
        await queue.enqueue(
            conn, "record", {"key": "at-noon"}, schedule_at=clock.now + timedelta(minutes=10)
        )
    recorder = Recorder()
    registry = recorder.registry()

    await queue.drain(registry, 10)
    clock.now += timedelta(minutes=9, seconds=59)
    await queue.drain(registry, 10)
    assert recorder.keys() == []
    clock.now += timedelta(seconds=1)
    await queue.drain(registry, 10)
    assert recorder.keys() == ["at-noon"]


async def test_embedded_worker_is_woken_by_an_enqueue_in_its_process(sqlite_db: Db) -> None:
    # A poll interval far longer than the deadline: only the wake-up can run the job in time.
    queue = sqlite_db.queue(poll_interval=60.0)
    done = asyncio.Event()

    async def note(context: JobContext, args: dict[str, Any]) -> None:
        done.set()

    registry = TaskRegistry()
    registry.register("note", note)
    worker = asyncio.create_task(queue.run_worker(registry))
    try:
        for _ in range(2):
            # The second enqueue finds the worker waiting, its first job done.
            done.clear()
            async with sqlite_db.engine.begin() as conn:
                await queue.enqueue(conn, "note", {})
            await asyncio.wait_for(done.wait(), 5)
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker


async def test_embedded_worker_is_woken_by_an_enqueue_in_another_process(sqlite_db: Db) -> None:
    """The web process records a webhook and enqueues its job: the worker, in another process,
    starts it at once, not at its next poll."""
    queue = sqlite_db.queue(poll_interval=60.0)
    done = asyncio.Event()

    async def note(context: JobContext, args: dict[str, Any]) -> None:
        done.set()

    registry = TaskRegistry()
    registry.register("note", note)
    # Another engine on the same file, with its own queue object: what another process has.
    elsewhere = create_engine(sqlite_db.url)
    other_queue = Db("sqlite", sqlite_db.url, elsewhere).queue(poll_interval=60.0)
    worker = asyncio.create_task(queue.run_worker(registry))
    try:
        for _ in range(2):
            done.clear()
            async with elsewhere.begin() as conn:
                await other_queue.enqueue(conn, "note", {})
            await asyncio.wait_for(done.wait(), 10)
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
        await elsewhere.dispose()


async def test_embedded_lost_final_attempt_is_dead_lettered(sqlite_db: Db) -> None:
    clock = FakeClock()
    queue = sqlite_db.queue(clock=clock, max_attempts=2)
    assert isinstance(queue, EmbeddedJobQueue)
    async with sqlite_db.engine.begin() as conn:
        await queue.enqueue(conn, "record", {"key": "poison"})
    # Two runs whose workers died (fetched, never finished, leases expired).
    for _ in range(2):
        assert await queue.fetch("dead-worker") is not None
        clock.now += timedelta(seconds=2)
    recorder = Recorder()
    await queue.drain(recorder.registry(), 10)

    assert recorder.keys() == []
    assert await queue.counts() == counts(failed=1)
    [(level, kind, details, retry)] = await dead_letters(sqlite_db.engine)
    assert (level, kind, details["attempts"]) == ("error", "job_dead_lettered", 2)
    assert "lease expired" in details["error"]
    assert retry == {"task": "record", "args": {"key": "poison"}}


async def test_a_dead_letter_names_the_store_of_the_job(sqlite_db: Db) -> None:
    # Which store a job's arguments name is the engine's to say; the queue asks it.
    queue = sqlite_db.queue(max_attempts=1, store_of_job=store_of_dead_letter)
    async with sqlite_db.engine.begin() as conn:
        store_id = (
            await conn.execute(
                stores.insert()
                .values(
                    platform="shopify",
                    external_id="a.myshopify.com",
                    name="A",
                    is_source=False,
                    is_destination=True,
                    status="active",
                    hidden_tags=[],
                    settings={},
                    created_at=datetime.now(UTC),
                )
                .returning(stores.c.id)
            )
        ).scalar_one()
        await queue.enqueue(conn, "gone", {"store_id": store_id})
        await queue.enqueue(conn, "gone", {"store_id": store_id + 1000})

    async def gone(context: JobContext, args: dict[str, Any]) -> None:
        raise PermanentJobError("the store uninstalled the app")

    registry = TaskRegistry()
    registry.register("gone", gone)
    await queue.drain(registry, 10)
    async with sqlite_db.engine.connect() as conn:
        logged = (
            await conn.scalars(select(activity_log.c.store_id).order_by(activity_log.c.id))
        ).all()
    # An unknown store (deleted meanwhile) is logged system-wide rather than not at all.
    assert logged == [store_id, None]


async def test_embedded_unknown_task_is_dead_lettered_without_retry(sqlite_db: Db) -> None:
    queue = sqlite_db.queue(max_attempts=5)
    async with sqlite_db.engine.begin() as conn:
        await queue.enqueue(conn, "renamed_task", {"item": "7"})
    await queue.drain(Recorder().registry(), 10)
    assert await queue.counts() == counts(failed=1)
    [(_, kind, details, retry)] = await dead_letters(sqlite_db.engine)
    assert (kind, details["attempts"]) == ("job_dead_lettered", 1)
    assert details["error"] == "PermanentJobError: no handler for task 'renamed_task'"
    assert retry == {"task": "renamed_task", "args": {"item": "7"}}


async def test_embedded_history_keeps_succeeded_jobs_for_the_retention(sqlite_db: Db) -> None:
    clock = FakeClock()
    queue = sqlite_db.queue(clock=clock, succeeded_retention=timedelta(hours=1))
    assert isinstance(queue, EmbeddedJobQueue)
    async with sqlite_db.engine.begin() as conn:
        await queue.enqueue(conn, "record", {"key": "a"})
    await queue.drain(Recorder().registry(), 10)
    assert await queue.prune_history() == 0
    clock.now += timedelta(hours=1, seconds=1)
    assert await queue.prune_history() == 1
    async with sqlite_db.engine.connect() as conn:
        assert (await conn.scalars(select(jobs.c.id))).all() == []


# -- procrastinate only ---------------------------------------------------------------------


@pytest.fixture
async def pg_db(empty_pg_url: str) -> AsyncIterator[Db]:
    engine = create_engine(empty_pg_url)
    await prepare_database("postgres", engine)
    yield Db("postgres", empty_pg_url, engine)
    await engine.dispose()


async def strand_a_job(queue: ProcrastinateJobQueue, app: procrastinate.App) -> int:
    """A job taken by a worker that then vanished (unregistered, as a pruned dead one is)."""
    worker_id = await app.job_manager.register_worker()
    job = await app.job_manager.fetch_job(queues=None, worker_id=worker_id)
    assert job is not None
    assert job.id is not None
    await app.job_manager.unregister_worker(worker_id)
    return job.id


async def test_procrastinate_sweep_recovers_a_stalled_job_once(pg_db: Db) -> None:
    queue = pg_db.queue(max_attempts=3)
    assert isinstance(queue, ProcrastinateJobQueue)
    async with pg_db.engine.begin() as conn:
        await queue.enqueue(conn, "record", {"key": "a"}, queueing_lock="q")
    app = queue.build_app(Recorder().registry())
    async with app.open_async():
        await strand_a_job(queue, app)
        assert await queue.counts() == counts(doing=1)
        # Two workers sweeping at the same moment recover the job once between them.
        recovered = await asyncio.gather(queue.sweep_stalled(app), queue.sweep_stalled(app))
        assert sorted(recovered) == [0, 1]
        [job] = await app.job_manager.list_jobs_async()
    assert (job.status, job.attempts, job.queueing_lock) == ("todo", 1, None)


async def test_procrastinate_sweep_dead_letters_a_lost_final_attempt(pg_db: Db) -> None:
    queue = pg_db.queue(max_attempts=1)
    assert isinstance(queue, ProcrastinateJobQueue)
    async with pg_db.engine.begin() as conn:
        await queue.enqueue(conn, "record", {"key": "poison"})
    app = queue.build_app(Recorder().registry())
    async with app.open_async():
        await strand_a_job(queue, app)
        assert await queue.sweep_stalled(app) == 1
    assert await queue.counts() == counts(failed=1)
    [(level, kind, details, retry)] = await dead_letters(pg_db.engine)
    assert (level, kind, details["attempts"]) == ("error", "job_dead_lettered", 1)
    assert "no heartbeat" in details["error"]
    assert retry == {"task": "record", "args": {"key": "poison"}}


async def backend_pid(conn: AsyncConnection) -> int:
    return int(await conn.scalar(text("SELECT pg_backend_pid()")))


async def until_blocked(engine: AsyncEngine, pid: int, by: int, task: asyncio.Task[Any]) -> None:
    """Return once backend ``pid`` waits for a lock held by backend ``by``.

    Fails if ``task`` (the one that should be waiting) ends first, or after a deadline.
    """
    deadline = time.monotonic() + 10.0
    async with engine.connect() as conn:
        while True:
            blocked = await conn.scalar(
                text("SELECT CAST(:by AS integer) = ANY(pg_blocking_pids(:pid))"),
                {"pid": pid, "by": by},
            )
            await conn.rollback()
            if blocked:
                return
            assert not task.done(), f"did not wait for backend {by}: {task.result()!r}"
            assert time.monotonic() < deadline, f"backend {pid} never waited for backend {by}"
            await asyncio.sleep(0.01)


async def fetch_in(conn: AsyncConnection, queue: ProcrastinateJobQueue) -> int | None:
    """A worker's fetch, on ``conn`` and in its transaction (no worker id)."""
    job_id = await conn.scalar(
        text("SELECT id FROM procrastinate_fetch_job_v2(CAST(:queues AS varchar[]), NULL)"),
        {"queues": [queue.queue_name]},
    )
    return None if job_id is None else int(job_id)


async def test_procrastinate_coalesced_job_is_not_fetched_before_the_enqueuer_commits(
    pg_db: Db,
) -> None:
    # The coalesced job must see what the enqueuing transaction wrote (here an inbox row):
    # a worker that took it before that transaction committed would miss it for good.
    queue = pg_db.queue()
    assert isinstance(queue, ProcrastinateJobQueue)
    async with pg_db.engine.begin() as conn:
        assert await queue.enqueue(conn, "record", {"key": "a"}, queueing_lock="flush:7") is True
    app = queue.build_app(Recorder().registry())
    async with app.open_async():
        worker_id = await app.job_manager.register_worker()
        async with pg_db.engine.connect() as webhook:
            await add_inbox_row(webhook, "e1")
            assert (
                await queue.enqueue(webhook, "record", {"key": "b"}, queueing_lock="flush:7")
                is False
            )
            assert await app.job_manager.fetch_job([queue.queue_name], worker_id) is None
            await webhook.commit()
        job = await app.job_manager.fetch_job([queue.queue_name], worker_id)
    assert job is not None
    assert job.task_kwargs == {"key": "a"}
    assert await queue.counts() == counts(doing=1)


async def test_procrastinate_enqueue_during_a_fetch_of_the_waiting_job_adds_a_job(
    pg_db: Db,
) -> None:
    queue = pg_db.queue()
    assert isinstance(queue, ProcrastinateJobQueue)
    async with pg_db.engine.begin() as conn:
        assert await queue.enqueue(conn, "record", {"key": "a"}, queueing_lock="flush:7") is True
    async with pg_db.engine.connect() as fetcher, pg_db.engine.connect() as webhook:
        # A worker in the middle of its fetch: the job is taken, not committed yet.
        assert await fetch_in(fetcher, queue) is not None
        enqueue = asyncio.create_task(
            queue.enqueue(webhook, "record", {"key": "b"}, queueing_lock="flush:7")
        )
        await until_blocked(
            pg_db.engine, await backend_pid(webhook), await backend_pid(fetcher), enqueue
        )
        await fetcher.commit()
        # The job it found is running now: a new one is needed, and kept.
        assert await asyncio.wait_for(enqueue, 10) is True
        await webhook.commit()
    assert await queue.counts() == counts(todo=1, doing=1)


async def test_procrastinate_enqueue_after_a_queueing_lock_conflict_holds_the_other_job(
    pg_db: Db,
) -> None:
    queue = pg_db.queue()
    assert isinstance(queue, ProcrastinateJobQueue)
    app = queue.build_app(Recorder().registry())
    async with app.open_async():
        worker_id = await app.job_manager.register_worker()
        async with pg_db.engine.connect() as first, pg_db.engine.connect() as second:
            # ``first`` enqueues and has not committed: ``second`` cannot see its job, inserts
            # one too and waits on the unique index for ``first`` to end.
            assert await queue.enqueue(first, "record", {"key": "a"}, queueing_lock="q") is True
            enqueue = asyncio.create_task(
                queue.enqueue(second, "record", {"key": "b"}, queueing_lock="q")
            )
            await until_blocked(
                pg_db.engine, await backend_pid(second), await backend_pid(first), enqueue
            )
            await first.commit()
            assert await asyncio.wait_for(enqueue, 10) is False
            # ``second`` coalesced onto ``first``'s job: held until ``second`` commits.
            assert await app.job_manager.fetch_job([queue.queue_name], worker_id) is None
            await second.commit()
        job = await app.job_manager.fetch_job([queue.queue_name], worker_id)
    assert job is not None
    assert job.task_kwargs == {"key": "a"}
    assert await queue.counts() == counts(doing=1)


async def test_procrastinate_enqueue_after_a_conflict_with_a_job_fetched_since_adds_a_job(
    pg_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = pg_db.queue()
    assert isinstance(queue, ProcrastinateJobQueue)
    app = queue.build_app(Recorder().registry())
    hold_waiting = queue._hold_waiting
    holds = 0

    async def hold_after_a_fetch(conn: AsyncConnection, queueing_lock: str) -> bool:
        # Between the conflict and the next look, a worker takes the job that conflicted.
        nonlocal holds
        holds += 1
        if holds == 2:
            assert await app.job_manager.fetch_job([queue.queue_name], worker_id) is not None
        return await hold_waiting(conn, queueing_lock)

    async with app.open_async():
        worker_id = await app.job_manager.register_worker()
        async with pg_db.engine.connect() as first, pg_db.engine.connect() as second:
            assert await queue.enqueue(first, "record", {"key": "a"}, queueing_lock="q") is True
            monkeypatch.setattr(queue, "_hold_waiting", hold_after_a_fetch)
            enqueue = asyncio.create_task(
                queue.enqueue(second, "record", {"key": "b"}, queueing_lock="q")
            )
            await until_blocked(
                pg_db.engine, await backend_pid(second), await backend_pid(first), enqueue
            )
            await first.commit()
            assert await asyncio.wait_for(enqueue, 10) is True
            await second.commit()
    assert holds == 2
    assert await queue.counts() == counts(todo=1, doing=1)


async def test_procrastinate_enqueue_gives_up_when_the_queueing_lock_never_settles(
    pg_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = pg_db.queue()
    assert isinstance(queue, ProcrastinateJobQueue)
    async with pg_db.engine.begin() as conn:
        assert await queue.enqueue(conn, "record", {"key": "a"}, queueing_lock="q") is True

    async def never_held(conn: AsyncConnection, queueing_lock: str) -> bool:
        return False

    monkeypatch.setattr(queue, "_hold_waiting", never_held)
    async with pg_db.engine.connect() as conn:
        with pytest.raises(RuntimeError, match="queueing lock 'q'"):
            await queue.enqueue(conn, "record", {"key": "b"}, queueing_lock="q")
        # Only the savepoints rolled back: the caller's transaction is still usable.
        assert await conn.scalar(text("SELECT 1")) == 1
    assert await queue.counts() == counts(todo=1)


async def test_procrastinate_schema_is_created_once(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        assert await ensure_procrastinate_schema(engine) is True
        assert await ensure_procrastinate_schema(engine) is False
        assert "CREATE TABLE procrastinate_jobs" in procrastinate_schema_sql()
    finally:
        await engine.dispose()


async def test_each_run_logs_its_outcome_and_duration_the_same_on_every_backend(db: Db) -> None:
    queue = db.queue(max_attempts=2)
    runs: list[str] = []

    async def flaky(context: JobContext, args: dict[str, Any]) -> None:
        runs.append(f"flaky {context.attempt}")
        if context.attempt == 1:
            raise ValueError("platform answered 502")

    async def hopeless(context: JobContext, args: dict[str, Any]) -> None:
        runs.append("hopeless")
        raise PermanentJobError("variant 42 no longer exists")

    recorder = Recorder()
    registry = recorder.registry(flaky=flaky, hopeless=hopeless)
    async with db.engine.begin() as conn:
        await queue.enqueue(conn, "record", {"key": "a", "store_id": 7, "work": 0.01})
        await queue.enqueue(conn, "flaky", {"connection_id": 3}, lock="l")
        await queue.enqueue(conn, "hopeless", {"inbox_id": 11, "order_id": "9001"}, lock="l")
    with capture_logs("INFO") as captured:
        await queue.drain(registry, 20)
    assert sorted(runs) == ["flaky 1", "flaky 2", "hopeless"]

    lines = captured.events("job_run")
    outcomes = sorted((line["kind"], line["attempt"], line["outcome"]) for line in lines)
    assert outcomes == [
        ("flaky", 1, "retry"),
        ("flaky", 2, "ok"),
        ("hopeless", 1, "failed"),
        ("record", 1, "ok"),
    ]
    by_kind = {(line["kind"], line["outcome"]): line for line in lines}
    for line in lines:
        assert isinstance(line["job_id"], int)
        assert isinstance(line["duration_ms"], float)
        assert isinstance(line["worker"], str)
    assert by_kind["record", "ok"]["store_id"] == 7
    assert by_kind["record", "ok"]["duration_ms"] >= 10.0
    assert "key" not in by_kind["record", "ok"]  # ids only, not the arguments
    retry = by_kind["flaky", "retry"]
    assert (retry["level"], retry["connection_id"]) == ("warning", 3)
    assert (retry["error"], retry["reason"]) == ("ValueError", "ValueError: platform answered 502")
    failed = by_kind["hopeless", "failed"]
    assert (failed["level"], failed["inbox_id"], failed["order_id"]) == ("error", 11, "9001")
    assert failed["reason"] == "PermanentJobError: variant 42 no longer exists"
    assert "variant 42 no longer exists" in failed["exception"]
