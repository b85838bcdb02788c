"""Fixtures: an in-process Shopify sandbox on a manual clock, and the adapter pointed at it.

The adapter's waits (throttling, backoff, bulk polling) run on virtual time: its sleep moves
the sandbox's manual clock, so a test never sleeps for real and the sandbox's cost bucket
refills exactly as far as the client waited.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from stocksync.platforms.shopify import ShopifyPlatform
from stocksync.platforms.shopify.client import RetryPolicy
from stocksync.sandbox import AppConfig, ManualClock, RunningSandbox, Sandbox, serve_in_task
from stocksync.sandbox.state import Shop

# The webhook receiver is the sandbox suite's own fixture, shared rather than rewritten.
from tests.sandbox.conftest import Admin, Received, Receiver, receiver  # noqa: F401

APP_SECRET = "shopify-test-secret"


@dataclass
class VirtualTime:
    """Sleeps that advance the sandbox's manual clock instead of waiting."""

    clock: ManualClock
    slept: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.clock.advance(seconds)
        await asyncio.sleep(0)  # let woken sandbox tasks run

    def monotonic(self) -> float:
        return self.clock.monotonic()


@dataclass
class Recorded:
    query: str
    variables: dict[str, Any]
    status: int
    body: Any


@dataclass
class Env:
    sandbox: Sandbox
    running: RunningSandbox
    shop: Shop
    admin: Admin
    http: httpx.AsyncClient
    time: VirtualTime
    recorded: list[Recorded]

    def platform(self, version: str = "2026-10", **kwargs: Any) -> ShopifyPlatform:
        return make_platform(self, self.shop, version, **kwargs)

    @property
    def warehouse(self) -> str:
        return str(next(iter(self.shop.locations)))

    def location_ids(self) -> list[str]:
        return [str(loc.id) for loc in self.shop.locations.values()]


def make_platform(env: Env, shop: Shop, version: str, **kwargs: Any) -> ShopifyPlatform:
    options: dict[str, Any] = {
        "api_version": version,
        "base_url": env.sandbox.shop_base_url(shop),
        "http_client": env.http,
        "sleep": env.time.sleep,
        "clock": env.time.monotonic,
        "rng": random.Random(5),
        "retry": RetryPolicy(),
    }
    options.update(kwargs)
    return ShopifyPlatform(shop.domain, shop.access_token, **options)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> Sandbox:
    return Sandbox(
        clock=clock,
        app=AppConfig(client_secret=APP_SECRET, redirect_urls=["http://127.0.0.1:9/callback"]),
        seed=11,
    )


@pytest.fixture
def shop(sandbox: Sandbox) -> Shop:
    return sandbox.create_shop(
        "north",
        access_token="shpat_north",
        locations=["Warehouse", "Store"],
        inactive_locations=["Old depot"],
    )


@pytest.fixture
async def env(sandbox: Sandbox, shop: Shop, clock: ManualClock) -> AsyncIterator[Env]:
    recorded: list[Recorded] = []

    async def record(response: httpx.Response) -> None:
        request = response.request
        if request.url.path.endswith("/graphql.json") and request.method == "POST":
            await response.aread()
            sent = httpx_json(request.content)
            try:
                body = response.json()
            except ValueError:
                body = response.text
            recorded.append(
                Recorded(
                    sent.get("query", ""), sent.get("variables") or {}, response.status_code, body
                )
            )

    async with (
        serve_in_task(sandbox) as running,
        httpx.AsyncClient(timeout=10, trust_env=False, event_hooks={"response": [record]}) as http,
    ):
        admin = Admin(http, sandbox.graphql_url(shop), shop.access_token)
        yield Env(sandbox, running, shop, admin, http, VirtualTime(clock), recorded)


def httpx_json(content: bytes) -> dict[str, Any]:
    import json

    value = json.loads(content)
    assert isinstance(value, dict)
    return value


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for a condition with a deadline (real time; never a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)
