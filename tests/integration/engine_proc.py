"""Engine worker processes and the served memory world they reach, for the engine's kill tests.

The stores' state lives in the test's process (a :class:`MemoryWorld` served over HTTP); each
worker is a real ``python -m stocksync worker`` started with ``STOCKSYNC_*`` settings, so a
SIGKILL takes nothing but the worker with it. :class:`CallGate` stands in front of the served
world and makes the kills land where the test wants them:

- ``hold_adjustment(store, n)``: the n-th ``adjust_level`` of ``store`` is applied by the world,
  then its response is held (never sent) and ``held`` is set. The worker waits for an answer
  that never comes, and is killed there: the platform applied the change, the commit that
  records it never happens.
- ``trip_after(n, action)``: ``action`` runs when the n-th API call (of any store and method)
  arrives, before the world handles it; the call itself then goes ahead.

It also counts the calls and the idempotency keys of adjustments, so that a replayed
adjustment is visible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REPO = Path(__file__).resolve().parents[2]


class CallGate:
    """ASGI middleware over the served world. It runs in the server's thread; the test reads
    it from its own, hence the lock and the threading events."""

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
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the caller went away before its call was complete
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        prefix, _, method = str(scope["path"]).rpartition("/")
        store = prefix.removeprefix("/stores/")
        key: str | None = None
        if method == "adjust_level":
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
            await self.app(scope, replay, send)
            return
        response: list[Message] = []

        async def keep(message: Message) -> None:
            response.append(message)

        await self.app(scope, replay, keep)  # the world applies the adjustment
        self.held_key, self.held_status = key, int(response[0]["status"])
        self.held.set()
        # Never answer: wait until the caller is gone (killed).
        while (await receive())["type"] != "http.disconnect":
            pass
        for message in response:
            await send(message)  # the server drops it: the connection is closed


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
    }


class EngineWorkers:
    """``stocksync worker`` processes, each logging to a file; all killed when ``stack`` ends."""

    def __init__(self, env: dict[str, str], logs: Path, stack: ExitStack) -> None:
        self.env, self.logs, self.stack = env, logs, stack
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, concurrency: int = 4) -> subprocess.Popen[bytes]:
        path = self.logs / f"worker-{len(self.started) + 1}.log"
        log = self.stack.enter_context(path.open("wb"))
        process = subprocess.Popen(
            [sys.executable, "-m", "stocksync", "worker", "--concurrency", str(concurrency)],
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
