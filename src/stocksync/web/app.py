"""The FastAPI application. It only calls the engine; it decides nothing itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from sqlalchemy import text

from stocksync.bootstrap import App
from stocksync.engine.ingest import Ingestor
from stocksync.jobs.queue import worker_name
from stocksync.web.install import install_router
from stocksync.web.webhooks import shopify_router


def create_web_app(app: App, *, embedded_worker: bool = True) -> FastAPI:
    """``embedded_worker`` runs the job worker inside the web process (the laptop setup)."""
    registry = CollectorRegistry()
    jobs_gauge = Gauge("stocksync_jobs", "Jobs by status", ["status"], registry=registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker: asyncio.Task[None] | None = None
        if embedded_worker:
            await app.start_periodic()
            worker = asyncio.create_task(
                app.runtime.queue.run_worker(
                    app.registry(),
                    concurrency=app.settings.worker_concurrency,
                    name=worker_name("web"),
                )
            )
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await app.close()

    web = FastAPI(title="stocksync", version="0.1.0", lifespan=lifespan)
    web.include_router(shopify_router(app.settings, Ingestor(app.runtime)))
    web.include_router(install_router(app))

    @web.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @web.get("/readyz")
    async def readyz(response: Response) -> dict[str, str]:
        try:
            async with app.db.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any database failure means not ready
            response.status_code = 503
            return {"status": "unavailable", "reason": f"database: {type(exc).__name__}"}
        return {"status": "ready"}

    @web.get("/metrics")
    async def metrics() -> Response:
        for status, count in (await app.runtime.queue.counts()).items():
            jobs_gauge.labels(status=status).set(count)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return web
