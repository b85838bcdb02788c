"""Enumerated crash points: places where a worker killed at that instant must lose nothing and
apply nothing twice. Tests install a hook that raises at a chosen point; production has none."""

from __future__ import annotations

from collections.abc import Callable

POINTS: tuple[str, ...] = (
    "ingest.before_commit",
    "refresh.after_read",
    "refresh.before_commit",
    "flush.after_read",
    "flush.after_set",  # the write is applied on the platform, not yet recorded here
    "flush.before_commit",
    "order.after_fetch",
    "order.before_commit",
    "apply.after_location",
    "apply.after_adjust",  # the adjustment is applied on the platform, not yet recorded
    "apply.before_commit",
)

_hook: Callable[[str], None] | None = None


def point(name: str) -> None:
    if _hook is not None:
        _hook(name)


def install(hook: Callable[[str], None] | None) -> None:
    global _hook
    _hook = hook
