"""The connection graph stays acyclic; a sale goes to the root source of its chain (B1)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stocksync.domain.graph import CycleError, check_connect, root_of, would_close_cycle

DETERMINISTIC = settings(derandomize=True, max_examples=200, deadline=None)

# supplier (1) -> hub (2) -> retailer (3), and a second retailer (4) of the hub
CHAIN = [(1, 2), (2, 3), (2, 4)]


def test_self_loop_is_a_cycle() -> None:
    assert would_close_cycle([], 5, 5)
    with pytest.raises(CycleError):
        check_connect([], 5, 5)


def test_extending_a_chain_is_allowed() -> None:
    assert not would_close_cycle(CHAIN, 3, 5)
    assert not would_close_cycle(CHAIN, 1, 4)  # a second path down is not a cycle
    assert not would_close_cycle(CHAIN, 5, 1)  # a new supplier above the top
    check_connect(CHAIN, 3, 5)


@pytest.mark.parametrize(("source", "destination"), [(3, 1), (2, 1), (4, 2), (3, 2), (4, 1)])
def test_connecting_a_store_below_to_one_above_closes_a_cycle(
    source: int, destination: int
) -> None:
    assert would_close_cycle(CHAIN, source, destination)


def test_cycle_error_says_why_plainly() -> None:
    with pytest.raises(CycleError) as info:
        check_connect(CHAIN, 3, 1)
    message = str(info.value)
    assert "would close a cycle" in message
    assert "already receives stock" in message


def test_edges_may_be_a_one_shot_iterable() -> None:
    assert would_close_cycle(iter(CHAIN), 3, 1)


def _reachable(edges: list[tuple[int, int]], start: int) -> set[int]:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        for a, b in edges:
            if a == node and b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


@DETERMINISTIC
@given(
    edges=st.lists(
        st.tuples(st.integers(0, 7), st.integers(0, 7)).filter(lambda e: e[0] < e[1]),
        max_size=14,
    ),
    source=st.integers(0, 7),
    destination=st.integers(0, 7),
)
def test_would_close_cycle_matches_reachability(
    edges: list[tuple[int, int]], source: int, destination: int
) -> None:
    """On any acyclic graph (edges go from lower to higher ids), a new edge closes a cycle
    exactly when its source is reachable from its destination."""
    expected = source in _reachable(edges, destination)
    assert would_close_cycle(edges, source, destination) is expected


# --- root_of ---------------------------------------------------------------------------------


Upstream = Callable[[int, str], Awaitable[tuple[int, str] | None]]


def _upstream_of(
    links: dict[tuple[int, str], tuple[int, str]],
) -> tuple[Upstream, list[tuple[int, str]]]:
    calls: list[tuple[int, str]] = []

    async def upstream(store: int, item: str) -> tuple[int, str] | None:
        calls.append((store, item))
        return links.get((store, item))

    return upstream, calls


async def test_root_of_a_source_is_itself() -> None:
    upstream, _ = _upstream_of({})
    assert await root_of((1, "item-1"), upstream) == (1, "item-1")


async def test_root_of_follows_the_chain_to_the_top() -> None:
    links = {(3, "r-item"): (2, "h-item"), (2, "h-item"): (1, "s-item")}
    upstream, calls = _upstream_of(links)
    assert await root_of((3, "r-item"), upstream) == (1, "s-item")
    assert calls == [(3, "r-item"), (2, "h-item"), (1, "s-item")]


async def test_root_of_reports_a_cycle_in_corrupted_links() -> None:
    links = {(3, "a"): (2, "b"), (2, "b"): (1, "c"), (1, "c"): (3, "a")}
    upstream, _ = _upstream_of(links)
    with pytest.raises(CycleError, match="variant links form a cycle at store 3"):
        await root_of((3, "a"), upstream)


async def test_root_of_reports_a_self_link() -> None:
    upstream, _ = _upstream_of({(4, "x"): (4, "x")})
    with pytest.raises(CycleError, match="store 4"):
        await root_of((4, "x"), upstream)
