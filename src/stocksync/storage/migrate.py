"""Bringing a database to the migration head, and telling where it stands."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

from stocksync.config import async_url
from stocksync.storage.db import create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return cfg


@functools.cache
def script_directory() -> ScriptDirectory:
    """The migrations, read once per process."""
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revision() -> str:
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads; expected one")
    return heads[0]


def upgrade(url: str) -> None:
    """Run in a worker thread: Alembic's env runs its own event loop."""
    with _sqlite_migration_lock(url):
        command.upgrade(alembic_config(url), "head")


@contextlib.contextmanager
def _sqlite_migration_lock(url: str) -> Iterator[None]:
    """One migrating process at a time on a SQLite file. ``serve`` and ``worker`` migrate it
    themselves and are often started together; each migration is its own transaction, so two
    processes reading the same revision would both run the next one. The second waits here,
    then finds the schema at the head. (PostgreSQL is migrated by the operator, once.)"""
    parsed = make_url(async_url(url))
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent first starts are not guarded
        yield
        return
    lock = Path(database + ".migrate-lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


async def upgrade_async(url: str) -> None:
    await asyncio.to_thread(upgrade, url)


async def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def _current(sync_conn: Connection) -> str | None:
                return MigrationContext.configure(sync_conn).get_current_revision()

            return await conn.run_sync(_current)
    finally:
        await engine.dispose()
