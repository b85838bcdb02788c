"""Shared fixtures: real SQLite and PostgreSQL databases, and no network beyond loopback."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync.storage.db import create_engine
from stocksync.storage.schema import create_all

PG_ADMIN_URL = os.environ.get("STOCKSYNC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# CI sets this so that a missing PostgreSQL fails the run instead of skipping its suite.
PG_REQUIRED = os.environ.get("STOCKSYNC_REQUIRE_POSTGRES") == "1"

_LOOPBACK = ("127.", "::1", "localhost")
_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else str(address)
    if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(_LOOPBACK):
        raise RuntimeError(f"tests may not reach the network (tried {address!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


def _pg_available() -> str | None:
    """None when PostgreSQL answers, otherwise why not."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # any failure means the suite cannot run
        return f"{type(exc).__name__}: {exc}".strip()


_pg_reason: str | None = None
_pg_checked = False


def require_postgres() -> None:
    """Skip (or, in CI, fail) when PostgreSQL is not reachable."""
    global _pg_checked, _pg_reason
    if not _pg_checked:
        _pg_reason, _pg_checked = _pg_available(), True
    if _pg_reason is not None:
        message = f"PostgreSQL suite skipped: no server at {PG_ADMIN_URL} ({_pg_reason})"
        if PG_REQUIRED:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    require_postgres()
    name = f"stocksync_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'stocksync.db'}"


@pytest.fixture
async def sqlite_engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(sqlite_url)
    await create_all(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def pg_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_url)
    await create_all(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both backends: every test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'stocksync.db'}"
    else:
        yield request.getfixturevalue("pg_url")


# The two longest tests (the in-memory stateful test on each database, 10 to 17 minutes) lead
# the two halves that `make test` hands its two workers (`--dist worksteal` splits the
# collection in contiguous halves, then moves tests from the end of one to the other): each
# starts at once, on its own worker, and the rest fills in around them.
_LONGEST = (
    "test_stateful.py::test_stateful_exactly_once_and_convergence[postgres]",
    "test_stateful.py::test_stateful_exactly_once_and_convergence[sqlite]",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    longest = [i for name in _LONGEST for i in items if i.nodeid.endswith(name)]
    if len(longest) != len(_LONGEST):
        return  # a selection without them
    rest = [i for i in items if i not in longest]
    half = len(items) // 2
    items[:] = [longest[0], *rest[: half - 1], longest[1], *rest[half - 1 :]]
