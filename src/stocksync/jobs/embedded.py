"""The embedded job queue: procrastinate's job model on our own ``jobs`` table.

Made for one SQLite file and any number of worker processes on the same machine; it also
runs on PostgreSQL through SQLAlchemy (production PostgreSQL uses procrastinate instead).

How a job moves:

- ``todo`` -> ``doing``: one short write transaction (``fetch``) picks the next runnable job
  and takes a *lease* on it (``lease_until``). On SQLite every transaction starts with
  ``BEGIN IMMEDIATE``, which serialises fetches across processes; on PostgreSQL a
  transaction-scoped advisory lock does the same. Serialised fetches are what make the
  ``lock`` rule hold: two fetches can never both see a lock as free.
- While the handler runs, the worker renews the leases of all its jobs every third of the
  lease, so a long job is never taken from a live worker.
- A job whose lease expired belongs to a dead (killed, frozen) worker: the next fetch takes it
  over as if it were waiting, before any later job with the same lock. A job that was on its
  last attempt when its worker died is dead-lettered instead of run again, so a job that
  kills its worker (out of memory, say) cannot crash workers forever.
- ``doing`` -> ``succeeded``, or ``failed`` (dead-letter, logged in the activity log), or back
  to ``todo`` with a backoff. Every outcome is guarded by (worker, attempt): a worker that
  lost its lease cannot overwrite what the new owner did.

Stopping: a cancelled worker (the CLI and the web app cancel it on SIGINT and at shutdown)
cancels its handlers and hands their jobs back at once. A worker that dies without that
(SIGKILL, a crash, SIGTERM left to its default action) leaves its jobs to their lease: they run
again once it expires, within ``lease_seconds``.

History: succeeded jobs are kept for ``succeeded_retention`` (default one hour, for counts,
the dashboard and debugging) and then deleted by the workers, at most once a minute, so the
table stays small and the fetch stays fast. Failed jobs are the dead-letter queue and are
kept; the activity log entry says how to run them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync.jobs.queue import (
    JOB_STATUSES,
    Handler,
    JobContext,
    JsonArgs,
    PermanentJobError,
    TaskRegistry,
    worker_name,
)
from stocksync.jobs.retry import (
    ExponentialBackoff,
    StoreOfJob,
    describe_error,
    is_final,
    record_dead_letter,
)
from stocksync.jobs.runs import run_logged
from stocksync.storage.db import is_sqlite, reading
from stocksync.storage.tables import jobs

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Any constant works; it only has to differ from other advisory locks in the database.
_PG_FETCH_LOCK_KEY = 0x53_74_6F_63  # "Stoc"
_PRUNE_EVERY_SECONDS = 60.0
# After a database error in a long-running worker: wait, then try again.
_ERROR_PAUSE_SECONDS = 1.0
_RELEASE_TIMEOUT_SECONDS = 5.0


# A scheduled job is started this much after its time at the earliest: not a busy loop.
_SOONEST_WAKE_SECONDS = 0.005
# How often a worker on a SQLite file looks whether another process committed (see
# ``_watch_commits``): a stat of the WAL file, no query unless it changed.
_COMMIT_WATCH_SECONDS = 0.01


def _unknown_task(error: LookupError) -> Handler:
    async def refuse(_context: JobContext, _args: dict[str, Any]) -> None:
        # As procrastinate does for an unknown task: no retry. The activity log entry keeps
        # what is needed to run it again once a worker knows the task.
        raise PermanentJobError(str(error)) from error

    return refuse


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # A clock may give naive datetimes; everything we store is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class FetchedJob:
    """A job a worker has just taken (status doing, leased to it)."""

    id: int
    task: str
    args: dict[str, Any]
    attempts: int  # including the run that was just fetched
    max_attempts: int


class _Until(enum.Enum):
    FOREVER = "forever"
    IDLE = "idle"  # nothing runnable now and nothing running in this worker
    QUIET = "quiet"  # nothing running anywhere and nothing due within the horizon


class EmbeddedJobQueue:
    """The ``JobQueue`` on the ``jobs`` table. See the module docstring for the life of a job.

    ``clock`` and ``backoff`` (with its seeded ``rng``) are injectable for tests.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        lease_seconds: float = 30.0,
        max_attempts: int = 8,
        backoff: ExponentialBackoff | None = None,
        poll_interval: float = 0.05,
        drain_horizon: float = 1.0,
        succeeded_retention: timedelta = timedelta(hours=1),
        clock: Clock = utcnow,
        queue_name: str = "default",
        store_of_job: StoreOfJob | None = None,
    ) -> None:
        if lease_seconds <= 0 or poll_interval <= 0:
            raise ValueError("lease_seconds and poll_interval must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.engine = engine
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.backoff = backoff or ExponentialBackoff()
        self.poll_interval = poll_interval
        self.drain_horizon = timedelta(seconds=drain_horizon)
        self.succeeded_retention = succeeded_retention
        self.clock = clock
        self.queue_name = queue_name
        self.store_of_job = store_of_job  # whose activity log shows a job given up
        # One event per running worker of this object: an enqueue wakes them all at once.
        self._wakeups: set[asyncio.Event] = set()
        self._last_prune = float("-inf")

    def _now(self) -> datetime:
        return _aware(self.clock())

    # -- enqueue ---------------------------------------------------------------------------

    async def enqueue(
        self,
        conn: AsyncConnection,
        task: str,
        args: JsonArgs,
        *,
        lock: str | None = None,
        queueing_lock: str | None = None,
        schedule_at: datetime | None = None,
        priority: int = 0,
    ) -> bool:
        """Insert in the caller's transaction; False when a waiting job has ``queueing_lock``.

        The coalescing is an ``ON CONFLICT DO NOTHING`` on the partial unique index over
        waiting jobs: unlike a caught unique violation it never aborts the caller's
        transaction, on SQLite or on PostgreSQL.
        """
        if schedule_at is not None and schedule_at.tzinfo is None:
            raise ValueError("schedule_at must be timezone-aware")
        now = self._now()
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = (
            insert(jobs)
            .values(
                queue=self.queue_name,
                task=task,
                args=dict(args),
                lock=lock,
                queueing_lock=queueing_lock,
                status="todo",
                priority=priority,
                scheduled_at=_aware(schedule_at) if schedule_at is not None else now,
                attempts=0,
                max_attempts=self.max_attempts,
                created_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=[jobs.c.queueing_lock], index_where=text("status = 'todo'")
            )
            .returning(jobs.c.id)
        )
        if (await conn.execute(stmt)).scalar_one_or_none() is None:
            # SQLite has one writer (BEGIN IMMEDIATE): no fetch takes that job before we commit.
            return False
        # The caller has not committed yet, so a worker woken now may miss the job; it then
        # finds it at its next poll, one short interval later.
        for wakeup in self._wakeups:
            wakeup.set()
        return True

    # -- fetch -----------------------------------------------------------------------------

    def _candidate(self, now: datetime) -> Select[Any]:
        j = jobs.alias("j")
        other = jobs.alias("other")
        runnable = or_(
            and_(j.c.status == "todo", j.c.scheduled_at <= now),
            and_(j.c.status == "doing", j.c.lease_until < now),
        )
        # procrastinate's rule: a lock is taken by a running job (valid lease) and by a job
        # to resume (expired lease), and among waiting jobs the higher priority, then the
        # earlier id, goes first. A job to resume only yields to another running job.
        earlier_waiting = and_(
            j.c.status == "todo",
            other.c.status == "todo",
            or_(
                other.c.priority > j.c.priority,
                and_(other.c.priority == j.c.priority, other.c.id < j.c.id),
            ),
        )
        blocked = exists(
            select(literal(1))
            .select_from(other)
            .where(
                other.c.lock == j.c.lock,
                other.c.id != j.c.id,
                or_(other.c.status == "doing", earlier_waiting),
            )
        )
        return (
            select(j.c.id, j.c.task, j.c.args, j.c.attempts, j.c.max_attempts)
            .where(j.c.queue == self.queue_name, runnable, or_(j.c.lock.is_(None), ~blocked))
            .order_by(j.c.priority.desc(), j.c.id)
            .limit(1)
        )

    async def _serialise_fetch(self, conn: AsyncConnection) -> None:
        if not is_sqlite(conn):
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_FETCH_LOCK_KEY}
            )

    async def fetch(self, worker: str) -> FetchedJob | None:
        """Take the next runnable job for ``worker`` (marked doing, leased), or None."""
        now = self._now()
        async with self.engine.begin() as conn:
            await self._serialise_fetch(conn)
            await self._dead_letter_lost_final_attempts(conn, now)
            row = (await conn.execute(self._candidate(now))).first()
            if row is None:
                return None
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == row.id)
                .values(
                    status="doing",
                    lease_until=now + self.lease,
                    worker=worker,
                    attempts=jobs.c.attempts + 1,
                )
            )
        return FetchedJob(
            id=row.id,
            task=row.task,
            args=dict(row.args),
            attempts=row.attempts + 1,
            max_attempts=row.max_attempts,
        )

    async def _dead_letter_lost_final_attempts(self, conn: AsyncConnection, now: datetime) -> None:
        lost = (
            await conn.execute(
                select(jobs.c.id, jobs.c.task, jobs.c.args, jobs.c.attempts).where(
                    jobs.c.queue == self.queue_name,
                    jobs.c.status == "doing",
                    jobs.c.lease_until < now,
                    jobs.c.attempts >= jobs.c.max_attempts,
                )
            )
        ).all()
        error = "the worker running the last attempt stopped (its lease expired)"
        for row in lost:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == row.id)
                .values(status="failed", finished_at=now, lease_until=None, last_error=error)
            )
            await record_dead_letter(
                conn,
                job_id=row.id,
                task=row.task,
                args=row.args,
                error=error,
                attempts=row.attempts,
                store_of_job=self.store_of_job,
            )

    # -- outcomes --------------------------------------------------------------------------

    @staticmethod
    def _owned(job: FetchedJob, worker: str) -> ColumnElement[bool]:
        return and_(
            jobs.c.id == job.id,
            jobs.c.status == "doing",
            jobs.c.worker == worker,
            jobs.c.attempts == job.attempts,
        )

    async def _record_success(self, job: FetchedJob, worker: str) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(jobs)
                .where(self._owned(job, worker))
                .values(status="succeeded", finished_at=self._now(), lease_until=None)
            )
        if result.rowcount != 1:
            logger.warning(
                "job %s finished after its lease was lost; its new owner decides its outcome",
                job.id,
                extra={"job_id": job.id, "task": job.task, "worker": worker},
            )

    async def _record_failure(self, job: FetchedJob, worker: str, exc: Exception) -> None:
        error = describe_error(exc)
        now = self._now()
        final = is_final(exc, job.attempts, job.max_attempts)
        async with self.engine.begin() as conn:
            if final:
                result = await conn.execute(
                    update(jobs)
                    .where(self._owned(job, worker))
                    .values(status="failed", finished_at=now, lease_until=None, last_error=error)
                )
                if result.rowcount == 1:
                    await record_dead_letter(
                        conn,
                        job_id=job.id,
                        task=job.task,
                        args=job.args,
                        error=error,
                        attempts=job.attempts,
                        store_of_job=self.store_of_job,
                    )
            else:
                delay = timedelta(seconds=self.backoff.delay(job.attempts))
                # A job waiting for its retry gives up its queueing lock: a new job with that
                # lock may be waiting already (enqueued while this one ran), and the partial
                # unique index admits only one waiting job per queueing lock.
                result = await conn.execute(
                    update(jobs)
                    .where(self._owned(job, worker))
                    .values(
                        status="todo",
                        scheduled_at=now + delay,
                        lease_until=None,
                        queueing_lock=None,
                        last_error=error,
                    )
                )
        # The failure itself was logged where the job ran (jobs.runs).
        if result.rowcount != 1:
            logger.warning("job %s failed after its lease was lost", job.id)

    async def _renew_leases(self, worker: str, job_ids: list[int]) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(job_ids), jobs.c.status == "doing", jobs.c.worker == worker)
                .values(lease_until=self._now() + self.lease)
            )
        if result.rowcount != len(job_ids):
            logger.warning(
                "worker %s lost the lease of %d job(s); they may run again elsewhere",
                worker,
                len(job_ids) - result.rowcount,
            )

    async def _release(self, worker: str, running: list[FetchedJob]) -> None:
        """Hand interrupted jobs back at once: lease expired now, the interrupted run uncounted."""
        now = self._now()
        async with self.engine.begin() as conn:
            for job in running:
                await conn.execute(
                    update(jobs)
                    .where(self._owned(job, worker))
                    .values(lease_until=now, attempts=jobs.c.attempts - 1)
                )

    async def prune_history(self) -> int:
        """Delete succeeded jobs older than the retention; the number deleted."""
        cutoff = self._now() - self.succeeded_retention
        async with self.engine.begin() as conn:
            result = await conn.execute(
                jobs.delete().where(
                    jobs.c.queue == self.queue_name,
                    jobs.c.status == "succeeded",
                    jobs.c.finished_at < cutoff,
                )
            )
        return int(result.rowcount)

    # -- running ---------------------------------------------------------------------------

    async def _execute(
        self,
        registry: TaskRegistry,
        job: FetchedJob,
        worker: str,
        outcomes: set[asyncio.Task[None]],
    ) -> None:
        try:
            handler = registry.get(job.task)
        except LookupError as exc:
            handler = _unknown_task(exc)
        context = JobContext(
            job_id=job.id, task=job.task, attempt=job.attempts, max_attempts=job.max_attempts
        )
        try:
            await run_logged(handler, context, dict(job.args), worker=worker)
        except Exception as exc:
            outcome = asyncio.create_task(self._record_failure(job, worker, exc))
        else:
            outcome = asyncio.create_task(self._record_success(job, worker))
        # Recording the outcome is not interrupted by a shutdown: the shutdown waits for it.
        outcomes.add(outcome)
        outcome.add_done_callback(outcomes.discard)
        try:
            await asyncio.shield(outcome)
        except SQLAlchemyError:
            logger.exception(
                "could not record the outcome of job %s; it will run again after its lease",
                job.id,
            )

    async def _heartbeat(
        self, worker: str, running: Mapping[asyncio.Task[None], FetchedJob]
    ) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            job_ids = [job.id for job in running.values()]
            if not job_ids:
                continue
            try:
                await self._renew_leases(worker, job_ids)
            except SQLAlchemyError:
                logger.exception("could not renew the leases of worker %s", worker)

    async def _next_due_in(self) -> float:
        """Seconds until the next job scheduled in the future falls due, at most one poll
        interval: a debounced or paced job then starts on time, not up to a poll late."""
        now = self._now()
        try:
            async with reading(self.engine) as conn:
                first = await conn.scalar(
                    select(func.min(jobs.c.scheduled_at)).where(
                        jobs.c.queue == self.queue_name,
                        jobs.c.status == "todo",
                        jobs.c.scheduled_at > now,
                    )
                )
        except SQLAlchemyError:
            return self.poll_interval
        if first is None:
            return self.poll_interval
        wait = (_aware(first) - now).total_seconds()
        return min(self.poll_interval, max(_SOONEST_WAKE_SECONDS, wait))

    async def _watch_commits(self, wal: Path, wakeup: asyncio.Event) -> None:
        """Wake the worker when another process commits a job it can run now.

        An enqueue in this process wakes its workers at once; one in another process (the web
        process recording a webhook) would wait for the next poll, up to ``poll_interval``, at
        every such hop of a sale. SQLite appends every commit to the WAL file, so a change of
        its size or time is a commit somewhere: only then is the queue read (a read, no lock
        taken), and the worker woken only if a job is runnable now, so that commits of jobs
        that must wait (a lock held, a later time) cost no fetch."""
        last = _stamp(wal)
        while True:
            await asyncio.sleep(_COMMIT_WATCH_SECONDS)
            stamp = _stamp(wal)
            if stamp == last:
                continue
            last = stamp
            try:
                async with reading(self.engine) as conn:
                    runnable = await conn.scalar(select(exists(self._candidate(self._now()))))
            except SQLAlchemyError:
                continue
            if runnable:
                wakeup.set()

    async def _quiet(self) -> bool:
        """No job running anywhere and none due within the drain horizon."""
        due = self._now() + self.drain_horizon
        async with self.engine.connect() as conn:
            busy = await conn.scalar(
                select(
                    exists().where(
                        jobs.c.queue == self.queue_name,
                        or_(
                            jobs.c.status == "doing",
                            and_(jobs.c.status == "todo", jobs.c.scheduled_at <= due),
                        ),
                    )
                )
            )
        return not busy

    async def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune < _PRUNE_EVERY_SECONDS:
            return
        self._last_prune = time.monotonic()
        try:
            await self.prune_history()
        except SQLAlchemyError:
            logger.exception("could not prune the job history")

    async def _work(
        self, registry: TaskRegistry, *, concurrency: int, name: str | None, until: _Until
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        worker = name or worker_name()
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        running: dict[asyncio.Task[None], FetchedJob] = {}
        outcomes: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            running.pop(task, None)
            wakeup.set()

        heartbeat = asyncio.create_task(self._heartbeat(worker, running), name="job leases")
        wal = _wal_file(self.engine)
        watcher = (
            asyncio.create_task(self._watch_commits(wal, wakeup), name="job commits")
            # Only a long-lived worker: a drain (tests, one-shot commands) runs what its own
            # process enqueued, and would read the queue at each of its own commits.
            if wal is not None and until is _Until.FOREVER
            else None
        )
        try:
            while True:
                wakeup.clear()
                try:
                    while len(running) < concurrency:
                        job = await self.fetch(worker)
                        if job is None:
                            break
                        task = asyncio.create_task(
                            self._execute(registry, job, worker, outcomes),
                            name=f"job {job.task}[{job.id}]",
                        )
                        running[task] = job
                        task.add_done_callback(finished)
                    # With free slots left, the last fetch found nothing runnable.
                    if not running:
                        if until is _Until.IDLE:
                            return
                        if until is _Until.QUIET and await self._quiet():
                            return
                    if until is _Until.FOREVER:
                        await self._maybe_prune()
                except SQLAlchemyError:
                    if until is not _Until.FOREVER:
                        raise
                    logger.exception("job worker %s: database error, retrying", worker)
                    await asyncio.sleep(_ERROR_PAUSE_SECONDS)
                    continue
                pause = self.poll_interval
                if len(running) < concurrency:
                    pause = await self._next_due_in()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=pause)
        finally:
            self._wakeups.discard(wakeup)
            if watcher is not None:
                # Awaited: cancelled inside its read, it must close that connection now, not
                # when the loop is gone.
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            heartbeat.cancel()
            await self._shutdown(worker, running, outcomes, heartbeat)

    async def _shutdown(
        self,
        worker: str,
        running: dict[asyncio.Task[None], FetchedJob],
        outcomes: set[asyncio.Task[None]],
        heartbeat: asyncio.Task[None],
    ) -> None:
        """Stop the handlers still running and hand their jobs back.

        A cancelled worker (task cancelled, SIGTERM turned into a cancellation by the CLI)
        does not wait for its handlers: they are cancelled, their jobs' leases are expired
        at once and their interrupted attempt is not counted, so the next fetch, here or in
        another process, runs them again. If even that write fails (or the process is
        killed), the leases expire by themselves.
        """
        interrupted = list(running.values())
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, heartbeat, *outcomes, return_exceptions=True)
        if not interrupted:
            return
        try:
            await asyncio.wait_for(self._release(worker, interrupted), _RELEASE_TIMEOUT_SECONDS)
        except (SQLAlchemyError, TimeoutError, OSError):
            logger.warning(
                "could not hand back %d interrupted job(s); they run again after their lease",
                len(interrupted),
            )

    async def run_worker(
        self,
        registry: TaskRegistry,
        *,
        concurrency: int = 1,
        stop_when_idle: bool = False,
        name: str | None = None,
    ) -> None:
        """Run up to ``concurrency`` jobs at once until cancelled.

        The worker polls every ``poll_interval`` when it has a free slot, and wakes at once
        when a job is enqueued through this object in this process, or when one of its jobs
        ends. With ``stop_when_idle`` it returns as soon as nothing is runnable *now* and none
        of its own jobs runs: a job scheduled later, or blocked by a lock held in another
        worker, does not keep it alive (``drain`` waits for those).

        On cancellation, running handlers are cancelled and their jobs handed back (see
        ``_shutdown``): they run again, here or elsewhere, without waiting for their lease.
        """
        await self._work(
            registry,
            concurrency=concurrency,
            name=name,
            until=_Until.IDLE if stop_when_idle else _Until.FOREVER,
        )

    async def drain(
        self,
        registry: TaskRegistry,
        timeout: float = 30.0,  # noqa: ASYNC109 - a deadline is what drain is called with
        *,
        concurrency: int = 1,
    ) -> None:
        """Run jobs until quiet: none running in any worker, none due within ``drain_horizon``.

        A job of a dead worker keeps the queue busy until its lease expires and it has run
        again here. Raises ``TimeoutError`` when not quiet after ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._work(registry, concurrency=concurrency, name=None, until=_Until.QUIET)
        except TimeoutError:
            raise TimeoutError(f"job queue not quiet after {timeout} s") from None

    async def counts(self) -> dict[str, int]:
        """Jobs per status (every status in ``JOB_STATUSES`` present, zero included)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(jobs.c.status, func.count())
                    .where(jobs.c.queue == self.queue_name)
                    .group_by(jobs.c.status)
                )
            ).all()
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update({str(status): int(n) for status, n in rows})
        return counts


def _wal_file(engine: AsyncEngine) -> Path | None:
    """The WAL file of a SQLite database file, or None (PostgreSQL, an in-memory database)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(f"{url.database}-wal")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns)
