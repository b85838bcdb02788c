"""Real worker processes: one killed with SIGKILL mid-job, several sharing one database."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.jobs.queue import JobContext, TaskRegistry
from stocksync.storage.db import create_engine
from tests.integration.jobs_worker_proc import (
    events,
    job_events,
    make_queue,
    prepare_database,
    record_event,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield request.param, f"sqlite:///{tmp_path / 'stocksync.db'}"
    else:
        yield request.param, request.getfixturevalue("pg_url")


@pytest.fixture
async def engine(backend_url: tuple[str, str]) -> AsyncIterator[AsyncEngine]:
    backend, url = backend_url
    engine = create_engine(url)
    await prepare_database(backend, engine)
    yield engine
    await engine.dispose()


class Workers:
    """Worker processes, killed at the end of the test whatever happens."""

    def __init__(self, backend: str, url: str, logs: Path, stack: ExitStack) -> None:
        self.backend, self.url, self.logs, self.stack = backend, url, logs, stack
        self.started = 0

    def start(self, *options: str) -> subprocess.Popen[bytes]:
        self.started += 1
        log = self.stack.enter_context((self.logs / f"worker-{self.started}.log").open("wb"))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.jobs_worker_proc",
                self.backend,
                self.url,
                *options,
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.stack.callback(_kill, process)
        return process


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@pytest.fixture
def workers(backend_url: tuple[str, str], tmp_path: Path) -> Iterator[Workers]:
    with ExitStack() as stack:
        yield Workers(*backend_url, tmp_path, stack)


async def kinds_for(engine: AsyncEngine, kind: str) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(job_events).where(job_events.c.kind == kind)
        )
    return int(count or 0)


async def test_a_job_killed_mid_run_runs_again_and_its_lock_frees(
    backend_url: tuple[str, str], engine: AsyncEngine, workers: Workers
) -> None:
    backend, url = backend_url
    queue = make_queue(backend, engine, url)
    async with engine.begin() as conn:
        await queue.enqueue(conn, "block", {"key": "first"}, lock="item:1")
        await queue.enqueue(conn, "block", {"key": "second"}, lock="item:1")

    process = workers.start("--mode", "block")

    async def started() -> bool:
        return await kinds_for(engine, "started") == 1

    await wait_until(started, 30, "the worker process to start the first job")
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert await queue.counts() == {"todo": 1, "doing": 1, "succeeded": 0, "failed": 0}

    async def finish(context: JobContext, args: dict[str, Any]) -> None:
        await record_event(engine, "started", args["key"], context, "test")
        await record_event(engine, "finished", args["key"], context, "test")

    registry = TaskRegistry()
    registry.register("block", finish)
    # The drain only ends once the killed job is back (lease expired / worker found stalled).
    await queue.drain(registry, 20)

    dead = f"proc-{process.pid}"
    assert await events(engine) == [
        ("ready", dead, 0, dead),
        ("started", "first", 1, dead),
        ("started", "first", 2, "test"),
        ("finished", "first", 2, "test"),
        ("started", "second", 1, "test"),
        ("finished", "second", 1, "test"),
    ]
    assert await queue.counts() == {"todo": 0, "doing": 0, "succeeded": 2, "failed": 0}


async def test_worker_processes_run_each_job_exactly_once(
    backend_url: tuple[str, str], engine: AsyncEngine, workers: Workers
) -> None:
    backend, url = backend_url
    queue = make_queue(backend, engine, url)
    total, processes = 200, 3
    started = [
        # A long lease: this test is about sharing the work, not about dead workers.
        workers.start("--mode", "record", "--concurrency", "2", "--lease", "30")
        for _ in range(processes)
    ]

    async def ready() -> bool:
        return await kinds_for(engine, "ready") == processes

    await wait_until(ready, 30, "the worker processes to start")
    for batch in range(0, total, 50):
        async with engine.begin() as conn:
            for i in range(batch, batch + 50):
                # Half of the jobs share a lock with another one, as flushes of one store do.
                lock = f"store:{i % 50}" if i % 2 else None
                await queue.enqueue(conn, "record", {"key": f"job-{i}", "work": 0.002}, lock=lock)

    async def all_done() -> bool:
        return (await queue.counts())["succeeded"] == total

    await wait_until(all_done, 45, f"{total} jobs to succeed")
    for process in started:
        assert process.poll() is None, "a worker process died"

    async with engine.connect() as conn:
        runs = (
            await conn.execute(
                select(job_events.c.key, job_events.c.job_id, job_events.c.worker).where(
                    job_events.c.kind == "run"
                )
            )
        ).all()
    assert len(runs) == total
    assert sorted(key for key, _, _ in runs) == sorted(f"job-{i}" for i in range(total))
    assert len({job_id for _, job_id, _ in runs}) == total
    # Every process took part (each polls; none can take all 200 jobs alone in time).
    assert len({worker for _, _, worker in runs}) >= 2
    assert await queue.counts() == {"todo": 0, "doing": 0, "succeeded": total, "failed": 0}
    # Nothing ran twice behind the events' back either: one attempt per job.
    table = "jobs" if backend == "sqlite" else "procrastinate_jobs"
    async with engine.connect() as conn:
        attempts = (await conn.scalars(text(f"SELECT DISTINCT attempts FROM {table}"))).all()
    assert attempts == [1]
