"""The procrastinate job queue, for PostgreSQL.

procrastinate brings the job model (lock, queueing lock, schedule, priority), LISTEN/NOTIFY
wake-ups and worker heartbeats. We add, around it:

- ``enqueue`` on *our* SQLAlchemy connection, inside a SAVEPOINT: a queueing-lock conflict is
  a unique violation, and without the savepoint it would abort the caller's whole transaction
  (the webhook's inbox row included). With it, only the savepoint rolls back and ``enqueue``
  returns False. Coalescing onto a waiting job locks it ``FOR SHARE`` until the caller's
  transaction ends: a worker taking it earlier would run it without what that transaction
  wrote (READ COMMITTED), and nothing would run for it afterwards. Workers fetch with ``FOR
  UPDATE SKIP LOCKED`` and pass over a held job; they take it at their next poll after the
  commit (no notification is sent for it). Share locks do not conflict with each other, and
  nothing else waits on a held job but for one case: retry (procrastinate's, the sweep's),
  ``_DROP_QUEUEING_LOCK``, finish and the recovery only touch ``doing`` (or ``failed``) jobs,
  pruning only finished ones, and we never cancel. The case: deleting a worker (unregistered
  at shutdown, pruned as stalled by the sweep or at a worker's start) sets ``worker_id`` to
  NULL, through the foreign key, on every job it ran, ``todo`` jobs awaiting a retry included.
  It waits for our commit, and it deadlocks only if our transaction then coalesces onto
  another such job it has already updated; PostgreSQL then aborts one side: the caller's
  transaction, or the deletion (the sweep prunes again later, a worker that could not
  unregister is pruned as stalled, one that could not prune at its start stops with an
  error). The caller's transaction must be READ COMMITTED (the default): under REPEATABLE
  READ, holding a job that a worker took since the snapshot is a serialization failure.
- retries with exponential backoff and jitter (``jobs.retry``), the same decision as the
  embedded queue, and an activity-log entry when a job is given up.
- the stalled-job sweep. procrastinate never runs again a job whose worker died: the job stays
  ``doing`` and, worse, blocks every later job with its lock. The sweep finds the jobs of
  workers whose heartbeat is older than ``stalled_worker_timeout`` and sends them back to the
  queue (or dead-letters them if the lost run was their last attempt).

Why the sweep is a background task in every worker and not a procrastinate periodic task:
both survive the death of one worker (every live worker sweeps; a periodic job is deferred by
every worker's deferrer), but a periodic task is a job like any other. It waits for a free
slot, so with every slot taken by long jobs nobody sweeps; it can itself be stranded on a
dying worker; it adds a row per run to the jobs table; and cron cannot go below a second,
which makes the fault tests slow. A background task has none of these problems. Several
workers sweeping at once is safe: each recovery re-checks, in one transaction with the row
locked, that the job is still ``doing`` for the dead worker the sweep saw.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
from procrastinate.exceptions import ConnectorException, JobAborted
from procrastinate.jobs import Job as ProcrastinateJob
from procrastinate.manager import QUEUEING_LOCK_CONSTRAINT
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from procrastinate.schema import SchemaManager
from procrastinate.worker import Worker
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync.config import async_url
from stocksync.jobs.queue import (
    JOB_STATUSES,
    Handler,
    JobContext,
    JsonArgs,
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

logger = logging.getLogger(__name__)

# Different from the embedded queue's fetch lock; only has to be unique in the database.
_SCHEMA_LOCK_KEY = 0x53_74_6F_64
_PRUNE_EVERY_SECONDS = 60.0


def procrastinate_schema_sql() -> str:
    """procrastinate's schema, exactly as the installed version ships it.

    It is several statements and contains ``%`` signs: run it on a DBAPI cursor without
    parameters, or through SQLAlchemy's ``exec_driver_sql`` with ``%`` doubled (psycopg
    reads ``%`` as a placeholder whenever parameters, even empty ones, are passed).
    """
    return str(SchemaManager.get_schema())


async def ensure_procrastinate_schema(engine: AsyncEngine) -> bool:
    """Create procrastinate's schema unless ``procrastinate_jobs`` exists; True if created.

    For tests and first starts without migrations; concurrent callers wait for each other.
    """
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        present = await conn.scalar(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL"))
        if present:
            return False
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        # On the driver connection, without parameters: psycopg then sends the script as
        # one simple query, in the transaction SQLAlchemy opened on this same connection.
        await driver.execute(procrastinate_schema_sql())
    return True


def libpq_conninfo(database_url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``, ``postgres://``) as a libpq URI."""
    url = make_url(async_url(database_url)).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _stop(worker: Worker) -> None:
    worker.stop()  # type: ignore[no-untyped-call]  # procrastinate leaves it unannotated


async def _run(worker: Worker) -> None:
    await worker.run()  # type: ignore[no-untyped-call]  # procrastinate leaves it unannotated


class BackoffRetryStrategy(BaseRetryStrategy):
    """procrastinate's side of ``jobs.retry``: same backoff, same moment to give up.

    procrastinate counts in ``job.attempts`` the runs that already ended, so the run that
    just failed is attempt ``job.attempts + 1``.
    """

    def __init__(
        self,
        max_attempts: int,
        backoff: ExponentialBackoff,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.clock = clock or (lambda: datetime.now(UTC))

    def get_retry_decision(
        self, *, exception: BaseException, job: ProcrastinateJob
    ) -> RetryDecision | None:
        if isinstance(exception, asyncio.CancelledError | JobAborted):
            # The worker is stopping: the job did not fail, hand it back at once.
            return RetryDecision(retry_at=self.clock())
        if not isinstance(exception, Exception):
            return None
        attempt = job.attempts + 1
        if is_final(exception, attempt, self.max_attempts):
            return None
        delay = timedelta(seconds=self.backoff.delay(attempt))
        return RetryDecision(retry_at=self.clock() + delay)


# The waiting job with this queueing lock, if any, held in ``todo`` until our transaction ends.
# procrastinate_fetch_job_v2 picks its job with ``FOR UPDATE OF jobs SKIP LOCKED``, which
# skips a row held ``FOR SHARE``. (``FOR KEY SHARE`` would not hold it: the fetch's UPDATE of
# the status is not a key update.) A worker in the middle of a fetch holds the row ``FOR
# UPDATE``: we wait for it, and READ COMMITTED then re-checks the WHERE on the new version,
# ``doing``, so no row comes back and a new job is inserted.
_HOLD_WAITING = text(
    "SELECT id FROM procrastinate_jobs"
    " WHERE queueing_lock = :queueing_lock AND status = 'todo' FOR SHARE"
)
# Each failed attempt means a job with our queueing lock was committed by another transaction
# and taken by a worker between our insert and our next look: a few in a row do not happen.
_ENQUEUE_ATTEMPTS = 5
_DEFER = text(
    """
    SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(
        CAST(:queue AS varchar), CAST(:task AS varchar), CAST(:priority AS integer),
        CAST(:lock AS text), CAST(:queueing_lock AS text), CAST(:args AS jsonb),
        CAST(:scheduled_at AS timestamptz)
    )]::procrastinate_job_to_defer_v1[])) AS id
    """
)

# Mirrors the WHERE clause of procrastinate_fetch_job_v2: could a worker take a job now?
_IDLE = text(
    """
    SELECT
        EXISTS (
            SELECT 1 FROM procrastinate_jobs
            WHERE status = 'doing' AND worker_id = :worker_id
        ) AS running,
        EXISTS (
            SELECT 1 FROM procrastinate_jobs AS jobs
            WHERE jobs.status = 'todo'
              AND jobs.queue_name = :queue
              AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
              AND NOT EXISTS (
                  SELECT 1 FROM procrastinate_jobs AS other_jobs
                  WHERE jobs.lock IS NOT NULL
                    AND other_jobs.lock = jobs.lock
                    AND (
                        other_jobs.status = 'doing'
                        OR (
                            other_jobs.status = 'todo'
                            AND (
                                other_jobs.priority > jobs.priority
                                OR (other_jobs.priority = jobs.priority
                                    AND other_jobs.id < jobs.id)
                            )
                        )
                    )
              )
        ) AS runnable
    """
)

_BUSY = text(
    """
    SELECT EXISTS (
        SELECT 1 FROM procrastinate_jobs
        WHERE queue_name = :queue
          AND (
              status = 'doing'
              OR (status = 'todo'
                  AND (scheduled_at IS NULL
                       OR scheduled_at <= now() + make_interval(secs => :horizon)))
          )
    )
    """
)

# A job about to wait for a retry gives up its queueing lock. Otherwise its return to
# ``todo`` collides, on procrastinate's partial unique index, with a job enqueued with the
# same queueing lock while it ran: procrastinate's retry would fail and leave the job
# ``doing`` for good, blocking its lock behind a live worker that no sweep would ever
# suspect. An enqueue during the backoff is therefore kept (one job more, serialised behind
# this one by its lock), never lost.
_DROP_QUEUEING_LOCK = text(
    "UPDATE procrastinate_jobs SET queueing_lock = NULL WHERE id = :job_id AND status = 'doing'"
)
_LOCK_WORKER = text("SELECT 1 FROM procrastinate_workers WHERE id = :worker_id FOR KEY SHARE")


class ProcrastinateJobQueue:
    """The ``JobQueue`` on procrastinate. See the module docstring.

    ``heartbeat_interval`` and ``stalled_worker_timeout`` (procrastinate's worker settings)
    decide how soon a dead worker's jobs run again: after ``stalled_worker_timeout`` plus at
    most one ``sweep_interval``. Tests shrink them to fractions of a second.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        database_url: str,
        *,
        max_attempts: int = 8,
        backoff: ExponentialBackoff | None = None,
        queue_name: str = "default",
        poll_interval: float = 1.0,
        heartbeat_interval: float = 10.0,
        stalled_worker_timeout: float = 30.0,
        sweep_interval: float | None = None,
        drain_horizon: float = 1.0,
        shutdown_graceful_timeout: float = 0.0,
        succeeded_retention_hours: int = 1,
        pool_max_size: int = 8,
        store_of_job: StoreOfJob | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if heartbeat_interval >= stalled_worker_timeout:
            raise ValueError("heartbeat_interval must be shorter than stalled_worker_timeout")
        self.engine = engine
        self.conninfo = libpq_conninfo(database_url)
        self.max_attempts = max_attempts
        self.backoff = backoff or ExponentialBackoff()
        self.queue_name = queue_name
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.stalled_worker_timeout = stalled_worker_timeout
        self.sweep_interval = sweep_interval or stalled_worker_timeout / 3
        self.drain_horizon = drain_horizon
        self.shutdown_graceful_timeout = shutdown_graceful_timeout
        self.succeeded_retention_hours = succeeded_retention_hours
        self.pool_max_size = pool_max_size
        self.store_of_job = store_of_job  # whose activity log shows a job given up
        self.retry_strategy = BackoffRetryStrategy(max_attempts, self.backoff)

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
        """Defer in the caller's transaction, through procrastinate's own SQL function.

        False when a job with ``queueing_lock`` already waits; that job is then held (see the
        module docstring) until the caller's transaction ends, so it runs after, and sees,
        what the caller wrote.
        """
        if schedule_at is not None and schedule_at.tzinfo is None:
            raise ValueError("schedule_at must be timezone-aware")
        params = {
            "queue": self.queue_name,
            "task": task,
            "priority": priority,
            "lock": lock,
            "queueing_lock": queueing_lock,
            "args": json.dumps(dict(args)),
            "scheduled_at": schedule_at,
        }
        for _ in range(_ENQUEUE_ATTEMPTS):
            # The common case in a burst: the job is already waiting. One indexed read then
            # spares a savepoint, a failing insert and its rollback. It runs here, outside
            # any savepoint: rolling a savepoint back releases the row locks taken in it.
            if queueing_lock is not None and await self._hold_waiting(conn, queueing_lock):
                return False
            try:
                async with conn.begin_nested():
                    await conn.execute(_DEFER, params)
            except IntegrityError as exc:
                diag = getattr(exc.orig, "diag", None)
                if getattr(diag, "constraint_name", None) != QUEUEING_LOCK_CONSTRAINT:
                    raise
                # A job with this queueing lock was committed since we looked: hold it, or
                # insert again if a worker has already taken it.
                continue
            return True
        raise RuntimeError(
            f"could not enqueue {task!r} with queueing lock {queueing_lock!r}: after"
            f" {_ENQUEUE_ATTEMPTS} attempts, neither a waiting job to hold nor room for a new one"
        )

    async def _hold_waiting(self, conn: AsyncConnection, queueing_lock: str) -> bool:
        """Lock the waiting job with ``queueing_lock`` until ``conn``'s transaction ends.

        False when no job with it waits (none, or it was taken by a worker meanwhile).
        """
        held = await conn.scalar(_HOLD_WAITING, {"queueing_lock": queueing_lock})
        return held is not None

    # -- the procrastinate app -------------------------------------------------------------

    def build_app(self, registry: TaskRegistry) -> procrastinate.App:
        """A procrastinate App running ``registry``'s handlers (not opened yet)."""
        app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=self.conninfo, min_size=1, max_size=self.pool_max_size
            )
        )
        for name, handler in registry.handlers.items():
            app.task(
                name=name,
                pass_context=True,
                retry=self.retry_strategy,
                queue=self.queue_name,
            )(self._task_function(name, handler))
        return app

    def _task_function(self, name: str, handler: Handler) -> Callable[..., Awaitable[None]]:
        async def run(context: procrastinate.JobContext, **kwargs: Any) -> None:
            job = context.job
            assert job.id is not None
            attempt = job.attempts + 1
            job_context = JobContext(
                job_id=job.id, task=name, attempt=attempt, max_attempts=self.max_attempts
            )
            try:
                await run_logged(handler, job_context, kwargs, worker=context.worker_name)
            except Exception as exc:
                if is_final(exc, attempt, self.max_attempts):
                    await self._dead_letter(job.id, name, kwargs, describe_error(exc), attempt)
                else:
                    await self._drop_queueing_lock(job.id)
                raise
            except asyncio.CancelledError:
                await self._drop_queueing_lock(job.id)
                raise

        return run

    async def _dead_letter(
        self, job_id: int, task: str, args: dict[str, Any], error: str, attempts: int
    ) -> None:
        # procrastinate marks the job failed right after, on its own connection: a worker
        # killed in between leaves a stalled job, which the sweep dead-letters again (one
        # duplicate log entry, never a lost one).
        try:
            async with self.engine.begin() as conn:
                await record_dead_letter(
                    conn,
                    job_id=job_id,
                    task=task,
                    args=args,
                    error=error,
                    attempts=attempts,
                    store_of_job=self.store_of_job,
                )
        except SQLAlchemyError:
            logger.exception("could not log the dead-lettered job %s", job_id)

    async def _drop_queueing_lock(self, job_id: int) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(_DROP_QUEUEING_LOCK, {"job_id": job_id})
        except SQLAlchemyError:
            logger.exception("could not release the queueing lock of job %s", job_id)

    # -- stalled-job sweep -----------------------------------------------------------------

    async def sweep_stalled(self, app: procrastinate.App) -> int:
        """Send back to the queue the jobs of dead workers; the number recovered."""
        stalled = await app.job_manager.get_stalled_jobs(
            queue=self.queue_name, seconds_since_heartbeat=self.stalled_worker_timeout
        )
        recovered = 0
        for job in stalled:
            if job.id is not None and await self._recover(job.id, job.worker_id):
                recovered += 1
        # Forget dead workers (their jobs were handled above, or will be at the next sweep,
        # now with no worker at all).
        await app.job_manager.prune_stalled_workers(self.stalled_worker_timeout)
        return recovered

    async def _recover(self, job_id: int, worker_id: int | None) -> bool:
        async with self.engine.begin() as conn:
            if worker_id is not None:
                # The dead worker's row first, then its job's, in the order a prune of stalled
                # workers takes them (the worker deleted, then its jobs' worker_id set to null):
                # the retry below re-checks the job's foreign key to that worker, and taking the
                # two the other way round deadlocks with a prune, the one procrastinate runs
                # when a worker starts included (that worker then exits).
                await conn.execute(_LOCK_WORKER, {"worker_id": worker_id})
            row = (
                await conn.execute(
                    text(
                        "SELECT task_name, args, attempts FROM procrastinate_jobs"
                        " WHERE id = :job_id AND status = 'doing'"
                        " AND worker_id IS NOT DISTINCT FROM :worker_id FOR UPDATE"
                    ),
                    {"job_id": job_id, "worker_id": worker_id},
                )
            ).first()
            if row is None:
                # Finished, or already recovered (and maybe running again) since we looked.
                return False
            lost_attempt = int(row.attempts) + 1
            if lost_attempt >= self.max_attempts:
                # A job that takes its worker down on every run must not do it forever.
                error = "the worker running the last attempt stopped (no heartbeat)"
                await conn.execute(
                    text("SELECT procrastinate_finish_job_v1(:job_id, 'failed', false)"),
                    {"job_id": job_id},
                )
                await record_dead_letter(
                    conn,
                    job_id=job_id,
                    task=row.task_name,
                    args=row.args,
                    error=error,
                    attempts=lost_attempt,
                    store_of_job=self.store_of_job,
                )
            else:
                # procrastinate's retry_job, in our transaction, so that the check above and
                # the retry are one atomic step.
                await conn.execute(_DROP_QUEUEING_LOCK, {"job_id": job_id})
                await conn.execute(
                    text("SELECT procrastinate_retry_job_v2(:job_id, now(), NULL, NULL, NULL)"),
                    {"job_id": job_id},
                )
        logger.warning(
            "job %s of a stalled worker %s",
            job_id,
            "dead-lettered" if lost_attempt >= self.max_attempts else "sent back to the queue",
            extra={"job_id": job_id, "worker_id": worker_id},
        )
        return True

    async def _sweep_forever(self, app: procrastinate.App) -> None:
        last_prune = float("-inf")
        while True:
            try:
                await self.sweep_stalled(app)
                # The history of succeeded jobs stays bounded, as in the embedded queue;
                # failed jobs are the dead-letter queue and stay.
                if time.monotonic() - last_prune >= _PRUNE_EVERY_SECONDS:
                    last_prune = time.monotonic()
                    await app.job_manager.delete_old_jobs(
                        nb_hours=self.succeeded_retention_hours, queue=self.queue_name
                    )
            except (SQLAlchemyError, ConnectorException):
                logger.exception("stalled-job sweep failed; trying again later")
            await asyncio.sleep(self.sweep_interval)

    # -- running ---------------------------------------------------------------------------

    async def _registered(self, worker: Worker) -> None:
        # ``Worker.run`` clears any earlier stop request before it registers: a stop asked
        # before registration would be lost.
        # procrastinate offers no event for it.
        while worker.worker_id is None:  # noqa: ASYNC110
            await asyncio.sleep(self.poll_interval)

    async def _stop_when_idle(self, worker: Worker) -> None:
        await self._registered(worker)
        while True:
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        _IDLE, {"worker_id": worker.worker_id, "queue": self.queue_name}
                    )
                ).one()
            if not row.running and not row.runnable:
                return
            await asyncio.sleep(self.poll_interval)

    async def _busy(self) -> bool:
        """A job runs, or one is due within ``drain_horizon``."""
        async with self.engine.connect() as conn:
            busy = await conn.scalar(
                _BUSY, {"queue": self.queue_name, "horizon": self.drain_horizon}
            )
        return bool(busy)

    async def _stop_when_quiet(self, worker: Worker) -> None:
        await self._registered(worker)
        while True:
            if not await self._busy():
                return
            await asyncio.sleep(self.poll_interval)

    async def _work(
        self,
        registry: TaskRegistry,
        *,
        concurrency: int,
        name: str | None,
        until: Callable[[Worker], Coroutine[Any, Any, None]] | None,
    ) -> None:
        app = self.build_app(registry)
        async with app.open_async():
            worker = Worker(
                app=app,
                queues=[self.queue_name],
                name=name or worker_name(),
                concurrency=concurrency,
                wait=True,
                fetch_job_polling_interval=self.poll_interval,
                shutdown_graceful_timeout=self.shutdown_graceful_timeout,
                listen_notify=True,
                install_signal_handlers=False,
                update_heartbeat_interval=self.heartbeat_interval,
                stalled_worker_timeout=self.stalled_worker_timeout,
            )
            side_tasks = [asyncio.create_task(self._sweep_forever(app), name="stalled sweep")]
            if until is not None:
                stopper = asyncio.create_task(until(worker), name="worker stop condition")
                # Stop on the condition, and also when checking it fails (then re-raised).
                stopper.add_done_callback(lambda _: _stop(worker))
                side_tasks.append(stopper)
            try:
                await _run(worker)
            finally:
                for task in side_tasks:
                    task.cancel()
                results = await asyncio.gather(*side_tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    raise result
            if until is None:
                # Only procrastinate stops a worker nobody asked to stop: one of its side
                # tasks (listener, heartbeat) failed. Say so, so that a supervisor restarts.
                raise RuntimeError("the procrastinate worker stopped; see the log for why")

    async def run_worker(
        self,
        registry: TaskRegistry,
        *,
        concurrency: int = 1,
        stop_when_idle: bool = False,
        name: str | None = None,
    ) -> None:
        """Run a procrastinate worker (plus the stalled-job sweep) until cancelled.

        ``stop_when_idle`` has the embedded queue's meaning: return once nothing is runnable
        now and none of this worker's jobs runs. (procrastinate's own ``wait=False`` stops at
        the first fetch that finds nothing, even while its jobs still run and would unblock
        others with their lock, so the worker runs with ``wait=True`` and is stopped on that
        condition instead.)

        On cancellation the worker waits ``shutdown_graceful_timeout`` (default: not at all)
        for running jobs, then interrupts them and sends them back to the queue at once.
        """
        await self._work(
            registry,
            concurrency=concurrency,
            name=name,
            until=self._stop_when_idle if stop_when_idle else None,
        )

    async def drain(
        self,
        registry: TaskRegistry,
        timeout: float = 30.0,  # noqa: ASYNC109 - a deadline is what drain is called with
        *,
        concurrency: int = 1,
    ) -> None:
        """Run jobs until quiet: none ``doing`` anywhere, none due within ``drain_horizon``.

        A dead worker's job keeps the queue busy until the sweep sends it back and it has run
        here. Raises ``TimeoutError`` when not quiet after ``timeout`` seconds.
        """
        # Quiet already: no worker to start (starting one costs a procrastinate app, a
        # connection pool and a worker registration).
        if not await self._busy():
            return
        try:
            async with asyncio.timeout(timeout):
                await self._work(
                    registry, concurrency=concurrency, name=None, until=self._stop_when_quiet
                )
        except TimeoutError:
            raise TimeoutError(f"job queue not quiet after {timeout} s") from None

    async def counts(self) -> dict[str, int]:
        """Jobs per status (every status in ``JOB_STATUSES`` present, zero included)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT status::text, count(*) FROM procrastinate_jobs"
                        " WHERE queue_name = :queue GROUP BY status"
                    ),
                    {"queue": self.queue_name},
                )
            ).all()
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update({str(status): int(n) for status, n in rows})
        return counts
