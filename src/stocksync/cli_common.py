"""What every ``stocksync`` command shares: settings loaded from the environment, the startup
check, and a refusal as one plain line. Apart from ``cli.py`` so that the command modules
(``cli.py``, ``cli_stores.py``) import it without importing each other."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from pydantic import ValidationError

from stocksync.config import Settings


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop the command with one plain line on stderr (not through rich: it would wrap a long
    line at the terminal's width)."""
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


def load_settings(*, command_logs: bool = True) -> Settings:
    """The settings, or one plain line and exit 2. ``command_logs``: set up the logs of a
    one-shot command (see ``start_logs``); ``serve``, ``worker`` and ``demo`` do it later."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = []
        for problem in exc.errors():
            message = str(problem["msg"]).removeprefix("Value error, ")
            if problem["loc"]:
                name = "STOCKSYNC_" + "_".join(str(p) for p in problem["loc"]).upper()
                message = f"{name}: {message}"
            problems.append(message)
        fail("; ".join(problems) + " (environment variables STOCKSYNC_*)", 2)
    if command_logs:
        start_logs(settings, service=False)
    return settings


def start_logs(settings: Settings, *, service: bool) -> None:
    """Structured logs on stderr for this process (stocksync.logs), set up once.

    A service (``serve``, ``worker``) logs at INFO: each job run, platform call and webhook.
    A one-shot command reports what it did itself and logs errors only, unless
    STOCKSYNC_LOG_LEVEL or STOCKSYNC_LOG_FORMAT asks for more."""
    from stocksync import logs

    level = settings.log_level
    if level is None:
        level = "INFO" if service or settings.log_format else "ERROR"
    logs.configure(settings.log_format, level)


def check_startup(settings: Settings, **options: Any) -> None:
    """The shared startup check (stocksync.startup): a plain line and a non-zero exit on an
    expected condition; on SQLite the schema is brought to the head."""
    from stocksync.startup import StartupError
    from stocksync.startup import check_startup as check

    try:
        check(settings, **options)
    except StartupError as exc:
        fail(str(exc), exc.code)
