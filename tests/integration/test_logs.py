"""What an operator reads: `stocksync serve` writes JSON lines on stderr, and nothing a process
logs while it installs a store, takes its webhooks and runs its jobs holds a secret."""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import uvicorn
from cryptography.fernet import Fernet

from stocksync.bootstrap import build_app
from stocksync.config import Settings
from stocksync.platforms.shopify.webhooks import sign
from stocksync.sandbox import AppConfig, Sandbox, serve_in_task
from stocksync.storage.schema import create_all
from stocksync.web.app import create_web_app
from tests.log_capture import capture_logs
from tests.sandbox.conftest import eventually

DEADLINE_SECONDS = 30.0
APP_SECRET = "logs-app-secret-5f1c"
CLIENT_ID = "stocksync-logs-test"
SHOP = "acme.myshopify.com"


def _level_body(item: int, available: int) -> bytes:
    return json.dumps(
        {
            "inventory_item_id": item,
            "location_id": 1,
            "available": available,
            "updated_at": "2026-11-26T10:00:00-05:00",
        }
    ).encode()


def _headers(
    body: bytes,
    secret: str,
    event_id: str,
    shop: str = SHOP,
    topic: str = "inventory_levels/update",
) -> dict[str, str]:
    return {
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Webhook-Id": f"wh-{event_id}",
        "X-Shopify-Hmac-Sha256": sign(secret, body),
        "Content-Type": "application/json",
    }


async def test_no_secret_in_the_logs_of_an_install_its_webhooks_and_jobs(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    public_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sandbox = Sandbox(
        app=AppConfig(
            client_id=CLIENT_ID,
            client_secret=APP_SECRET,
            redirect_urls=[f"{public_url}/install/shopify/callback"],
        ),
        seed=3,
    )
    shop = sandbox.create_shop("acme", locations=["Warehouse"])
    with capture_logs("DEBUG") as captured:
        async with serve_in_task(sandbox) as running:
            settings = Settings(
                data_dir=tmp_path,
                secret_key=key,
                shopify_api_key=CLIENT_ID,
                shopify_api_secret=APP_SECRET,
                public_url=public_url,
                shopify_shop_url=f"{running.url}/shops/{{shop}}",
            )
            built = build_app(settings)
            await create_all(built.db)
            server = uvicorn.Server(
                uvicorn.Config(
                    create_web_app(built, embedded_worker=False),
                    log_config=None,
                    access_log=False,
                )
            )
            task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
            try:
                await eventually(lambda: server.started or task.done())
                async with httpx.AsyncClient(timeout=10, trust_env=False) as browser:
                    # The install: OAuth with the app secret, a token issued, subscriptions.
                    start = await browser.get(
                        f"{public_url}/install/shopify", params={"shop": SHOP, "role": "source"}
                    )
                    approved = await browser.get(start.headers["location"])
                    callback = approved.headers["location"]
                    installed = await browser.get(callback)
                    assert installed.status_code == 200, installed.text
                    # Webhooks signed with the app secret, and one forged.
                    for n, secret in enumerate((APP_SECRET, APP_SECRET, "forged")):
                        body = _level_body(77, n)
                        answer = await browser.post(
                            f"{public_url}/webhooks/shopify",
                            content=body,
                            headers=_headers(body, secret, f"e{n}"),
                        )
                        assert answer.status_code == (401 if secret == "forged" else 200)
                    # A location changed: a job reads the shop's locations with its token.
                    body = json.dumps({"id": next(iter(shop.locations))}).encode()
                    moved = await browser.post(
                        f"{public_url}/webhooks/shopify",
                        content=body,
                        headers=_headers(body, APP_SECRET, "l1", topic="locations/update"),
                    )
                    assert moved.json()["message"] == "recorded"
                # The jobs the install scheduled: they call the shop with its token.
                await built.runtime.queue.drain(built.registry(), DEADLINE_SECONDS)
            finally:
                server.should_exit = True
                await task
                await built.close()
    sock.close()

    tokens = [t for t in shop.access_tokens if t.startswith("shpua_")]
    assert len(tokens) == 1
    code = dict(p.split("=", 1) for p in urlparse(callback).query.split("&"))["code"]
    # Each kind of line is there, with its ids...
    assert captured.events("webhook", result="refused", status=401, event_id="e2")
    assert captured.events("webhook", shop=SHOP, event_id="e0")
    runs = captured.events("job_run", outcome="ok", kind="refresh_locations")
    assert runs
    assert all(isinstance(line["job_id"], int) for line in runs)
    calls = captured.events("platform_call", shop=SHOP, outcome="ok")
    assert any("store_id" in line and "job_id" in line for line in calls), calls
    # ... and no secret anywhere: not the token, the app secret, the key or the OAuth code.
    for secret in (tokens[0], APP_SECRET, key, code):
        assert secret not in captured.text


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        left = deadline - time.monotonic()
        assert left > 0, "no output from the process in time"
        assert selector.select(timeout=left), "no output from the process in time"
        return proc.stdout.readline()


def test_serve_writes_json_lines_on_stderr(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKSYNC_")}
    env["STOCKSYNC_SHOPIFY_API_SECRET"] = APP_SECRET
    proc = subprocess.Popen(
        [sys.executable, "-m", "stocksync", "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_line(proc, time.monotonic() + DEADLINE_SECONDS)
        found = re.search(r"serving on (http://\S+)", line)
        assert found, line
        url = found.group(1)
        body = _level_body(5, 1)
        forged = httpx.post(
            f"{url}/webhooks/shopify",
            content=body,
            headers=_headers(body, "forged", "p1"),
            timeout=DEADLINE_SECONDS,
        )
        stranger = httpx.post(
            f"{url}/webhooks/shopify",
            content=body,
            headers=_headers(body, APP_SECRET, "p2", shop="stranger.myshopify.com"),
            timeout=DEADLINE_SECONDS,
        )
        assert (forged.status_code, stranger.status_code) == (401, 200)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=DEADLINE_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    lines = [json.loads(line) for line in err.splitlines()]
    assert lines, "nothing logged"
    for parsed in lines:
        assert {"timestamp", "level", "event", "logger"} <= parsed.keys(), parsed
    webhooks = [(p["event_id"], p["result"], p["status"]) for p in lines if p["event"] == "webhook"]
    assert webhooks == [("p1", "refused", 401), ("p2", "unknown_store", 200)]
    assert APP_SECRET not in err
