"""``stocksync doctor``: what the installation is, and what is wrong with it, plainly.

Problems make it exit non-zero; warnings are printed and leave it at zero. With ``fix`` it
also repairs what it can on the spot: webhook subscriptions a store lost are created again and
the orders they would have announced are backfilled (B17)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from rich.console import Console
from sqlalchemy import select, text

from stocksync.config import Settings
from stocksync.domain.ports import PlatformError
from stocksync.storage.db import create_engine
from stocksync.storage.migrate import current_revision, head_revision


@dataclass
class DoctorReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


async def run_doctor(
    settings: Settings, console: Console, *, fix: bool = False, today: date | None = None
) -> DoctorReport:
    from sqlalchemy.engine import make_url

    url = settings.resolved_database_url
    report = DoctorReport()
    problems = report.problems
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
        return report
    finally:
        await engine.dispose()
    current = await current_revision(url)
    console.print(f"database at:     {current or 'no schema'}")
    if current != head:
        problems.append(
            f"the database is at {current or 'no schema'}, not {head}: run `stocksync migrate`"
        )
        return report
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
            return report
    await _check_stores(settings, console, report, fix=fix, today=today or datetime.now(UTC).date())
    return report


async def _check_stores(
    settings: Settings, console: Console, report: DoctorReport, *, fix: bool, today: date
) -> None:
    """Each active store: its API version's support window, its webhook subscriptions, and
    with ``fix`` the repair of both subscriptions and missed orders."""
    from stocksync.bootstrap import build_app
    from stocksync.engine.orders import backfill_orders
    from stocksync.engine.records import StoreRecord
    from stocksync.engine.subscriptions import check_subscriptions
    from stocksync.platforms.shopify.versions import (
        DEFAULT_VERSION,
        days_left,
        refusal,
        support_warning,
    )
    from stocksync.storage.tables import stores

    app = build_app(settings)
    try:
        async with app.db.connect() as conn:
            rows = (
                await conn.execute(
                    select(stores).where(stores.c.status == "active").order_by(stores.c.id)
                )
            ).all()
        records = [StoreRecord.from_row(r) for r in rows]
        console.print(f"active stores:   {len(records)}")
        if records and not settings.public_url:
            report.warnings.append(
                "STOCKSYNC_PUBLIC_URL is not set: webhook subscriptions cannot be checked, "
                "changes arrive only through backfill and reconciliation"
            )
        for store in records:
            label = f"{store.name} (store {store.id}, {store.platform})"
            if store.platform == "shopify":
                version = store.api_version or DEFAULT_VERSION
                console.print(f"  {label}: API version {version}")
                warning = support_warning(version, today)
                if warning is not None:
                    left = days_left(version, today)
                    message = (
                        f"{label}: {warning} (`stocksync store add shopify --shop "
                        f"{store.external_id} --api-version {DEFAULT_VERSION} ...` updates it)"
                    )
                    (report.problems if left is not None and left < 0 else report.warnings).append(
                        message
                    )
                refused = refusal(version)
                if refused is not None:
                    # Nothing is sent to the store until its version changes (see bootstrap).
                    report.problems.append(
                        f"{label}: {refused} (`stocksync store add shopify --shop "
                        f"{store.external_id} --api-version {DEFAULT_VERSION} ...` updates it)"
                    )
                    continue
            try:
                found = await check_subscriptions(app.runtime, store.id, fix=fix)
            except PlatformError as exc:
                report.problems.append(f"{label}: webhook subscriptions not checked: {exc}")
                found = None
            if found is not None:
                console.print(
                    f"  {label}: webhooks {len(found.existing)} in place"
                    + (f", {len(found.created)} created again" if found.created else "")
                )
                if found.missing:
                    report.problems.append(
                        f"{label}: webhook subscriptions missing: {', '.join(found.missing)}; "
                        "run `stocksync doctor --fix`"
                    )
                if found.failed:
                    report.problems.append(
                        f"{label}: webhook subscriptions could not be created: {found.failed}"
                    )
            if fix and store.is_destination:
                try:
                    scheduled = await backfill_orders(app.runtime, store.id)
                except PlatformError as exc:
                    report.problems.append(f"{label}: orders not backfilled: {exc}")
                else:
                    console.print(f"  {label}: {scheduled} changed orders scheduled for counting")
    finally:
        await app.close()
