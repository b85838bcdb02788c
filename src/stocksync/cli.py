"""The ``stocksync`` command. It parses arguments and calls the engine; nothing more."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from stocksync import cli_stores
from stocksync.cli_common import check_startup, fail, load_settings, start_logs

_T = TypeVar("_T")

app = typer.Typer(
    help="stocksync: keeps products and inventory in sync across online stores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def migrate() -> None:
    """Bring the database to the latest schema."""
    from stocksync.startup import Schema, one_line
    from stocksync.storage.migrate import head_revision, upgrade

    settings = load_settings()
    check_startup(settings, schema=Schema.ANY)
    url = settings.resolved_database_url
    try:
        upgrade(url)
    except Exception as exc:  # reported plainly, with the database named
        fail(f"migration failed on {redact(url)}: {one_line(str(exc))}")
    print(f"Database {redact(url)} is at migration head {head_revision()}.")


def run_until_stopped(work: Coroutine[Any, Any, _T]) -> _T | None:
    """Run ``work`` until it ends or SIGINT / SIGTERM arrives; then it is cancelled, so that
    its ``finally`` blocks run (jobs sent back, child processes stopped), and None returned.

    The handlers are installed on the loop whatever the process inherited: a process started
    in the background of a shell inherits SIGINT ignored, and a supervisor stops with SIGTERM.
    """

    async def main() -> _T | None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopped = False

        def stop() -> None:
            nonlocal stopped
            stopped = True
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        try:
            return await work
        except asyncio.CancelledError:
            if stopped:
                return None
            raise
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(main())


@app.command()
def doctor(
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Create webhook subscriptions a store lost and backfill the orders missed.",
        ),
    ] = False,
) -> None:
    """Check the database, the job queue, the migrations and every store; exit non-zero on a
    problem."""
    from stocksync.doctor import run_doctor

    settings = load_settings()
    # The database is not touched here: the doctor connects and reports on it itself.
    check_startup(settings, database=False)
    report = asyncio.run(run_doctor(settings, console, fix=fix))
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")
    if report.problems:
        for problem in report.problems:
            err.print(f"[red]problem:[/red] {problem}")
        raise typer.Exit(1)
    console.print("[green]All checks passed.[/green]")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run a job worker in this process.")
    ] = True,
) -> None:
    """Run the web app (webhooks, API, dashboard), by default with an embedded worker.

    On SQLite (the default) the database is brought to the latest schema first; on PostgreSQL
    `stocksync migrate` must have run."""
    from stocksync.startup import StartupError, listening_socket

    settings = load_settings(command_logs=False)
    try:
        sock = listening_socket(host, port)
    except StartupError as exc:
        fail(str(exc), exc.code)
    check_startup(settings)
    # Logs start once the checks have passed: a refusal stays one plain line.
    start_logs(settings, service=True)
    # Imported once the checks have passed: a refusal stays quick.
    import uvicorn

    from stocksync.bootstrap import build_app
    from stocksync.web.app import create_web_app

    web = create_web_app(build_app(settings), embedded_worker=worker)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    # Said once the port is ours (with --port 0, the one the system chose).
    print(f"stocksync serving on http://{shown}:{bound[1]}", flush=True)
    # uvicorn's records go through our handler (log_config None), at our level; no access
    # log: each webhook has its own line.
    config = uvicorn.Config(
        web, host=host, port=bound[1], log_config=None, log_level=None, access_log=False
    )
    uvicorn.Server(config).run(sockets=[sock])


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Jobs run at once.")] = 4,
    name: Annotated[
        str | None,
        typer.Option(help="Worker name; must differ between workers (default: host, pid, random)."),
    ] = None,
) -> None:
    """Run a job worker until interrupted.

    On SQLite (the default) the database is brought to the latest schema first; on PostgreSQL
    `stocksync migrate` must have run."""
    from stocksync.startup import StartupError, prepare

    settings = load_settings(command_logs=False)
    # The database is checked (and a SQLite one migrated) before the heavier imports, and
    # inside the loop that handles SIGINT and SIGTERM, so a stop during the check is clean.
    check_startup(settings, database=False)
    from stocksync.bootstrap import build_app
    from stocksync.jobs.queue import worker_name

    async def main() -> None:
        try:
            await prepare(settings)
        except StartupError as exc:
            fail(str(exc), exc.code)
        start_logs(settings, service=True)
        from stocksync.logs import get_logger

        built = build_app(settings)
        named = name or worker_name()
        get_logger("stocksync.worker").info(
            "worker_started",
            worker=named,
            concurrency=concurrency,
            database="postgresql" if settings.is_postgres else "sqlite",
        )
        try:
            await built.start_periodic()
            await built.runtime.queue.run_worker(
                built.registry(), concurrency=concurrency, name=named
            )
        finally:
            await built.close()

    run_until_stopped(main())
    console.print("worker stopped")


@app.command()
def demo(
    once: Annotated[
        bool, typer.Option("--once", help="Exit after convergence (non-zero if none in 60 s).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the simulated day.")] = 7,
    platform: Annotated[
        str,
        typer.Option(
            help="shopify: the Shopify sandbox, with the web process and worker as separate "
            "processes; memory: the in-memory platform in one process."
        ),
    ] = "shopify",
) -> None:
    """Show stores staying in sync through a simulated day of merchant activity.

    Its logs go to a file in the demo's directory, unless STOCKSYNC_LOG_FORMAT or
    STOCKSYNC_LOG_LEVEL asks for them on stderr."""
    settings = load_settings(command_logs=False)
    if settings.log_format or settings.log_level:
        start_logs(settings, service=True)
    if platform == "memory":
        from stocksync.demo import run_demo
    elif platform == "shopify":
        from stocksync.demo_shopify import run_demo
    else:
        raise typer.BadParameter("must be shopify or memory", param_hint="--platform")
    code = run_until_stopped(run_demo(console, once=once, seed=seed))
    # Ctrl-C (or SIGTERM) ends the demo; its processes were stopped on the way out.
    sys.exit(0 if code is None else code)


def _mount_optional() -> None:
    try:
        from stocksync.sandbox.cli import sandbox_command
    except ImportError:  # the sandbox package is optional at import time
        return
    app.command("sandbox")(sandbox_command)


_mount_optional()

# Stores and connections.
app.add_typer(cli_stores.store_app, name="store")
app.command("connect")(cli_stores.connect_command)
app.command("import")(cli_stores.import_command)
app.command("status")(cli_stores.status_command)
app.command("reconcile")(cli_stores.reconcile_command)
app.add_typer(cli_stores.shopify_app, name="shopify")


def main() -> None:
    app()
