"""One job run, logged the same way by both queue backends.

Each run logs one line, ``job_run``, when it ends: the job's kind, id, attempt, the ids among
its arguments, the worker that ran it, its duration, and its outcome: ``ok``; ``retry`` with
the reason (it runs again after its backoff); ``failed`` with the reason (given up:
dead-lettered and in the activity log); ``interrupted`` (the worker stopped; it runs again).
While the handler runs, the job's ids are bound to the logging context, so that every line it
causes (a platform call, say) names the job and its store.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from stocksync.jobs.queue import Handler, JobContext
from stocksync.jobs.retry import describe_error, is_final
from stocksync.logs import elapsed_ms, get_logger, ids_of

log = get_logger("stocksync.jobs")


async def run_logged(
    handler: Handler, context: JobContext, args: dict[str, Any], *, worker: str | None = None
) -> None:
    """Run ``handler`` for the job ``context`` (taken by ``worker``) and log its outcome;
    exceptions pass through."""
    start = time.perf_counter()
    with structlog.contextvars.bound_contextvars(
        job_id=context.job_id, kind=context.task, **ids_of(args)
    ):
        try:
            await handler(context, args)
        except asyncio.CancelledError:
            # The worker is stopping: the job goes back to the queue, it did not fail.
            log.info(
                "job_run",
                outcome="interrupted",
                attempt=context.attempt,
                worker=worker,
                duration_ms=elapsed_ms(start, time.perf_counter()),
            )
            raise
        except Exception as exc:
            final = is_final(exc, context.attempt, context.max_attempts)
            fields: dict[str, Any] = {
                "outcome": "failed" if final else "retry",
                "attempt": context.attempt,
                "max_attempts": context.max_attempts,
                "worker": worker,
                "duration_ms": elapsed_ms(start, time.perf_counter()),
                "error": type(exc).__name__,
                "reason": describe_error(exc),
            }
            if final:
                log.error("job_run", exc_info=exc, **fields)
            else:
                log.warning("job_run", **fields)
            raise
        log.info(
            "job_run",
            outcome="ok",
            attempt=context.attempt,
            worker=worker,
            duration_ms=elapsed_ms(start, time.perf_counter()),
        )
