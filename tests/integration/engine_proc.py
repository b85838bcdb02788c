"""Engine worker processes and the served stores they reach, for the engine's kill tests.

The stores' state lives in the test's process, served over HTTP: a :class:`MemoryWorld`, or the
Shopify sandbox (:func:`serve_sandbox`). Each worker is a real ``python -m stocksync worker``
started with ``STOCKSYNC_*`` settings, so a SIGKILL takes nothing but the worker with it. A gate
stands in front of the served stores and makes the kills land where the test wants them:
:class:`CallGate` for the memory world's methods, :class:`GraphQLGate` for Shopify's Admin
GraphQL. Both offer:

- ``hold_adjustment(store, n)``: the n-th adjustment of ``store`` is applied by the store, then
  its response is held (never sent) and ``held`` is set. The worker waits for an answer that
  never comes, and is killed there: the platform applied the change, the commit that records
  it never happens.
- ``trip_after(n, action)``: ``action`` runs when the n-th API call (of any store and method)
  arrives, before the store handles it; the call itself then goes ahead.

They also count the calls and the idempotency keys of adjustments, so that a replayed
adjustment is visible. The database helpers at the end read what the engine recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import uvicorn
from graphql import FieldNode, GraphQLError, OperationDefinitionNode, parse
from graphql.utilities import value_from_ast_untyped
from sqlalchemy import Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stocksync.sandbox import Sandbox
from stocksync.sandbox.server import create_app
from stocksync.storage.tables import ledger, ledger_batches
from tests.integration.jobs_worker_proc import wait_until

REPO = Path(__file__).resolve().parents[2]
_T = TypeVar("_T")


# --- what the gates share -------------------------------------------------------------------


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body; None when the caller went away before sending all of it."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app behind a gate: the body the gate already read, then the rest."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer_when_gone(receive: Receive, send: Send, response: list[Message]) -> None:
    """Never answer: wait until the caller is gone (killed), then send into the closed
    connection, where the server drops it."""
    while (await receive())["type"] != "http.disconnect":
        pass
    for message in response:
        await send(message)


class CallGate:
    """ASGI middleware over the served world. It runs in the server's thread; the test reads
    it from its own, hence the lock and the threading events. The held adjustment is the n-th
    ``adjust_level`` or ``adjust_levels`` received."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.calls: Counter[tuple[str, str]] = Counter()  # (store, method) -> calls received
        self.adjust_keys: Counter[str] = Counter()  # idempotency key -> adjustments received
        self._hold: tuple[str, int] | None = None  # store, adjustments left until the held one
        self._trip: tuple[int, Callable[[], None]] | None = None  # calls left, action
        self.held = threading.Event()
        self.held_key: str | None = None
        self.held_status: int | None = None
        self.tripped = threading.Event()

    def hold_adjustment(self, store_ref: str, nth: int) -> None:
        with self._lock:
            self._hold = (store_ref, nth)

    def trip_after(self, calls: int, action: Callable[[], None]) -> None:
        with self._lock:
            self._trip = (calls, action)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the caller went away before its call was complete
        prefix, _, method = str(scope["path"]).rpartition("/")
        store = prefix.removeprefix("/stores/")
        key: str | None = None
        if method in ("adjust_level", "adjust_levels"):
            key = str(json.loads(body).get("idempotency_key"))
        action: Callable[[], None] | None = None
        hold = False
        with self._lock:
            self.calls[(store, method)] += 1
            if key is not None:
                self.adjust_keys[key] += 1
            if self._trip is not None:
                left, trip_action = self._trip
                self._trip = (left - 1, trip_action) if left > 1 else None
                if left == 1:
                    action = trip_action
            if key is not None and self._hold is not None and self._hold[0] == store:
                left = self._hold[1]
                self._hold = (store, left - 1) if left > 1 else None
                hold = left == 1
        if action is not None:
            action()
            self.tripped.set()
        if not hold:
            await self.app(scope, _replaying(body, receive), send)
            return
        response: list[Message] = []

        async def keep(message: Message) -> None:
            response.append(message)

        await self.app(scope, _replaying(body, receive), keep)  # the world applies it
        self.held_key, self.held_status = key, int(response[0]["status"])
        self.held.set()
        await _answer_when_gone(receive, send, response)


# --- the Shopify sandbox --------------------------------------------------------------------

ADJUST = "inventoryAdjustQuantities"
_GRAPHQL_PATH = re.compile(r"^/shops/(?P<shop>[^/]+)/admin/api/[^/]+/graphql\.json$")


def root_fields(body: bytes) -> list[tuple[str, str | None]]:
    """The root fields an Admin GraphQL request asks for, each with the key of its
    ``@idempotent(key:)`` directive (None without one); empty when the body is not GraphQL."""
    try:
        request = json.loads(body)
        document = parse(str(request["query"]))
    except (ValueError, KeyError, TypeError, GraphQLError):
        return []
    variables = request.get("variables") or {}
    found: list[tuple[str, str | None]] = []
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        for selection in definition.selection_set.selections:
            if not isinstance(selection, FieldNode):
                continue
            key: str | None = None
            for directive in selection.directives or ():
                if directive.name.value != "idempotent":
                    continue
                for argument in directive.arguments or ():
                    if argument.name.value == "key":
                        value = value_from_ast_untyped(argument.value, variables)
                        key = None if value is None else str(value)
            found.append((selection.name.value, key))
    return found


def applied_answer(response: list[Message], field: str) -> dict[str, Any] | None:
    """The mutation's payload when the answer says it was applied (200, no errors, no user
    errors); None otherwise."""
    if not response or response[0].get("status") != 200:
        return None
    raw = b"".join(m.get("body", b"") for m in response if m["type"] == "http.response.body")
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(answer, dict) or answer.get("errors"):
        return None
    payload = (answer.get("data") or {}).get(field)
    if not isinstance(payload, dict) or payload.get("userErrors"):
        return None
    return payload


class GraphQLGate:
    """ASGI middleware over the sandbox's server, reading Admin GraphQL requests.

    Calls are counted per (shop name, root field), e.g. ``("source", ADJUST)``. The held
    adjustment is the n-th ``inventoryAdjustQuantities`` the shop *applied* (answered without
    errors) under a key not applied before: an answer that refused it or replayed an earlier
    result from the idempotency record is passed on. It runs in the sandbox's thread; the test
    reads it from its own, hence the lock and the threading events."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.calls: Counter[tuple[str, str]] = Counter()  # (shop, root field) -> calls received
        self.adjust_keys: Counter[str] = Counter()  # idempotency key -> adjustments received
        self.applied_keys: set[str] = set()  # keys of adjustments the shops applied
        self._hold: tuple[str, int] | None = None  # shop, applications left until the held one
        self._trip: tuple[int, Callable[[], None]] | None = None  # calls left, action
        self.held = threading.Event()
        self.held_key: str | None = None
        self.held_answer: dict[str, Any] | None = None
        self.tripped = threading.Event()

    def hold_adjustment(self, shop: str, nth: int) -> None:
        with self._lock:
            self._hold = (shop, nth)

    def trip_after(self, calls: int, action: Callable[[], None]) -> None:
        with self._lock:
            self._trip = (calls, action)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _GRAPHQL_PATH.match(str(scope.get("path", ""))) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)  # admin endpoint, bulk results, OAuth
            return
        body = await _read_body(receive)
        if body is None:
            return  # the caller went away before its call was complete
        shop = match["shop"].removesuffix(".myshopify.com")
        fields = root_fields(body)
        key = next((k for name, k in fields if name == ADJUST), None)
        adjusting = any(name == ADJUST for name, _ in fields)
        action: Callable[[], None] | None = None
        with self._lock:
            for name, _ in fields or [("?", None)]:
                self.calls[(shop, name)] += 1
            if key is not None:
                self.adjust_keys[key] += 1
            if self._trip is not None:
                left, trip_action = self._trip
                self._trip = (left - 1, trip_action) if left > 1 else None
                if left == 1:
                    action = trip_action
        if action is not None:
            action()
            self.tripped.set()
        if not adjusting:
            await self.app(scope, _replaying(body, receive), send)
            return
        response: list[Message] = []

        async def keep(message: Message) -> None:
            response.append(message)

        await self.app(scope, _replaying(body, receive), keep)  # the shop handles it
        payload = applied_answer(response, ADJUST)
        hold = False
        with self._lock:
            if payload is not None and key is not None and key not in self.applied_keys:
                self.applied_keys.add(key)
                if self._hold is not None and self._hold[0] == shop:
                    left = self._hold[1]
                    self._hold = (shop, left - 1) if left > 1 else None
                    hold = left == 1
        if not hold:
            for message in response:
                await send(message)
            return
        self.held_key, self.held_answer = key, payload
        self.held.set()
        await _answer_when_gone(receive, send, response)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the thread that started it when it listens (or gave up), and
    on which event loop."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)
        self.ready.set()

    def run_until_stopped(self, sock: socket.socket) -> None:
        try:
            self.run(sockets=[sock])
        finally:
            self.ready.set()  # a failed start must not leave the caller waiting


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _config(app: ASGIApp) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http="h11",
        ws="none",
        timeout_graceful_shutdown=1,
    )


@contextmanager
def serve_sandbox(
    sandbox: Sandbox,
    *,
    middleware: Callable[[ASGIApp], ASGIApp] | None = None,
    startup_timeout: float = 10.0,
) -> Iterator[str]:
    """Serve ``sandbox`` on 127.0.0.1 from a background thread with its own event loop (its
    webhooks are sent from there too); yields the server's URL. ``middleware`` wraps the
    sandbox's app and runs in that thread. Touch the sandbox's state through
    :func:`on_sandbox` while it is served."""
    sock = _loopback_socket()
    port = sock.getsockname()[1]
    app: ASGIApp = create_app(sandbox)
    server = _Server(_config(middleware(app) if middleware is not None else app))
    thread = threading.Thread(
        target=server.run_until_stopped, args=(sock,), name=f"sandbox:{port}", daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        if not server.ready.wait(startup_timeout) or not server.started or server.loop is None:
            raise RuntimeError("the sandbox's HTTP server did not start")
        loop = server.loop
        asyncio.run_coroutine_threadsafe(sandbox.start(url), loop).result(startup_timeout)
        try:
            yield url
        finally:
            asyncio.run_coroutine_threadsafe(sandbox.stop(), loop).result(startup_timeout)
    finally:
        server.should_exit = True
        thread.join(startup_timeout)
        sock.close()


async def on_sandbox(sandbox: Sandbox, fn: Callable[[], _T]) -> _T:
    """``fn()`` run on the served sandbox's event loop (its state belongs to that thread),
    without blocking the caller's loop."""
    loop = sandbox.loop
    if loop is None:
        return fn()

    async def call() -> _T:
        return fn()

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), loop))


@asynccontextmanager
async def serve_asgi(app: ASGIApp, startup_timeout: float = 10.0) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 from the running event loop; yields its URL."""
    sock = _loopback_socket()
    server = uvicorn.Server(_config(app))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))

    async def listening() -> bool:
        return server.started or task.done()

    try:
        await wait_until(listening, startup_timeout, "the web app to listen")
        if task.done():
            await task
            raise RuntimeError("the web app's HTTP server did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


# --- worker processes -----------------------------------------------------------------------


def worker_env(database_url: str, data_dir: Path, secret_key: str) -> dict[str, str]:
    """Settings for a worker that recovers a dead worker's jobs within about a second and
    runs no safety net during a test."""
    return {
        **os.environ,
        "STOCKSYNC_DATABASE_URL": database_url,
        "STOCKSYNC_DATA_DIR": str(data_dir),
        "STOCKSYNC_SECRET_KEY": secret_key,
        "STOCKSYNC_JOB_LEASE_SECONDS": "1",  # embedded queue (SQLite)
        "STOCKSYNC_JOB_HEARTBEAT_SECONDS": "0.2",  # procrastinate (PostgreSQL)
        "STOCKSYNC_JOB_STALLED_SECONDS": "1",
        "STOCKSYNC_JOB_POLL_SECONDS": "0.05",
        "STOCKSYNC_FLUSH_DEBOUNCE_MS": "20",
        # The safety nets (reconciliation, order backfill) wait an hour: they would repair
        # what the test is there to see lost.
        "STOCKSYNC_PERIODIC_SECONDS": "3600",
        # One ledger row per batch, so that the n-th adjustment is the n-th row's and a worker
        # can be killed between any two of them.
        "STOCKSYNC_FLUSH_BATCH_SIZE": "1",
        # Sales applied as soon as they are recorded, not after the linger that gathers them:
        # the calls then come in the order of the rows, one by one, as the kills expect.
        "STOCKSYNC_LEDGER_LINGER_MS": "0",
        # A checkout's decrease seen before its order is held for the sale grace, and the job
        # that looks again at its end stays queued that long even once the order explained
        # it; these tests wait for an empty queue, so the grace is short.
        "STOCKSYNC_SALE_GRACE_SECONDS": "1",
    }


class EngineWorkers:
    """``stocksync worker`` processes, each logging to a file; all killed when ``stack`` ends.

    ``module`` is what ``python -m`` runs: ``stocksync`` itself, or a module that plugs a
    platform in first and then runs it (``tests.integration.memory_worker``)."""

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        stack: ExitStack | AsyncExitStack,
        module: str = "stocksync",
    ) -> None:
        self.env, self.logs, self.stack, self.module = env, logs, stack, module
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, concurrency: int = 4) -> subprocess.Popen[bytes]:
        path = self.logs / f"worker-{len(self.started) + 1}.log"
        log = self.stack.enter_context(path.open("wb"))
        process = subprocess.Popen(
            [sys.executable, "-m", self.module, "worker", "--concurrency", str(concurrency)],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.stack.callback(_kill, process)
        self.started.append((process, path))
        return process

    def logs_text(self, limit: int = 4000) -> str:
        """The end of every worker's log, for a failure message."""
        parts = []
        for process, path in self.started:
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- worker pid {process.pid} (exit {process.poll()}):\n{text[-limit:]}")
        return "\n".join(parts)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


# --- what the engine recorded ---------------------------------------------------------------

LedgerRow = tuple[int, str, str, int, str, str]


async def ledger_rows(db: AsyncEngine) -> list[LedgerRow]:
    """(destination store id, order id, line id, delta, status, idempotency key of the batch
    it is sent in, "" before it is in one) by id."""
    async with db.connect() as conn:
        rows = await conn.execute(
            select(
                ledger.c.destination_store_id,
                ledger.c.order_id,
                ledger.c.line_id,
                ledger.c.delta,
                ledger.c.status,
                ledger_batches.c.idempotency_key,
            )
            .outerjoin(ledger_batches, ledger_batches.c.id == ledger.c.batch_id)
            .order_by(ledger.c.id)
        )
        return [(r[0], r[1], r[2], int(r[3]), r[4], r[5] or "") for r in rows]


async def count(db: AsyncEngine, table: Table) -> int:
    async with db.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def open_jobs(db: AsyncEngine) -> Counter[tuple[str, str]]:
    """Jobs waiting or running, by (task, status)."""
    if db.dialect.name == "postgresql":
        sql = (
            "SELECT task_name, status::text, count(*) FROM procrastinate_jobs"
            " WHERE status IN ('todo', 'doing') GROUP BY 1, 2"
        )
    else:
        sql = (
            "SELECT task, status, count(*) FROM jobs"
            " WHERE status IN ('todo', 'doing') GROUP BY 1, 2"
        )
    async with db.connect() as conn:
        return Counter({(r[0], r[1]): int(r[2]) for r in await conn.execute(text(sql))})


def adjustment_key(reference_document_uri: str | None) -> str | None:
    """The idempotency key stocksync names in an adjustment's reference document
    (``stocksync://SHOP/adjustments/KEY``); None for any other adjustment."""
    prefix, _, key = (reference_document_uri or "").rpartition("/adjustments/")
    return unquote(key) if prefix.startswith("stocksync://") and key else None
