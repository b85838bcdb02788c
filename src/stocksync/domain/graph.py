"""The connection graph: sources above destinations, hubs in between (B1).

The graph must stay acyclic, and a sale is applied once to the variant's root source: the
store at the top of its chain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable


class CycleError(ValueError):
    """Connecting would close a cycle."""


def would_close_cycle(edges: Iterable[tuple[int, int]], source: int, destination: int) -> bool:
    """True when adding ``source -> destination`` creates a cycle (or is a self-loop)."""
    if source == destination:
        return True
    children: dict[int, set[int]] = {}
    for parent, child in edges:
        children.setdefault(parent, set()).add(child)
    # A cycle appears iff ``source`` is already reachable from ``destination``.
    stack, seen = [destination], {destination}
    while stack:
        node = stack.pop()
        for nxt in children.get(node, ()):
            if nxt == source:
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def check_connect(edges: Iterable[tuple[int, int]], source: int, destination: int) -> None:
    if would_close_cycle(edges, source, destination):
        raise CycleError(
            "this connection would close a cycle: the source already receives stock, directly "
            "or through other stores, from this destination"
        )


async def root_of(
    start: tuple[int, str], upstream: Callable[[int, str], Awaitable[tuple[int, str] | None]]
) -> tuple[int, str]:
    """Follow ``upstream`` (store, item) -> (its source store, source item) to the top.

    The graph is acyclic by construction; the visited set guards against corrupted data."""
    node, seen = start, {start}
    while (parent := await upstream(*node)) is not None:
        if parent in seen:
            raise CycleError(f"variant links form a cycle at store {parent[0]}")
        seen.add(parent)
        node = parent
    return node
