"""`stocksync sandbox` as a process: manifest, a plain HTTP client, signed webhooks; TOML."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from stocksync.sandbox.cli import sandbox_command
from stocksync.sandbox.config import build_sandbox, load_config
from stocksync.sandbox.manifest import shop_entry
from stocksync.sandbox.server import start_subprocess
from tests.sandbox.conftest import Admin, Receiver, subscribe
from tests.sandbox.helpers import create_order, make_product
from tests.sandbox.test_quantity_states import _cancel, _fulfil, _refund


async def test_subprocess_end_to_end(tmp_path: Path, receiver: Receiver) -> None:
    process = start_subprocess(
        tmp_path / "m.json",
        "--app-secret",
        "e2e-secret",
        "--shop",
        "store:shpat_store",
        "--log-level",
        "warning",
        "--products",
        "2",
    )
    try:
        entry = shop_entry(process.manifest, "store")
        assert entry["domain"] == "store.myshopify.com"
        assert entry["access_token"] == "shpat_store"
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            admin = Admin(http, entry["graphql_url"], entry["access_token"])
            seeded = await admin.data("{ products(first: 10) { nodes { id } } }")
            assert len(seeded["products"]["nodes"]) == 2
            await subscribe(
                admin,
                receiver,
                "ORDERS_CREATE",
                "ORDERS_FULFILLED",
                "ORDERS_CANCELLED",
                "REFUNDS_CREATE",
            )
            loc = entry["location_ids"][0]
            variant = (await make_product(admin, "E2E", ["E2E-1"], {loc: 20}))[0]
            first = await create_order(admin, variant["id"], 2)
            await _fulfil(admin, first)
            await _refund(admin, first, "RETURN", qty=1)
            second = await create_order(admin, variant["id"], 1)
            await _cancel(admin, second["id"], restock=True)
            await receiver.wait(lambda items: len(items) == 6)
            assert sorted(receiver.topics()) == [
                "orders/cancelled",
                "orders/create",
                "orders/create",
                "orders/fulfilled",
                "refunds/create",
                "refunds/create",
            ]
            for hook in receiver.items:
                digest = hmac.new(b"e2e-secret", hook.body, hashlib.sha256).digest()
                assert hook.headers["x-shopify-hmac-sha256"] == base64.b64encode(digest).decode()
                assert hook.headers["x-shopify-shop-domain"] == "store.myshopify.com"
            stats = (await http.get(f"{process.manifest['admin_url']}/stats")).json()["store"]
            assert stats["requests"] >= 8
    finally:
        process.stop()
    assert process.process.returncode is not None


def test_toml_config(tmp_path: Path) -> None:
    config = tmp_path / "sandbox.toml"
    config.write_text("""
[sandbox]
port = 0
time_scale = 60.0
seed = 4

[app]
client_secret = "from-file"
customers_redact_url = "http://127.0.0.1:9/privacy"

[[shops]]
name = "source"
access_token = "shpat_src"
locations = ["Warehouse", "Store"]
inactive_locations = ["Old"]
plan = "advanced"
bucket_size = 4000
seed = { products = 5, variants = 2, duplicate_skus = 1, blank_skus = 1 }
faults = { latency_ms = 5, error_5xx = 0.25, "webhook_drop.next" = 2 }

[[shops]]
name = "dest"
""")
    settings = load_config(config)
    sandbox = build_sandbox(settings)
    source = sandbox.shop("source")
    assert source.access_token == "shpat_src"
    assert len(source.products) == 5
    assert [loc.name for loc in source.locations.values()] == ["Warehouse", "Store", "Old"]
    assert sandbox.bucket_of(source).restore_rate == 200.0
    assert sandbox.bucket_of(source).capacity == 4000
    faults = sandbox.faults_of(source)
    assert (faults.latency_ms, faults.error_5xx.rate, faults.webhook_drop.next) == (5.0, 0.25, 2)
    assert sandbox.app.client_secret == "from-file"
    assert [s.name for s in sandbox.shops] == ["source", "dest"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[surprise]\n")
    with pytest.raises(ValueError, match="unknown sections"):
        load_config(bad)


def test_cli_rejects_bad_fault() -> None:
    app = typer.Typer()
    app.command()(sandbox_command)
    result = CliRunner().invoke(app, ["--fault", "nobody:latency_ms=5"])
    assert result.exit_code != 0
    assert "unknown shop" in result.output
