"""``stocksync migrate`` and ``stocksync doctor`` as an operator runs them: real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from stocksync.storage.db import create_engine
from stocksync.storage.migrate import head_revision
from stocksync.storage.tables import metadata


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stocksync", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env(db_url: str, tmp_path: Path) -> dict[str, str]:
    env = {"STOCKSYNC_DATA_DIR": str(tmp_path / "data")}
    if db_url.startswith("postgresql"):
        env["STOCKSYNC_DATABASE_URL"] = db_url
    return env


def test_doctor_fails_plainly_before_migrate_and_passes_after(db_url: str, tmp_path: Path) -> None:
    env = _env(db_url, tmp_path)
    before = _run(["doctor"], env, tmp_path)
    assert before.returncode == 1
    assert "run `stocksync migrate`" in before.stderr
    assert "Traceback" not in before.stderr + before.stdout

    migrated = _run(["migrate"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    after = _run(["doctor"], env, tmp_path)
    assert after.returncode == 0, after.stdout + after.stderr
    backend = "procrastinate" if db_url.startswith("postgresql") else "embedded"
    assert backend in after.stdout
    assert f"migration head:  {head_revision()}" in after.stdout
    # Running it again is harmless.
    assert _run(["migrate"], env, tmp_path).returncode == 0


async def test_migrations_match_the_tables(db_url: str, tmp_path: Path) -> None:
    assert _run(["migrate"], _env(db_url, tmp_path), tmp_path).returncode == 0
    url = db_url if db_url.startswith("postgresql") else f"sqlite:///{tmp_path}/data/stocksync.db"
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def diff(sync_conn: Connection) -> list[object]:
                context = MigrationContext.configure(sync_conn)
                return [
                    d
                    for d in compare_metadata(context, metadata)
                    # procrastinate's own tables live beside ours on PostgreSQL.
                    if "procrastinate" not in str(d)
                ]

            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


def test_bad_configuration_is_reported_plainly(tmp_path: Path) -> None:
    result = _run(["doctor"], {"STOCKSYNC_DATABASE_URL": "mysql://nope"}, tmp_path)
    assert result.returncode == 2
    assert "STOCKSYNC_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def _ignore_sigint() -> None:
    # As for a process started in the background of a shell.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM])
def test_worker_stops_cleanly_on_sigint_or_sigterm(
    tmp_path: Path, stop_with: signal.Signals
) -> None:
    env = {**os.environ, **_env("sqlite", tmp_path)}
    assert _run(["migrate"], env, tmp_path).returncode == 0
    worker = subprocess.Popen(
        [sys.executable, "-m", "stocksync", "worker", "--concurrency", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    try:
        # Stopped only once running: its SQLite write-ahead log exists once it has polled.
        deadline = time.monotonic() + 30
        while not (tmp_path / "data" / "stocksync.db-wal").exists():
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the worker never opened its database"
            time.sleep(0.05)  # polling a condition with a deadline
        worker.send_signal(stop_with)
        out, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, out
    assert "worker stopped" in out
    assert "Traceback" not in out
