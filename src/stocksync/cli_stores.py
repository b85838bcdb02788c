"""``stocksync store …``, ``connect``, ``import``, ``status`` and ``shopify app-config``: the
scriptable way to install stores and connect them. Commands parse and call the engine.

Secrets never travel on the command line (where ``ps`` and shell history would keep them):
an access token is read from the environment variable named by ``--token-env``."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stocksync.cli_common import check_startup, load_settings

if TYPE_CHECKING:
    from stocksync.bootstrap import App
    from stocksync.config import Settings
    from stocksync.engine.reconcile import ReconcileReport
    from stocksync.engine.records import StoreRecord

console = Console()
err = Console(stderr=True)

store_app = typer.Typer(help="Install stores and show their unique keys.", no_args_is_help=True)
add_app = typer.Typer(help="Install a store with an access token.", no_args_is_help=True)
store_app.add_typer(add_app, name="add")
shopify_app = typer.Typer(help="The Shopify app's configuration.", no_args_is_help=True)

_T = TypeVar("_T")


class Refused(Exception):
    """A command's plain refusal: printed in red, exit status 1."""


def _settings() -> Settings:
    return load_settings()


def _run(work: Callable[[App], Awaitable[_T]], settings: Settings | None = None) -> _T:
    """Run ``work`` with a built app, turning engine refusals into a plain message."""
    from stocksync.bootstrap import UnsupportedPlatformError, build_app
    from stocksync.domain.ports import PlatformError
    from stocksync.engine.status import AmbiguousStoreError
    from stocksync.engine.stores import StoreError
    from stocksync.platforms.shopify.oauth import InstallError

    resolved = settings or _settings()
    # On SQLite the schema is brought to the head, as by `serve`; a plain line otherwise.
    check_startup(resolved)

    async def main() -> _T:
        built = build_app(resolved)
        try:
            return await work(built)
        finally:
            await built.close()

    try:
        return asyncio.run(main())
    except (
        Refused,
        StoreError,
        InstallError,
        AmbiguousStoreError,
        UnsupportedPlatformError,
        PlatformError,
    ) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


async def _store(built: App, ref: str) -> StoreRecord:
    from stocksync.engine.status import find_store

    async with built.db.connect() as conn:
        store = await find_store(conn, ref)
    if store is None:
        raise Refused(f"no store {ref!r}: give a store id or its shop domain (see `status`)")
    return store


@add_app.command("shopify")
def add_shopify(
    shop: Annotated[str, typer.Option(help="The shop's NAME.myshopify.com domain.")],
    token_env: Annotated[
        str,
        typer.Option(help="Environment variable holding the Admin API access token."),
    ],
    role: Annotated[str, typer.Option(help="source, destination or hub.")],
    base_url: Annotated[
        str | None, typer.Option(help="The shop's base URL, when not https://SHOP (a sandbox).")
    ] = None,
    api_version: Annotated[
        str | None, typer.Option(help="Admin API version, e.g. 2026-10 (default: latest).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A display name.")] = None,
    plan_limit: Annotated[
        int | None, typer.Option(min=0, help="Products a destination may sync (B3).")
    ] = None,
) -> None:
    """Install a Shopify store with a custom app's access token; run it again to give an
    installed store a new token or API version (its key, connections and links stay)."""
    from stocksync.platforms.shopify.adapter import ShopifyPlatform
    from stocksync.platforms.shopify.oauth import normalise_shop
    from stocksync.platforms.shopify.versions import DEFAULT_VERSION, require_safe

    token = os.environ.get(token_env, "").strip()
    if not token:
        err.print(f"[red]error:[/red] environment variable {token_env} is unset or empty")
        raise typer.Exit(2)
    try:
        domain = normalise_shop(shop)
        if api_version is not None:
            require_safe(api_version)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    settings = _settings()

    async def work(built: App) -> None:
        from stocksync.engine.stores import Roles, install_store, set_locations

        roles = Roles.parse(role)
        platform = ShopifyPlatform(
            domain,
            token,
            api_version=api_version or DEFAULT_VERSION,
            base_url=base_url.rstrip("/") if base_url else None,
        )
        try:
            # The token is checked before anything is written: reading locations needs it.
            found = await platform.list_locations()
            async with built.db.begin() as conn:
                store, key = await install_store(
                    built.runtime,
                    conn,
                    vault=built.vault,
                    platform="shopify",
                    external_id=domain,
                    name=name,
                    role=role,
                    credentials=token,
                    base_url=base_url.rstrip("/") if base_url else None,
                    api_version=api_version,
                    plan_product_limit=plan_limit,
                    hub_enabled=settings.hubs_enabled,
                )
                await set_locations(conn, store.id, found)
            shared = [loc.name for loc in found if loc.active]
            console.print(
                f"Installed {store.name} as {role} (store {store.id}); "
                f"{len(found)} locations, active: {', '.join(shared) or 'none'}."
            )
            if key is not None:
                console.print(f"Unique key (share it with destinations): {key}")
            elif roles.source:
                console.print(
                    "Installed again: its unique key is unchanged "
                    f"(`stocksync store key {store.id}` prints it)."
                )
            if settings.public_url:
                report = await platform.ensure_subscriptions(
                    source=roles.source,
                    destination=roles.destination,
                    callback_url=settings.public_url.rstrip("/") + "/webhooks/shopify",
                )
                console.print(
                    f"Webhooks: {len(report.created)} created, {len(report.existing)} existed"
                    + (f", failed: {report.failed}" if report.failed else "")
                )
            else:
                console.print(
                    "Webhooks not subscribed: set STOCKSYNC_PUBLIC_URL and run this again, "
                    "or rely on reconciliation."
                )
        finally:
            await platform.aclose()

    _run(work, settings)


@store_app.command("key")
def store_key(
    store: Annotated[str, typer.Argument(help="Store id or shop domain.")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Issue a new key; existing connections stay.")
    ] = False,
) -> None:
    """Print a source store's unique key (only the key, for scripts)."""
    from stocksync.engine.stores import rotate_key, show_key

    async def work(built: App) -> str:
        record = await _store(built, store)
        async with built.db.begin() as conn:
            if rotate:
                return await rotate_key(built.runtime, conn, built.vault, record.id)
            return await show_key(conn, built.vault, record.id)

    typer.echo(_run(work))


def connect_command(
    destination: Annotated[str, typer.Option(help="Destination store id or shop domain.")],
    key: Annotated[str, typer.Option(help="The source's unique key.")],
    location: Annotated[
        str | None,
        typer.Option(help="Receiving location (id or name); default: the only active one."),
    ] = None,
    count: Annotated[
        list[str] | None,
        typer.Option(
            help="Also count this destination's orders that are pending, authorized or "
            "partially_paid against the source (repeatable; paid orders always count)."
        ),
    ] = None,
    buffer: Annotated[
        int, typer.Option(min=0, help="Safety buffer: show this many units fewer (B20).")
    ] = 0,
) -> None:
    """Connect a destination to a source by the source's unique key."""
    from stocksync.domain.connection import ConnectionSettings
    from stocksync.engine.status import store_locations
    from stocksync.engine.stores import connect_by_key

    states = {s.strip().lower().replace("-", "_") for s in count or []}
    unknown = states - {"pending", "authorized", "partially_paid"}
    if unknown:
        err.print(
            f"[red]error:[/red] --count takes pending, authorized or partially_paid, not "
            f"{', '.join(sorted(unknown))}"
        )
        raise typer.Exit(2)
    settings = ConnectionSettings(
        count_pending="pending" in states,
        count_authorized="authorized" in states,
        count_partially_paid="partially_paid" in states,
        safety_buffer=buffer,
    )

    async def work(built: App) -> str:
        dest = await _store(built, destination)
        async with built.db.connect() as conn:
            known = await store_locations(conn, dest.id)
        receiving = _pick_location(dest.name, known, location)
        # connect_by_key commits a wrong key's attempt, so that guessing is rate-limited (B2).
        record = await connect_by_key(
            built.runtime,
            destination_store_id=dest.id,
            key=key.strip(),
            actor=f"cli:store:{dest.id}",
            receiving_location=receiving,
            settings=settings,
        )
        counted = ", ".join(["paid", *sorted(states)])
        return (
            f"Connected {dest.name} to store {record.source_store_id} "
            f"(connection {record.id}), receiving at location {receiving}; orders counted "
            f"when {counted}; safety buffer {buffer}."
        )

    console.print(_run(work))


def _pick_location(store: str, known: list[tuple[str, str, bool]], wanted: str | None) -> str:
    active = [loc for loc in known if loc[2]]
    if wanted is None:
        if len(active) == 1:
            return active[0][0]
        names = ", ".join(f"{name} ({ext})" for ext, name, _ in active) or "none recorded"
        raise Refused(
            f"{store} has {len(active)} active locations; choose one with --location: {names}"
        )
    matches = [loc for loc in known if wanted in (loc[0], loc[1])]
    if len(matches) != 1:
        raise Refused(f"{store} has no single location named or numbered {wanted!r}")
    if not matches[0][2]:
        raise Refused(f"location {matches[0][1]} of {store} is deactivated")
    return matches[0][0]


def import_command(
    destination: Annotated[str, typer.Option(help="Destination store id or shop domain.")],
    product: Annotated[
        list[str] | None, typer.Option(help="Only this source product id (repeatable).")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="The source, when the destination has several.")
    ] = None,
) -> None:
    """Import the source's products into a destination (B7), with a progress bar."""
    from stocksync.engine.catalog import CatalogReport, import_products
    from stocksync.engine.status import active_connections_of

    async def work(built: App) -> CatalogReport:
        dest = await _store(built, destination)
        async with built.db.connect() as conn:
            ids = await active_connections_of(conn, dest.id)
        if source is not None:
            from stocksync.engine.records import load_connection

            src = await _store(built, source)
            async with built.db.connect() as conn:
                records = [await load_connection(conn, i) for i in ids]
            ids = [r.id for r in records if r is not None and r.source_store_id == src.id]
        if len(ids) != 1:
            raise Refused(
                f"{dest.name} has no active connection"
                if not ids
                else f"{dest.name} is connected to several sources; choose one with --source"
            )
        with Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("import", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return await import_products(built.runtime, ids[0], product or None, advance)

    report = _run(work)
    table = Table("source product", "title", "destination product", "new", "variants", "notes")
    for item in report.products:
        table.add_row(
            item.source_product_id,
            item.title,
            item.destination_product_id or "",
            "yes" if item.created else "linked",
            str(item.linked),
            "; ".join(p.reason for p in item.problems),
        )
    console.print(table)
    console.print(
        f"{len(report.products)} products, {report.linked_variants} variants linked; "
        "levels are written by the worker."
    )


def status_command() -> None:
    """Stores, connections and sync health: waiting work and each store's last failure."""
    from stocksync.engine.status import SyncStatus, sync_status

    async def work(built: App) -> SyncStatus:
        async with built.db.connect() as conn:
            return await sync_status(conn)

    found = _run(work)
    stores = Table(
        "id",
        "store",
        "platform",
        "role",
        "status",
        "pending writes",
        "pending ledger",
        "oldest pending",
        "orders to sync",
        "last error",
        title="Stores",
    )
    for s in found.stores:
        last = f"{s.last_error_at:%Y-%m-%d %H:%M} {s.last_error}" if s.last_error_at else ""
        stores.add_row(
            str(s.id),
            s.name if s.name == s.external_id else f"{s.name} ({s.external_id})",
            s.platform,
            s.role,
            s.status,
            str(s.pending_flush),
            str(s.pending_ledger),
            f"{s.oldest_pending_ledger:%Y-%m-%d %H:%M}" if s.oldest_pending_ledger else "",
            str(s.orders_to_sync),
            last,
        )
    links = Table(
        "id",
        "source",
        "destination",
        "status",
        "receiving location",
        "linked variants",
        title="Connections",
    )
    for c in found.connections:
        links.add_row(
            str(c.id),
            c.source,
            c.destination,
            c.status,
            c.receiving_location or "",
            str(c.linked_variants),
        )
    console.print(stores)
    console.print(links)


@shopify_app.command("app-config")
def app_config() -> None:
    """Print the shopify.app.toml sections stocksync needs (scopes, redirect, privacy)."""
    from stocksync.platforms.shopify.versions import DEFAULT_VERSION
    from stocksync.web.install import CALLBACK_PATH, WEBHOOK_PATH

    settings = _settings()
    if not settings.public_url:
        err.print("[red]error:[/red] set STOCKSYNC_PUBLIC_URL (the URL Shopify reaches us at)")
        raise typer.Exit(2)
    public = settings.public_url.rstrip("/")

    def q(text: str) -> str:
        return json.dumps(text)  # a JSON string is a valid TOML basic string

    lines = []
    if settings.shopify_api_key:
        lines.append(f"client_id = {q(settings.shopify_api_key)}")
    lines += [
        f"application_url = {q(public)}",
        "embedded = false",
        "",
        "[access_scopes]",
        f"scopes = {q(settings.shopify_scopes)}",
        # Scopes are asked for in the install URL (authorization code grant).
        "use_legacy_install_flow = true",
        "",
        "[auth]",
        f"redirect_urls = [{q(public + CALLBACK_PATH)}]",
        "",
        "[webhooks]",
        f"api_version = {q(DEFAULT_VERSION)}",
        "",
        "[[webhooks.subscriptions]]",
        'compliance_topics = ["customers/data_request", "customers/redact", "shop/redact"]',
        f"uri = {q(public + WEBHOOK_PATH)}",
    ]
    typer.echo("\n".join(lines))


def reconcile_command(
    store: Annotated[
        str | None,
        typer.Option(help="Only this store's links (id or shop domain); default: every source."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only read and say what would be done.")
    ] = False,
    wait: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the sync jobs at each step.")
    ] = 300.0,
) -> None:
    """Backfill missed orders, then compare every linked level and repair drift (B19); exit
    non-zero unless everything agrees afterwards."""
    from stocksync.engine.reconcile import reconcile

    async def work(built: App) -> ReconcileReport:
        store_id = (await _store(built, store)).id if store is not None else None
        registry = built.registry()

        async def settle() -> bool:
            # The jobs run here, beside any live worker, under the same locks.
            try:
                await built.runtime.queue.drain(registry, wait)
            except TimeoutError:
                return False
            return True

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("reconciling", total=None)

            def advance(phase: str, done: int, total: int) -> None:
                bar.update(task, description=phase, completed=done, total=total)

            return await reconcile(
                built.runtime, store_id, dry_run=dry_run, settle=settle, progress=advance
            )

    report = _run(work)
    _print_reconcile(report)
    if report.agreed:
        console.print(f"Everything agrees: {report.compared} levels compared.")
        return
    if report.dry_run:
        err.print(
            f"dry run: {len(report.orders)} orders to backfill and {len(report.drift)} levels "
            "differ; nothing was changed"
        )
    elif not report.settled:
        err.print(f"error: the sync jobs did not finish within {wait:g} s; run it again")
    else:
        err.print(f"error: {len(report.remaining)} levels still differ after the repair")
    raise typer.Exit(1)


def _print_reconcile(report: ReconcileReport) -> None:
    # Synced, not necessarily counted: an unpaid order changes no level on a paid-only
    # connection, and one already counted at an older version is counted by its difference.
    verb = "would be synced" if report.dry_run else "synced"
    for order in report.orders:
        console.print(
            f"order {order.order_id} on {order.store}: missed, {verb} (changed at {order.version})"
        )
    for d in report.drift:
        if report.dry_run:
            done = f"would set {d.expected}"
        elif d.set is not None:
            done = f"set {d.set}"
        else:
            done = "still differs"
        what = "recorded" if d.role == "source" else "found"
        console.print(
            f"{d.store} ({d.role}) SKU {d.sku} item {d.item_id} location {d.location}: "
            f"{what} {'none' if d.found is None else d.found}, expected {d.expected}, {done}"
        )
