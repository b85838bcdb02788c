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
from tests.sandbox.conftest import Admin
from tests.sandbox.helpers import make_product

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


async def test_install_connect_import_and_status(
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
    unset, bad_shop, bad_version = run_all(
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
    )
    assert (unset.returncode, bad_shop.returncode, bad_version.returncode) == (2, 2, 2)
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
