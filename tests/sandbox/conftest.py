"""Fixtures: an in-process sandbox on a manual clock, a GraphQL client, a webhook receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stocksync.sandbox import AppConfig, ManualClock, RunningSandbox, Sandbox, serve_in_task
from stocksync.sandbox.state import Shop

APP_SECRET = "test-app-secret"


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for a condition, with a deadline (never a fixed sleep)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


@dataclass
class Admin:
    """A plain HTTP GraphQL client, as a merchant's tool or stocksync would use."""

    http: httpx.AsyncClient
    url: str
    token: str

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        version: str = "2025-01",
        token: str | None = None,
    ) -> httpx.Response:
        url = self.url.replace("/2025-01/", f"/{version}/")
        return await self.http.post(
            url,
            json={"query": query, "variables": variables or {}},
            headers={"X-Shopify-Access-Token": token or self.token},
        )

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, version: str = "2025-01"
    ) -> dict[str, Any]:
        response = await self.post(query, variables, version)
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body, dict)
        return body

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, version: str = "2025-01"
    ) -> dict[str, Any]:
        body = await self.gql(query, variables, version)
        assert "errors" not in body, body["errors"]
        data = body["data"]
        assert isinstance(data, dict)
        return data


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def topic(self) -> str:
        return self.headers["x-shopify-topic"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    items: list[Received] = field(default_factory=list)
    status: list[int] = field(default_factory=list)  # statuses to answer, in order; then 200

    def topics(self) -> list[str]:
        return [r.topic for r in self.items]

    def of(self, topic: str) -> list[Received]:
        return [r for r in self.items if r.topic == topic]

    async def wait(self, predicate: Callable[[list[Received]], bool], within: float = 5.0) -> None:
        await eventually(lambda: predicate(self.items), within)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> Sandbox:
    return Sandbox(
        clock=clock,
        app=AppConfig(client_secret=APP_SECRET, redirect_urls=["http://127.0.0.1:9/callback"]),
        seed=7,
    )


@pytest.fixture
def shop(sandbox: Sandbox) -> Shop:
    return sandbox.create_shop(
        "acme",
        access_token="shpat_acme",
        locations=["Warehouse", "Store"],
        inactive_locations=["Old depot"],
    )


@pytest.fixture
async def running(sandbox: Sandbox, shop: Shop) -> AsyncIterator[RunningSandbox]:
    async with serve_in_task(sandbox) as server:
        yield server


@pytest.fixture
async def admin(running: RunningSandbox, shop: Shop) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        yield Admin(http, running.sandbox.graphql_url(shop), shop.access_token)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box: list[Receiver] = []

    async def hook(request: Request) -> Response:
        rec = box[0]
        rec.items.append(Received(dict(request.headers), await request.body()))
        status = rec.status.pop(0) if rec.status else 200
        return Response(b"", status_code=status)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
        )
    )
    task = asyncio.get_running_loop().create_task(server.serve())
    await eventually(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    box.append(Receiver(f"http://127.0.0.1:{port}/hook"))
    yield box[0]
    server.should_exit = True
    await task


SUBSCRIBE = """
mutation($topic: WebhookSubscriptionTopic!, $url: URL!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: {callbackUrl: $url, format: JSON}) {
    webhookSubscription { id topic callbackUrl }
    userErrors { field message }
  }
}"""


async def subscribe(admin: Admin, receiver: Receiver, *topics: str) -> None:
    for topic in topics:
        data = await admin.data(SUBSCRIBE, {"topic": topic, "url": receiver.url})
        assert data["webhookSubscriptionCreate"]["userErrors"] == []
