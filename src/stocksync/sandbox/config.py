"""Sandbox configuration from a small TOML file.

[sandbox]
host = "127.0.0.1"
port = 8787
time_scale = 1.0
throttling = true
seed = 0

[app]
client_id = "stocksync-sandbox-app"
client_secret = "sandbox-secret"
redirect_urls = ["http://127.0.0.1:8000/auth/callback"]
customers_data_request_url = "http://127.0.0.1:8000/webhooks/shopify"

[[shops]]
name = "source"
access_token = "shpat_source"
locations = ["Warehouse", "Store"]
inactive_locations = ["Old depot"]
plan = "standard"            # standard, advanced, plus, enterprise
bucket_size = 2000
seed = { products = 20, variants = 3, duplicate_skus = 1, blank_skus = 1 }
faults = { latency_ms = 20, error_5xx = 0.01, webhook_duplicate = 0.05 }
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stocksync.sandbox.oauth import AppConfig
from stocksync.sandbox.sandbox import Sandbox
from stocksync.sandbox.seed import SeedSpec, seed_shop


@dataclass
class ShopSpec:
    name: str
    access_token: str | None = None
    locations: list[str] = field(default_factory=lambda: ["Warehouse"])
    inactive_locations: list[str] = field(default_factory=list)
    plan: str = "standard"
    bucket_size: float | None = None
    seed: dict[str, Any] | None = None
    faults: dict[str, Any] = field(default_factory=dict)


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    time_scale: float = 1.0
    throttling: bool = True
    seed: int = 0
    app: AppConfig = field(default_factory=AppConfig)
    shops: list[ShopSpec] = field(default_factory=list)


def load_config(path: str | Path) -> SandboxConfig:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    unknown = set(data) - {"sandbox", "app", "shops"}
    if unknown:
        raise ValueError(f"unknown sections in {path}: {', '.join(sorted(unknown))}")
    server = data.get("sandbox", {})
    config = SandboxConfig(**server)
    config.app = AppConfig(**data.get("app", {}))
    config.shops = [ShopSpec(**shop) for shop in data.get("shops", [])]
    return config


def build_sandbox(config: SandboxConfig, clock: Any = None) -> Sandbox:
    from stocksync.sandbox.clock import ScaledClock

    sandbox = Sandbox(
        clock=clock or ScaledClock(config.time_scale),
        app=config.app,
        seed=config.seed,
        throttling=config.throttling,
    )
    for spec in config.shops:
        shop = sandbox.create_shop(
            spec.name,
            access_token=spec.access_token,
            locations=spec.locations,
            inactive_locations=spec.inactive_locations,
            plan=spec.plan,
            bucket_size=spec.bucket_size,
            faults=spec.faults,
        )
        if spec.seed:
            seed_shop(shop, SeedSpec(**spec.seed))
    return sandbox
