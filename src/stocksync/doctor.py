"""``stocksync doctor``: what the installation is, and what is wrong with it, plainly."""

from __future__ import annotations

from rich.console import Console
from sqlalchemy import text

from stocksync.config import Settings
from stocksync.storage.db import create_engine
from stocksync.storage.migrate import current_revision, head_revision


async def run_doctor(settings: Settings, console: Console) -> list[str]:
    from sqlalchemy.engine import make_url

    url = settings.resolved_database_url
    problems: list[str] = []
    console.print(f"database:        {make_url(url).render_as_string(hide_password=True)}")
    console.print(
        "queue backend:   "
        + ("procrastinate (PostgreSQL)" if settings.is_postgres else "embedded (SQLite)")
    )
    head = head_revision()
    console.print(f"migration head:  {head}")
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # the message is what the operator needs
        problems.append(f"cannot connect to the database: {exc}")
        return problems
    finally:
        await engine.dispose()
    current = await current_revision(url)
    console.print(f"database at:     {current or 'no schema'}")
    if current != head:
        problems.append(
            f"the database is at {current or 'no schema'}, not {head}: run `stocksync migrate`"
        )
    if settings.is_postgres:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                present = (
                    await conn.execute(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL"))
                ).scalar()
        finally:
            await engine.dispose()
        if not present:
            problems.append("procrastinate's tables are missing: run `stocksync migrate`")
    return problems
