"""The store commands as an operator scripts them: real ``stocksync`` processes against a
SQLite file and a sandbox process serving two Shopify shops over loopback HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from stocksync.sandbox.manifest import shop_entry
from stocksync.sandbox.server import SandboxProcess, start_subprocess
from stocksync.storage.db import create_engine
from stocksync.storage.migrate import upgrade
from stocksync.storage.tables import connections
from tests.integration.test_engine_support import BACKENDS, module_database
from tests.sandbox.conftest import Admin
from tests.sandbox.helpers import create_order, make_product, quantities

SUPPLIER_TOKEN = "shpat_supplier_token_0123456789"
RETAILER_TOKEN = "shpat_retailer_token_0123456789"


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stocksync", *args],
        env={**os.environ, "COLUMNS": "200", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_all(
    *calls: tuple[dict[str, str], Path, list[str]],
) -> list[subprocess.CompletedProcess[str]]:
    """Independent invocations at once (each is mostly interpreter start-up)."""
    started = [
        (
            args,
            subprocess.Popen(
                [sys.executable, "-m", "stocksync", *args],
                env={**os.environ, "COLUMNS": "200", **env},
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for env, cwd, args in calls
    ]
    done = []
    for args, process in started:
        out, errors = process.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(args, process.returncode, out, errors))
    return done


def cells(table: str) -> list[list[str]]:
    """The body rows of a Rich table, as stripped cell texts."""
    return [
        [c.strip() for c in line.split("│")[1:-1]]
        for line in table.splitlines()
        if "│" in line and line.split("│")[1].strip() != "id"
    ]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    process = start_subprocess(
        tmp_path_factory.mktemp("sandbox") / "manifest.json",
        "--shop",
        f"supplier:{SUPPLIER_TOKEN}",
        "--shop",
        f"retailer:{RETAILER_TOKEN}",
        "--locations",
        "Warehouse,Store",
        "--log-level",
        "warning",
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {
        "STOCKSYNC_DATA_DIR": str(tmp_path / "data"),
        "SUPPLIER_TOKEN": SUPPLIER_TOKEN,
        "RETAILER_TOKEN": RETAILER_TOKEN,
    }
    # Migrated in this process: the commands under test are the store commands, not migrate.
    (tmp_path / "data").mkdir()
    upgrade(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'stocksync.db'}")
    return env


def add_args(entry: dict[str, Any], var: str, role: str) -> list[str]:
    return [
        "store",
        "add",
        "shopify",
        "--shop",
        entry["domain"],
        "--token-env",
        var,
        "--role",
        role,
        "--base-url",
        entry["base_url"],
    ]


async def test_install_connect_import_and_status(  # noqa: PLR0915  one scenario, read in order
    sandbox: SandboxProcess, env: dict[str, str], tmp_path: Path
) -> None:
    supplier = shop_entry(sandbox.manifest, "supplier")
    retailer = shop_entry(sandbox.manifest, "retailer")
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        admin = Admin(http, supplier["graphql_url"], SUPPLIER_TOKEN)
        warehouse = supplier["location_ids"][0]
        await make_product(admin, "Linen shirt", ["LIN-S", "LIN-M"], {warehouse: 7})

    # Invocations that cannot affect each other run at once: each is mostly start-up time.
    wrong_token, added = run_all(
        (
            {**env, "SUPPLIER_TOKEN": "shpat_wrong"},
            tmp_path,
            add_args(supplier, "SUPPLIER_TOKEN", "source"),
        ),
        (env, tmp_path, add_args(supplier, "SUPPLIER_TOKEN", "source")),
    )
    assert wrong_token.returncode == 1
    assert wrong_token.stderr.startswith("error: ")
    assert "Traceback" not in wrong_token.stderr
    assert added.returncode == 0, added.stderr
    out = added.stdout
    assert "Installed supplier.myshopify.com as source (store 1); 2 locations, active: " in out
    assert "Unique key (share it with destinations): " in out
    assert SUPPLIER_TOKEN not in out

    added, shown = run_all(
        (env, tmp_path, add_args(retailer, "RETAILER_TOKEN", "destination")),
        (env, tmp_path, ["store", "key", "supplier.myshopify.com"]),
    )
    assert added.returncode == 0, added.stderr
    assert "Installed retailer.myshopify.com as destination (store 2)" in added.stdout
    assert "Unique key" not in added.stdout
    assert shown.returncode == 0, shown.stderr
    key = shown.stdout.strip()
    assert len(key) >= 22
    assert f"Unique key (share it with destinations): {key}" in out

    wrong, ambiguous = run_all(
        (
            env,
            tmp_path,
            ["connect", "--destination", "2", "--key", "x" * 43, "--location", "Store"],
        ),
        (env, tmp_path, ["connect", "--destination", "2", "--key", key]),
    )
    assert wrong.returncode == 1
    assert "does not match any source store" in wrong.stderr
    assert ambiguous.returncode == 1
    assert "2 active locations; choose one with --location" in ambiguous.stderr
    bad_state = run(
        env, tmp_path, "connect", "--destination", "2", "--key", key, "--count", "refunded"
    )
    assert bad_state.returncode == 2
    assert "--count takes pending, authorized or partially_paid, not refunded" in bad_state.stderr
    connected = run(
        env,
        tmp_path,
        "connect",
        "--destination",
        "retailer.myshopify.com",
        "--key",
        key,
        "--location",
        "Store",
        "--count",
        "pending",
        "--count",
        "partially-paid",
        "--buffer",
        "2",
    )
    assert connected.returncode == 0, connected.stderr
    assert "Connected retailer.myshopify.com to store 1 (connection 1)" in connected.stdout
    assert "orders counted when paid, partially_paid, pending; safety buffer 2." in connected.stdout
    db = create_engine(f"sqlite:///{tmp_path / 'data' / 'stocksync.db'}")
    try:
        async with db.connect() as c:
            stored = (await c.execute(select(connections.c.settings))).scalar_one()
    finally:
        await db.dispose()
    assert (
        stored["count_pending"],
        stored["count_partially_paid"],
        stored["count_authorized"],
        stored["safety_buffer"],
    ) == (True, True, False, 2)

    imported = run(env, tmp_path, "import", "--destination", "2")
    assert imported.returncode == 0, imported.stderr
    assert "Linen shirt" in imported.stdout
    assert "1 products, 2 variants linked" in imported.stdout

    status, rotated = run_all(
        (env, tmp_path, ["status"]),
        (env, tmp_path, ["store", "key", "1", "--rotate"]),
    )
    assert status.returncode == 0, status.stderr
    stores_part, connections_part = status.stdout.split("Connections")
    assert cells(stores_part) == [
        ["1", "supplier.myshopify.com", "shopify", "source", "active", "0", "0", "", "0", ""],
        ["2", "retailer.myshopify.com", "shopify", "destination", "active", "2", "0", "", "0", ""],
    ]
    [connection] = cells(connections_part)
    assert connection[:4] == ["1", "supplier.myshopify.com", "retailer.myshopify.com", "active"]
    assert connection[5] == "2"
    assert rotated.returncode == 0, rotated.stderr
    assert len(rotated.stdout.strip()) == len(key)
    assert rotated.stdout.strip() != key

    # Rotation leaves the connection in place (B2); a destination has no key to show.
    refused, still = run_all(
        (env, tmp_path, ["store", "key", "retailer.myshopify.com"]),
        (env, tmp_path, ["status"]),
    )
    assert refused.returncode == 1
    assert "only a source store has one" in refused.stderr
    assert cells(still.stdout.split("Connections")[1])[0][3] == "active"


def test_store_add_refuses_bad_input_before_touching_anything(tmp_path: Path) -> None:
    env = {"STOCKSYNC_DATA_DIR": str(tmp_path / "data"), "SUPPLIER_TOKEN": SUPPLIER_TOKEN}
    base = ["store", "add", "shopify", "--role", "source"]
    unset, bad_shop, bad_version, unsafe_version = run_all(
        (env, tmp_path, [*base, "--shop", "a.myshopify.com", "--token-env", "NO_SUCH_VARIABLE"]),
        (env, tmp_path, [*base, "--shop", "a.example.com", "--token-env", "SUPPLIER_TOKEN"]),
        (
            env,
            tmp_path,
            [
                *base,
                "--shop",
                "a.myshopify.com",
                "--token-env",
                "SUPPLIER_TOKEN",
                "--api-version",
                "latest",
            ],
        ),
        (
            env,
            tmp_path,
            [
                *base,
                "--shop",
                "a.myshopify.com",
                "--token-env",
                "SUPPLIER_TOKEN",
                "--api-version",
                "2025-10",
            ],
        ),
    )
    assert (unset.returncode, bad_shop.returncode, bad_version.returncode) == (2, 2, 2)
    assert unsafe_version.returncode == 2
    assert unsafe_version.stderr.startswith("error: API version 2025-10 is refused: ")
    assert "idempotency key" in unsafe_version.stderr
    assert unset.stderr == "error: environment variable NO_SUCH_VARIABLE is unset or empty\n"
    assert "'a.example.com' is not a Shopify shop domain" in bad_shop.stderr
    assert "not a Shopify API version: 'latest'" in bad_version.stderr
    assert not (tmp_path / "data").exists()


def test_app_config_prints_the_toml_sections(tmp_path: Path) -> None:
    configured = {
        "STOCKSYNC_DATA_DIR": str(tmp_path),
        "STOCKSYNC_PUBLIC_URL": "https://sync.example.com/",
        "STOCKSYNC_SHOPIFY_API_KEY": "abc123",
    }
    result, missing = run_all(
        (configured, tmp_path, ["shopify", "app-config"]),
        ({"STOCKSYNC_DATA_DIR": str(tmp_path)}, tmp_path, ["shopify", "app-config"]),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        'client_id = "abc123"\n'
        'application_url = "https://sync.example.com"\n'
        "embedded = false\n"
        "\n"
        "[access_scopes]\n"
        'scopes = "read_products,write_products,read_inventory,write_inventory,read_orders,'
        'read_locations"\n'
        "use_legacy_install_flow = true\n"
        "\n"
        "[auth]\n"
        'redirect_urls = ["https://sync.example.com/install/shopify/callback"]\n'
        "\n"
        "[webhooks]\n"
        'api_version = "2026-10"\n'
        "\n"
        "[[webhooks.subscriptions]]\n"
        'compliance_topics = ["customers/data_request", "customers/redact", "shop/redact"]\n'
        'uri = "https://sync.example.com/webhooks/shopify"\n'
    )
    assert missing.returncode == 2
    assert "STOCKSYNC_PUBLIC_URL" in missing.stderr


SET_AVAILABLE = """
mutation($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) { userErrors { field message code } }
}"""
VARIANTS = "{ productVariants(first: 50) { nodes { id sku inventoryItem { id } } } }"


async def _variants(admin: Admin) -> dict[str, tuple[str, str]]:
    """SKU -> (variant id, inventory item id)."""
    data = await admin.data(VARIANTS)
    return {n["sku"]: (n["id"], n["inventoryItem"]["id"]) for n in data["productVariants"]["nodes"]}


async def _set_available(admin: Admin, item: str, location: str, quantity: int) -> None:
    """A merchant's correction in the admin (no webhook reaches stocksync: none subscribed)."""
    data = await admin.data(
        SET_AVAILABLE,
        {
            "input": {
                "name": "available",
                "reason": "correction",
                "ignoreCompareQuantity": True,
                "quantities": [
                    {"inventoryItemId": item, "locationId": location, "quantity": quantity}
                ],
            }
        },
    )
    assert data["inventorySetQuantities"]["userErrors"] == []


async def _database_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, and every job."""
    from sqlalchemy import text

    from stocksync.storage.tables import metadata

    db = create_engine(url)
    jobs = (
        "SELECT id, task_name, status::text, args::text FROM procrastinate_jobs"
        if url.startswith("postgresql")
        else "SELECT id, task, status, args FROM jobs"
    )
    try:
        async with db.connect() as conn:
            rows = {
                t.name: sorted((tuple(r) for r in await conn.execute(select(t))), key=repr)
                for t in metadata.sorted_tables
            }
            rows["jobs"] = sorted((tuple(r) for r in await conn.execute(text(jobs))), key=repr)
    finally:
        await db.dispose()
    return rows


@pytest.fixture(params=BACKENDS)
def reconcile_env(
    request: pytest.FixtureRequest, env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[dict[str, str], str]]:
    """The commands' environment and database URL, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield env, f"sqlite:///{tmp_path / 'data' / 'stocksync.db'}"
        return
    with module_database("postgres", request.getfixturevalue("tmp_path_factory")) as url:
        pg_env = {**env, "STOCKSYNC_DATABASE_URL": url}
        migrated = run(pg_env, tmp_path, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        yield pg_env, url


async def test_reconcile_lists_drift_and_a_missed_order_then_repairs_them(  # noqa: PLR0915  one scenario, read in order
    sandbox: SandboxProcess, reconcile_env: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, db_url = reconcile_env
    # SKUs of their own: the module's shops outlive each test.
    tag = "PG" if db_url.startswith("postgresql") else "LITE"
    sku_a, sku_b = f"SCARF-{tag}-A", f"SCARF-{tag}-B"
    supplier = shop_entry(sandbox.manifest, "supplier")
    retailer = shop_entry(sandbox.manifest, "retailer")
    source_loc, dest_loc = supplier["location_ids"][0], retailer["location_ids"][0]
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        src_admin = Admin(http, supplier["graphql_url"], SUPPLIER_TOKEN)
        dest_admin = Admin(http, retailer["graphql_url"], RETAILER_TOKEN)
        await make_product(src_admin, "Wool scarf", [sku_a, sku_b], {source_loc: 7})

        added = run_all(
            (env, tmp_path, add_args(supplier, "SUPPLIER_TOKEN", "source")),
            (env, tmp_path, add_args(retailer, "RETAILER_TOKEN", "destination")),
        )
        assert [a.returncode for a in added] == [0, 0], [a.stderr for a in added]
        key = run(env, tmp_path, "store", "key", "supplier.myshopify.com").stdout.strip()
        connect_args = ["--destination", "retailer.myshopify.com", "--key", key]
        connected = run(env, tmp_path, "connect", *connect_args, "--location", "Warehouse")
        assert connected.returncode == 0, connected.stderr
        imported = run(env, tmp_path, "import", "--destination", "retailer.myshopify.com")
        assert imported.returncode == 0, imported.stderr
        # No worker runs: the first reconciliation writes the imported levels itself.
        first = run(env, tmp_path, "reconcile")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Everything agrees" in first.stdout

        src_vars, dest_vars = await _variants(src_admin), await _variants(dest_admin)
        assert (await quantities(dest_admin, dest_vars[sku_b][1], dest_loc))["available"] == 7
        # Behind stocksync's back: a correction on each side, and a paid order of 2.
        await _set_available(dest_admin, dest_vars[sku_b][1], dest_loc, 3)
        await _set_available(src_admin, src_vars[sku_b][1], source_loc, 5)
        order = await create_order(dest_admin, dest_vars[sku_a][0], 2)
        order_id = order["id"].rsplit("/", 1)[1]

        async def levels() -> list[int]:
            return [
                (await quantities(admin, vs[sku][1], loc))["available"]
                for admin, vs, loc in (
                    (src_admin, src_vars, source_loc),
                    (dest_admin, dest_vars, dest_loc),
                )
                for sku in (sku_a, sku_b)
            ]

        assert await levels() == [7, 5, 5, 3]
        before = await _database_rows(db_url)
        dry = run(env, tmp_path, "reconcile", "--dry-run", "--store", "supplier.myshopify.com")
        assert dry.returncode == 1, dry.stdout + dry.stderr
        out = dry.stdout
        assert f"order {order_id} on retailer.myshopify.com: missed, would be synced" in out
        s_a, s_b = (
            src_vars[sku_a][1].rsplit("/", 1)[1],
            src_vars[sku_b][1].rsplit("/", 1)[1],
        )
        d_a, d_b = (
            dest_vars[sku_a][1].rsplit("/", 1)[1],
            dest_vars[sku_b][1].rsplit("/", 1)[1],
        )
        dl = dest_loc.rsplit("/", 1)[1]
        assert (
            f"supplier.myshopify.com (source) SKU {sku_b} item {s_b} location *: recorded 7, "
            "expected 5, would set 5"
        ) in out
        assert (
            f"retailer.myshopify.com (destination) SKU {sku_a} item {d_a} location {dl}: "
            "found 5, expected 7, would set 7"
        ) in out
        assert (
            f"retailer.myshopify.com (destination) SKU {sku_b} item {d_b} location {dl}: "
            "found 3, expected 5, would set 5"
        ) in out
        assert sum(f"SKU SCARF-{tag}" in line for line in out.splitlines()) == 3
        assert "nothing was changed" in dry.stderr
        assert await levels() == [7, 5, 5, 3]
        assert await _database_rows(db_url) == before

        real = run(env, tmp_path, "reconcile")
        assert real.returncode == 0, real.stdout + real.stderr
        out = real.stdout
        assert f"order {order_id} on retailer.myshopify.com: missed, synced" in out
        # The order was counted (and its level sent) before the comparison.
        assert (
            f"supplier.myshopify.com (source) SKU {sku_b} item {s_b} location *: recorded 7, "
            "expected 5, set 5"
        ) in out
        assert (
            f"retailer.myshopify.com (destination) SKU {sku_b} item {d_b} location {dl}: "
            "found 3, expected 5, set 5"
        ) in out
        assert f"item {d_a}" not in out
        assert f"item {s_a}" not in out
        assert "Everything agrees" in out
        assert await levels() == [5, 5, 5, 5]

        again = run(env, tmp_path, "reconcile")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "SKU" not in again.stdout
        assert "order" not in again.stdout
        assert await levels() == [5, 5, 5, 5]  # the order counted once
        # (Only this order's: the shops outlive each test, and their older orders are not
        # under test here.)
        ledger_rows = (await _database_rows(db_url))["ledger"]
        assert len([r for r in ledger_rows if order_id in r]) == 1
