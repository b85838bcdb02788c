"""Webhook subscriptions that disappear come back, and `stocksync doctor` says what is wrong
with each store: Shopify removes an API-created subscription once its deliveries have failed
for long enough; the periodic job and `stocksync doctor --fix` create it again, and the order
backfill catches up on what it would have announced (B17).

The sandbox runs in this process on a manual clock, over real HTTP; `stocksync` commands run as
real processes against the same database."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import select, text, update

from stocksync.bootstrap import App, build_app
from stocksync.config import Settings
from stocksync.doctor import run_doctor
from stocksync.engine.periodic import run_periodic
from stocksync.engine.schedule import SYNC_ORDER
from stocksync.engine.stores import install_store, set_locations
from stocksync.sandbox import AppConfig, ManualClock, RunningSandbox, Sandbox, serve_in_task
from stocksync.sandbox.seed import SeedSpec, seed_shop
from stocksync.sandbox.state import Shop
from stocksync.storage.tables import activity_log, stores

SECRET = "subscriptions-secret"
DESTINATION_TOPICS = {
    "APP_UNINSTALLED",
    "INVENTORY_LEVELS_UPDATE",
    "PRODUCTS_UPDATE",
    "PRODUCTS_DELETE",
    "ORDERS_CREATE",
    "ORDERS_PAID",
    "ORDERS_UPDATED",
    "ORDERS_CANCELLED",
    "ORDERS_EDITED",
    "REFUNDS_CREATE",
    "LOCATIONS_UPDATE",
    "LOCATIONS_ACTIVATE",
    "LOCATIONS_DEACTIVATE",
    "LOCATIONS_DELETE",
}


def _closed_port_url() -> str:
    """A loopback address nothing listens on: stocksync's web process is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class Env:
    app: App
    sandbox: Sandbox
    running: RunningSandbox
    shop: Shop
    clock: ManualClock
    store_id: int
    env: dict[str, str]
    tmp: Path

    def topics(self) -> set[str]:
        return {s.topic for s in self.sandbox.webhooks.of_shop(self.shop)}

    async def stocksync(self, *args: str) -> tuple[int, str]:
        """A `stocksync` command as its own process; the sandbox keeps serving meanwhile."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "stocksync",
            *args,
            env=self.env,
            cwd=self.tmp,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode is not None
        return process.returncode, out.decode()

    async def lose_subscriptions_by_failed_deliveries(self) -> None:
        """An inventory change whose every delivery attempt fails, for as long as Shopify
        retries (the manual clock is moved through the retries)."""
        removed_before = self.sandbox.stats_of(self.shop).subscriptions_removed
        level = next(iter(self.shop.levels.values()))
        self.shop.change_level(level, "available", 1)
        for _ in range(200):
            removed = self.sandbox.stats_of(self.shop).subscriptions_removed > removed_before
            if removed and not self.sandbox.webhooks.tasks:  # every delivery has given up
                return
            await asyncio.sleep(0.01)  # let the failed POST happen before moving time on
            self.clock.advance(3600)
        raise AssertionError("the sandbox never removed the failing subscription")


@pytest.fixture
async def env(db_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    # Orders placed before the install never count, so the shop and the engine must share one
    # timeline: the shop's clock moves only when told, so it starts a minute ahead of the
    # engine's real one and never falls behind it while the test runs.
    clock = ManualClock(start=time.time() + 60)
    sandbox = Sandbox(
        app=AppConfig(client_id="stocksync-doctor", client_secret=SECRET), clock=clock, seed=3
    )
    shop = sandbox.create_shop("retailer", locations=["Shop floor"])
    seed_shop(shop, SeedSpec(products=1, variants=1, seed=3, hidden_ratio=0, untracked_ratio=0))
    async with serve_in_task(sandbox) as running:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKSYNC_")}
        env.update(
            {
                "STOCKSYNC_DATA_DIR": str(tmp_path / "data"),
                "STOCKSYNC_PUBLIC_URL": _closed_port_url(),
                "STOCKSYNC_SHOPIFY_API_SECRET": SECRET,
                "COLUMNS": "250",  # no wrapped lines in what the tests read
            }
        )
        if db_url.startswith("postgresql"):
            env["STOCKSYNC_DATABASE_URL"] = db_url
        probe = Env(None, sandbox, running, shop, clock, 0, env, tmp_path)  # type: ignore[arg-type]
        code, out = await probe.stocksync("migrate")
        assert code == 0, out
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=env.get("STOCKSYNC_DATABASE_URL"),
            public_url=env["STOCKSYNC_PUBLIC_URL"],
            shopify_api_secret=SECRET,
        )
        app = build_app(settings)
        async with app.db.begin() as conn:
            store, _ = await install_store(
                app.runtime,
                conn,
                vault=app.vault,
                platform="shopify",
                external_id=shop.domain,
                role="destination",
                credentials=shop.access_token,
                base_url=sandbox.shop_base_url(shop),
            )
            await set_locations(conn, store.id, await app.runtime.platforms(store).list_locations())
        try:
            yield Env(app, sandbox, running, shop, clock, store.id, env, tmp_path)
        finally:
            await app.close()


async def _activity(app: App, kind: str) -> list[str]:
    async with app.db.connect() as conn:
        rows = await conn.execute(select(activity_log.c.message).where(activity_log.c.kind == kind))
        return [r[0] for r in rows]


async def _waiting_orders(app: App) -> list[str]:
    """Orders scheduled to be read and counted, on either queue backend."""
    if app.db.dialect.name == "postgresql":
        sql = "SELECT args FROM procrastinate_jobs WHERE task_name = :task AND status = 'todo'"
    else:
        sql = "SELECT args FROM jobs WHERE task = :task AND status = 'todo'"
    async with app.db.connect() as conn:
        rows = (await conn.execute(text(sql), {"task": SYNC_ORDER})).all()
    return sorted((json.loads(r[0]) if isinstance(r[0], str) else r[0])["order_id"] for r in rows)


async def test_periodic_job_recreates_subscriptions_shopify_removed(env: Env) -> None:
    await run_periodic(env.app.runtime, env.store_id, timedelta(minutes=10))
    assert env.topics() == DESTINATION_TOPICS
    # Created at the first check, as at install: nothing was "missing" before it.
    assert len(env.sandbox.webhooks.of_shop(env.shop)) == len(DESTINATION_TOPICS)

    # While stocksync cannot be reached, a customer orders: that webhook fails too.
    variant = next(iter(env.shop.variants))
    env.shop.create_order(lines=[{"variant_id": variant, "quantity": 1}])
    await env.lose_subscriptions_by_failed_deliveries()
    lost = DESTINATION_TOPICS - env.topics()
    assert lost == {"INVENTORY_LEVELS_UPDATE", "ORDERS_CREATE", "ORDERS_PAID"}

    await run_periodic(env.app.runtime, env.store_id, timedelta(minutes=10))
    assert env.topics() == DESTINATION_TOPICS
    assert len(env.sandbox.webhooks.of_shop(env.shop)) == len(DESTINATION_TOPICS)
    recreated = await _activity(env.app, "webhooks_recreated")
    assert recreated[-1].endswith(": INVENTORY_LEVELS_UPDATE, ORDERS_CREATE, ORDERS_PAID")
    # The backfill ran after the check: the order whose webhook never came is scheduled.
    assert await _waiting_orders(env.app) == [str(o) for o in env.shop.orders]

    # Again: nothing is missing, nothing is created, nothing more is logged.
    before = len(await _activity(env.app, "webhooks_recreated"))
    await run_periodic(env.app.runtime, env.store_id, timedelta(minutes=10))
    assert len(env.sandbox.webhooks.of_shop(env.shop)) == len(DESTINATION_TOPICS)
    assert len(await _activity(env.app, "webhooks_recreated")) == before


async def test_a_store_that_cannot_be_reached_is_logged_and_still_backfilled(env: Env) -> None:
    env.sandbox.set_faults("retailer", error_5xx={"next": 1000})
    with pytest.raises(Exception):  # noqa: B017 (the backfill's own failure retries the job)
        await run_periodic(env.app.runtime, env.store_id, timedelta(minutes=10))
    unchecked = await _activity(env.app, "webhooks_unchecked")
    assert len(unchecked) == 1
    assert "could not be checked" in unchecked[0]
    env.sandbox.clear_faults("retailer")


async def test_doctor_reports_missing_subscriptions_and_fix_creates_them(env: Env) -> None:
    code, out = await env.stocksync("doctor")
    assert code == 1, out
    assert "webhook subscriptions missing" in out
    assert "run `stocksync doctor --fix`" in out
    assert env.topics() == set()  # a plain doctor changes nothing

    code, out = await env.stocksync("doctor", "--fix")
    assert code == 0, out
    assert f"{len(DESTINATION_TOPICS)} created again" in out
    assert "changed orders scheduled for counting" in out
    assert env.topics() == DESTINATION_TOPICS

    code, out = await env.stocksync("doctor")
    assert code == 0, out
    assert f"webhooks {len(DESTINATION_TOPICS)} in place" in out


async def _use_version(env: Env, version: str) -> None:
    async with env.app.db.begin() as conn:
        await conn.execute(
            update(stores).where(stores.c.id == env.store_id).values(api_version=version)
        )


@pytest.mark.parametrize(
    ("version", "today", "warned", "problem"),
    [
        ("2026-10", date(2026, 11, 26), None, None),
        # 2026-01 is served until 2027-01-01: three months before, the operator hears of it.
        ("2026-01", date(2026, 9, 30), None, None),
        ("2026-01", date(2026, 10, 1), "stops being supported on 2027-01-01 (92 days)", None),
        ("2026-01", date(2026, 11, 26), "stops being supported on 2027-01-01 (36 days)", None),
    ],
)
async def test_doctor_warns_of_an_api_version_near_its_end_of_support(
    env: Env, version: str, today: date, warned: str | None, problem: str | None
) -> None:
    await _use_version(env, version)
    await run_periodic(env.app.runtime, env.store_id, timedelta(minutes=10))  # subscriptions
    report = await run_doctor(env.app.settings, Console(file=io.StringIO()), today=today)
    version_warnings = [w for w in report.warnings if "API version" in w]
    version_problems = [p for p in report.problems if "API version" in p]
    assert [w for w in report.warnings if w not in version_warnings] == []
    assert [p for p in report.problems if p not in version_problems] == []
    if warned is None:
        assert version_warnings == []
    else:
        assert len(version_warnings) == 1
        assert warned in version_warnings[0]
        assert "--api-version 2026-10" in version_warnings[0]
    if problem is None:
        assert version_problems == []
    else:
        assert len(version_problems) == 1
        assert problem in version_problems[0]


async def test_doctor_reports_a_stored_version_without_idempotency_keys_as_a_problem(
    env: Env,
) -> None:
    # Still inside its support window that day: refused for its missing idempotency keys.
    await _use_version(env, "2025-10")
    report = await run_doctor(env.app.settings, Console(file=io.StringIO()), today=date(2026, 6, 1))
    refused = [p for p in report.problems if "API version 2025-10 is refused" in p]
    assert len(refused) == 1
    assert "idempotency key" in refused[0]
    assert "--api-version 2026-10" in refused[0]


async def test_doctor_fails_on_a_version_past_its_end_of_support(env: Env) -> None:
    await _use_version(env, "2025-10")
    code, out = await env.stocksync("doctor", "--fix")
    assert code == 1, out
    assert "problem:" in out
    assert "API version 2025-10 stopped being supported on 2026-10-01" in out
