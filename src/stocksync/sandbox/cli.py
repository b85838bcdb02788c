"""`stocksync sandbox`: serve emulated Shopify shops.

`sandbox_command` is a plain function whose parameters carry Typer options, so that the
main CLI can mount it as a command; `python -m stocksync.sandbox` runs it on its own.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from stocksync.sandbox.sandbox import Sandbox

DEFAULT_SHOPS = ("source", "destination")


def sandbox_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8787,
    config: Annotated[
        Path | None, typer.Option(help="TOML file describing the app and the shops.")
    ] = None,
    shop: Annotated[
        list[str] | None,
        typer.Option(
            help="A shop to create, NAME or NAME:TOKEN (repeatable). "
            "Default: 'source' and 'destination' when no shop is configured."
        ),
    ] = None,
    locations: Annotated[
        str, typer.Option(help="Comma-separated location names for shops given with --shop.")
    ] = "Warehouse,Store",
    plan: Annotated[
        str, typer.Option(help="Rate-limit plan of --shop shops: standard, advanced, plus.")
    ] = "standard",
    bucket_size: Annotated[
        float | None, typer.Option(help="Bucket size in points (default: 20 s of restore).")
    ] = None,
    products: Annotated[int, typer.Option(help="Products to generate in each --shop shop.")] = 0,
    variants: Annotated[int, typer.Option(help="Variants per generated product.")] = 3,
    duplicate_skus: Annotated[int, typer.Option(help="Generated variants given a shared SKU.")] = 0,
    blank_skus: Annotated[int, typer.Option(help="Generated variants left without a SKU.")] = 0,
    app_secret: Annotated[
        str | None, typer.Option(help="The app's client secret (signs webhooks and OAuth).")
    ] = None,
    client_id: Annotated[str | None, typer.Option(help="The app's client id.")] = None,
    redirect_url: Annotated[
        list[str] | None, typer.Option(help="An allowed OAuth redirect URL (repeatable).")
    ] = None,
    privacy_url: Annotated[
        str | None, typer.Option(help="URL receiving the mandatory privacy webhooks.")
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="SHOP:NAME=VALUE, e.g. source:latency_ms=50, "
            "source:error_5xx=0.05, destination:webhook_drop.next=2 (repeatable)."
        ),
    ] = None,
    time_scale: Annotated[
        float, typer.Option(help="How much faster than real time the sandbox clock runs.")
    ] = 1.0,
    manual_clock: Annotated[
        bool,
        typer.Option(
            help='Stop the clock: it moves only through POST /_sandbox/clock {"seconds": N}.'
        ),
    ] = False,
    throttling: Annotated[
        bool, typer.Option("--throttling/--no-throttling", help="Enforce rate limits.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed for ids, faults and generated data.")] = 0,
    manifest: Annotated[
        Path | None, typer.Option(help="Write the JSON manifest of shops to this file.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Server log level.")] = "info",
) -> None:
    """Serve emulated Shopify shops (Admin GraphQL, webhooks, OAuth, rate limits, faults)."""
    # Imported here: every `stocksync` command mounts this one, and only it needs the sandbox.
    from stocksync.sandbox.clock import ManualClock
    from stocksync.sandbox.config import SandboxConfig, ShopSpec, build_sandbox, load_config
    from stocksync.sandbox.faults import parse_cli_fault

    settings = load_config(config) if config else SandboxConfig()
    if config is None:
        settings.host, settings.port = host, port
        settings.time_scale, settings.throttling, settings.seed = time_scale, throttling, seed
    else:
        # Options given on the command line win over the file for the server itself.
        settings.host = host if host != "127.0.0.1" else settings.host
        settings.port = port if port != 8787 else settings.port
        settings.time_scale = time_scale if time_scale != 1.0 else settings.time_scale
        settings.throttling = settings.throttling and throttling
    if app_secret:
        settings.app.client_secret = app_secret
    if client_id:
        settings.app.client_id = client_id
    if redirect_url:
        settings.app.redirect_urls = list(redirect_url)
    if privacy_url:
        settings.app.customers_data_request_url = privacy_url
        settings.app.customers_redact_url = privacy_url
        settings.app.shop_redact_url = privacy_url
    names = list(shop or ([] if settings.shops else DEFAULT_SHOPS))
    seed_spec = (
        {
            "products": products,
            "variants": variants,
            "seed": seed + i + 1,
            "duplicate_skus": duplicate_skus,
            "blank_skus": blank_skus,
        }
        for i in range(len(names))
    )
    for entry, spec in zip(names, seed_spec, strict=True):
        name, _, token = entry.partition(":")
        settings.shops.append(
            ShopSpec(
                name=name,
                access_token=token or None,
                locations=[x.strip() for x in locations.split(",") if x.strip()],
                plan=plan,
                bucket_size=bucket_size,
                seed=spec if products else None,
            )
        )
    by_name = {s.name: s for s in settings.shops}
    for text in fault or []:
        try:
            shop_name, fault_name, value = parse_cli_fault(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--fault") from exc
        if shop_name not in by_name:
            raise typer.BadParameter(f"unknown shop {shop_name!r}", param_hint="--fault")
        by_name[shop_name].faults[fault_name] = value
    try:
        sandbox = build_sandbox(settings, ManualClock() if manual_clock else None)
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(sandbox, settings.host, settings.port, manifest, log_level))


async def _serve(
    sandbox: Sandbox, host: str, port: int, manifest: Path | None, log_level: str
) -> None:
    import uvicorn

    from stocksync.sandbox.manifest import write_manifest
    from stocksync.sandbox.server import _bound_port, _config, create_app

    server = uvicorn.Server(_config(create_app(sandbox), host, port, log_level))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.01)
    url = f"http://{host}:{_bound_port(server)}"
    await sandbox.start(url)
    if manifest is not None:
        write_manifest(manifest, sandbox.manifest())
    typer.echo(f"stocksync sandbox serving {len(sandbox.shops)} shop(s) at {url}")
    for shop in sandbox.shops:
        typer.echo(f"  {shop.domain}: {sandbox.graphql_url(shop)}  token {shop.access_token}")
    try:
        await task
    finally:
        await sandbox.stop()


def main() -> None:
    typer.run(sandbox_command)
