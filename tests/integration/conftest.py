"""Fixtures of the engine's integration tests: both databases, one per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.harness import Harness
from tests.integration.test_engine_support import BACKENDS, fresh_harness, module_database


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Both backends, one database per module, emptied by each test's harness (creating a
    PostgreSQL database per test would cost more than most of these tests)."""
    with module_database(request.param, tmp_path_factory) as url:
        yield url


@pytest.fixture
async def h(module_db_url: str) -> AsyncIterator[Harness]:
    """The engine on an emptied database and a new in-memory world."""
    async with fresh_harness(module_db_url) as harness:
        yield harness
