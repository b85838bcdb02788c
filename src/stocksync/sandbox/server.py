"""The sandbox's HTTP server, and helpers to run it in-process or as a subprocess.

Paths (each shop's base URL is `{server}/shops/{NAME}.myshopify.com`):
- `POST {shop}/admin/api/{version}/graphql.json` (header `X-Shopify-Access-Token`)
- `GET {shop}/admin/oauth/authorize`, `POST {shop}/admin/oauth/access_token`
- `GET {shop}/bulk/{id}.jsonl` (bulk operation results)
- `/_sandbox/...`: the admin endpoint (manifest, stats, shops, faults, privacy webhooks,
  uninstall, clock, webhook log), not part of Shopify's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from stocksync.sandbox.clock import ManualClock
from stocksync.sandbox.endpoint import GraphQLEndpoint, dumps
from stocksync.sandbox.manifest import read_manifest
from stocksync.sandbox.oauth import OAuthError
from stocksync.sandbox.sandbox import Sandbox
from stocksync.sandbox.schema import version_key

INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"  # noqa: S105 (an error message)
JSON_TYPE = "application/json; charset=utf-8"


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status_code=status, media_type=JSON_TYPE, headers=headers)


def create_app(sandbox: Sandbox) -> Starlette:  # noqa: C901, PLR0915  every route, one closure each over the sandbox
    endpoint = GraphQLEndpoint(sandbox)
    status_codes = (500, 502, 503, 504)

    async def graphql(request: Request) -> Response:
        shop = sandbox.find_shop(request.path_params["shop"])
        version = request.path_params["version"]
        if shop is None or version_key(version) is None:
            return _json({"errors": "Not Found"}, 404)
        faults = sandbox.faults_of(shop)
        stats = sandbox.stats_of(shop)
        if faults.unreachable:
            stats.unreachable += 1
            return PlainTextResponse("Service Unavailable: shop unreachable", 503)
        if request.headers.get("x-shopify-access-token") not in shop.access_tokens:
            return _json({"errors": INVALID_TOKEN}, 401)
        stats.requests += 1
        latency = faults.latency_seconds()
        if latency > 0:
            await asyncio.sleep(latency)
        if faults.take("error_5xx"):
            stats.errors_5xx += 1
            code = faults.rng.choice(status_codes)
            return _json(
                {"errors": "Internal Server Error" if code == 500 else "Service Unavailable"}, code
            )
        if faults.take("timeout"):
            stats.timeouts += 1
            await asyncio.sleep(faults.timeout_seconds)
            return PlainTextResponse("Gateway Timeout", 504)
        raw = await request.body()
        try:
            if request.headers.get("content-type", "").startswith("application/graphql"):
                body: Any = {"query": raw.decode()}
            else:
                body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
            answer, was_mutation = endpoint.run(shop, version, body)
        except ValueError:
            return _json({"errors": {"query": "Required parameter missing or invalid"}}, 400)
        if was_mutation and faults.take("lost_response"):
            # The write is applied; the client never learns it.
            stats.lost_responses += 1
            return PlainTextResponse("Bad Gateway", 502)
        return _json(answer, headers={"X-Shopify-API-Version": version})

    async def authorize(request: Request) -> Response:
        shop = sandbox.find_shop(request.path_params["shop"])
        if shop is None:
            return _json({"errors": "Not Found"}, 404)
        try:
            url = sandbox.oauth.authorize(shop, dict(request.query_params))
        except OAuthError as exc:
            return _json({"error": exc.error, "error_description": exc.description}, exc.status)
        return RedirectResponse(url, status_code=302)

    async def access_token(request: Request) -> Response:
        shop = sandbox.find_shop(request.path_params["shop"])
        if shop is None:
            return _json({"errors": "Not Found"}, 404)
        raw = await request.body()
        fields: dict[str, Any]
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                fields = json.loads(raw or b"{}")
            except ValueError:
                fields = {}
        else:
            from urllib.parse import parse_qsl

            fields = dict(parse_qsl(raw.decode()))
        fields |= dict(request.query_params)
        try:
            token = sandbox.oauth.exchange(
                shop, fields.get("client_id"), fields.get("client_secret"), fields.get("code")
            )
        except OAuthError as exc:
            return _json({"error": exc.error, "error_description": exc.description}, exc.status)
        return _json(token)

    async def bulk_result(request: Request) -> Response:
        shop = sandbox.find_shop(request.path_params["shop"])
        op = sandbox.bulk.find(shop, int(request.path_params["op_id"])) if shop else None
        if op is None or op.status != "COMPLETED":
            return PlainTextResponse("Not Found", 404)
        return Response(op.result, media_type="application/jsonl")

    # ------------------------------------------------------------ admin endpoint
    async def admin_manifest(request: Request) -> Response:
        return _json(sandbox.manifest(request.query_params.get("version", "2025-01")))

    async def admin_stats(request: Request) -> Response:
        return _json(sandbox.stats())

    async def admin_create_shop(request: Request) -> Response:
        spec = await _body(request)
        try:
            shop = sandbox.create_shop(
                spec["name"],
                access_token=spec.get("access_token"),
                locations=spec.get("locations"),
                plan=spec.get("plan", "standard"),
                bucket_size=spec.get("bucket_size"),
                faults=spec.get("faults"),
            )
            if spec.get("seed"):
                from stocksync.sandbox.seed import SeedSpec, seed_shop

                seed_shop(shop, SeedSpec(**spec["seed"]))
        except (KeyError, ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json(next(s for s in sandbox.manifest()["shops"] if s["name"] == shop.name), 201)

    async def admin_faults(request: Request) -> Response:
        shop = sandbox.find_shop(request.path_params["shop"])
        if shop is None:
            return _json({"error": "unknown shop"}, 404)
        faults = sandbox.faults_of(shop)
        if request.method == "DELETE":
            faults.clear()
        elif request.method == "POST":
            try:
                faults.update(await _body(request))
            except (ValueError, TypeError) as exc:
                return _json({"error": str(exc)}, 400)
        return _json(faults.describe())

    async def admin_privacy(request: Request) -> Response:
        shop = sandbox.find_shop(request.path_params["shop"])
        if shop is None:
            return _json({"error": "unknown shop"}, 404)
        spec = await _body(request)
        try:
            sent = sandbox.send_privacy_webhook(shop, spec.get("topic", ""), spec.get("customer"))
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"sent": sent})

    async def admin_uninstall(request: Request) -> Response:
        shop = sandbox.find_shop(request.path_params["shop"])
        if shop is None:
            return _json({"error": "unknown shop"}, 404)
        sandbox.uninstall(shop)
        return _json({"uninstalled": shop.domain})

    async def admin_clock(request: Request) -> Response:
        clock = sandbox.clock
        if request.method == "POST":
            if not isinstance(clock, ManualClock):
                return _json({"error": "the clock is not manual"}, 400)
            clock.advance(float((await _body(request)).get("seconds", 0)))
        return _json({"now": clock.now(), "manual": isinstance(clock, ManualClock)})

    async def admin_throttling(request: Request) -> Response:
        spec = await _body(request)
        sandbox.set_throttling(bool(spec.get("enabled", True)))
        return _json({"enabled": sandbox.throttling})

    async def admin_webhook_log(request: Request) -> Response:
        return _json(sandbox.webhooks.log[-1000:])

    shop_prefix = "/shops/{shop}"
    return Starlette(
        routes=[
            Route(shop_prefix + "/admin/api/{version}/graphql.json", graphql, methods=["POST"]),
            Route(shop_prefix + "/admin/oauth/authorize", authorize, methods=["GET"]),
            Route(shop_prefix + "/admin/oauth/access_token", access_token, methods=["POST"]),
            Route(shop_prefix + "/bulk/{op_id:int}.jsonl", bulk_result, methods=["GET"]),
            Route("/_sandbox/manifest", admin_manifest, methods=["GET"]),
            Route("/_sandbox/stats", admin_stats, methods=["GET"]),
            Route("/_sandbox/shops", admin_create_shop, methods=["POST"]),
            Route("/_sandbox/shops/{shop}/faults", admin_faults, methods=["GET", "POST", "DELETE"]),
            Route("/_sandbox/shops/{shop}/privacy", admin_privacy, methods=["POST"]),
            Route("/_sandbox/shops/{shop}/uninstall", admin_uninstall, methods=["POST"]),
            Route("/_sandbox/clock", admin_clock, methods=["GET", "POST"]),
            Route("/_sandbox/throttling", admin_throttling, methods=["POST"]),
            Route("/_sandbox/webhooks", admin_webhook_log, methods=["GET"]),
        ]
    )


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _config(app: Starlette, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )


def _bound_port(server: uvicorn.Server) -> int:
    sockets = server.servers[0].sockets
    port = sockets[0].getsockname()[1]
    assert isinstance(port, int)
    return port


@dataclass
class RunningSandbox:
    sandbox: Sandbox
    url: str
    port: int

    def manifest(self) -> dict[str, Any]:
        return self.sandbox.manifest()

    def graphql_url(self, shop: str, version: str = "2025-01") -> str:
        return self.sandbox.graphql_url(self.sandbox.shop(shop), version)


@contextlib.asynccontextmanager
async def serve_in_task(
    sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> AsyncIterator[RunningSandbox]:
    """Serve on the running event loop (for async tests: sandbox state and test share it)."""
    server = uvicorn.Server(_config(create_app(sandbox), host, port, log_level))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("the sandbox server did not start")
        await asyncio.sleep(0.005)
    bound = _bound_port(server)
    url = f"http://{host}:{bound}"
    await sandbox.start(url)
    try:
        yield RunningSandbox(sandbox, url, bound)
    finally:
        await sandbox.stop()
        server.should_exit = True
        await task


@contextlib.contextmanager
def serve_in_thread(
    sandbox: Sandbox,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    start_timeout: float = 10.0,
) -> Iterator[RunningSandbox]:
    """Serve from a background thread with its own event loop (for synchronous code).

    The sandbox's state then belongs to that loop: touch it from other threads only between
    requests, or through `run_on_loop`.
    """
    server = uvicorn.Server(_config(create_app(sandbox), host, port, log_level))
    loop_box: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loop_box.append(asyncio.get_running_loop())
        await server.serve()

    thread = threading.Thread(
        target=asyncio.run, args=(main(),), name="stocksync-sandbox", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the sandbox server did not start")
        time.sleep(0.005)
    loop = loop_box[0]
    bound = _bound_port(server)
    url = f"http://{host}:{bound}"
    asyncio.run_coroutine_threadsafe(sandbox.start(url), loop).result(start_timeout)
    try:
        yield RunningSandbox(sandbox, url, bound)
    finally:
        asyncio.run_coroutine_threadsafe(sandbox.stop(), loop).result(start_timeout)
        server.should_exit = True
        thread.join(start_timeout)


def run_on_loop(sandbox: Sandbox, fn: Any, *args: Any, timeout: float = 10.0) -> Any:
    """Call `fn(*args)` on the sandbox's loop and return its result (thread-safe access)."""
    loop = sandbox.loop
    if loop is None:
        return fn(*args)

    async def call() -> Any:
        return fn(*args)

    return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)


@dataclass
class SandboxProcess:
    process: subprocess.Popen[bytes]
    manifest_path: Path
    manifest: dict[str, Any]

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def start_subprocess(
    manifest_path: str | Path, *args: str, timeout: float = 30.0, env: dict[str, str] | None = None
) -> SandboxProcess:
    """Start `python -m stocksync.sandbox --manifest PATH ARGS...` and wait for its manifest."""
    path = Path(manifest_path)
    path.unlink(missing_ok=True)
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "stocksync.sandbox", "--manifest", str(path), "--port", "0", *args],
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox exited with status {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the sandbox did not write its manifest in time")
        time.sleep(0.02)
    return SandboxProcess(process, path, read_manifest(path))
