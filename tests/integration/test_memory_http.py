"""The memory world served over real HTTP answers exactly as the in-process store does."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from stocksync.domain.ports import (
    AuthError,
    IdempotencyConflictError,
    LevelWrite,
    LocationInactiveError,
    NotFoundError,
    PermanentPlatformError,
    PlatformError,
    ProductDraft,
    SetOutcome,
    StorePlatform,
    ThrottledError,
    TransientPlatformError,
    UserErrors,
    Variant,
)
from stocksync.platforms.memory import ManualClock, MemoryStore, MemoryWorld
from stocksync.platforms.memory_http import (
    HttpMemoryPlatform,
    error_from_response,
    error_to_response,
    serve_memory_world,
)

_refs = itertools.count(1)


@pytest.fixture(scope="module")
def world() -> MemoryWorld:
    return MemoryWorld(ManualClock(datetime(2025, 3, 1, tzinfo=UTC)))


@pytest.fixture(scope="module")
def base_url(world: MemoryWorld) -> Iterator[str]:
    # one server for the module; each test works in a store of its own
    with serve_memory_world(world) as url:
        yield url


@pytest.fixture
def store(world: MemoryWorld) -> MemoryStore:
    return world.add_store(f"shop-{next(_refs)}.example", locations=["Warehouse", "Shop"])


@pytest.fixture
async def remote(base_url: str, store: MemoryStore) -> AsyncIterator[HttpMemoryPlatform]:
    async with HttpMemoryPlatform(base_url, store.ref) as platform:
        yield platform


FULL_DRAFT = ProductDraft(
    title="Théière « Kyūsu » 急須",
    variants=(
        Variant(
            id="",
            item_id="",
            sku="TEA-1 ",
            tracked=True,
            title="Small / Ash",
            barcode="0123456789012",
            price="34.90",
            compare_at_price="39.00",
            weight=0.1,
            weight_unit="KILOGRAMS",
            option_values=("Small", "Ash"),
            continue_selling=True,
        ),
        Variant(id="", item_id="", sku="TEA-2", tracked=False),
    ),
    description="<p>Cast iron</p>",
    vendor="Iwachu",
    product_type="Teapot",
    tags=("tea", "stocksync-hidden"),
    status="draft",
    images=("https://cdn.example/tea.png",),
    options=("Size", "Colour"),
    extra={"handle": "kyusu"},
)


async def test_the_client_implements_the_port(remote: HttpMemoryPlatform) -> None:
    assert isinstance(remote, StorePlatform)


async def test_locations_and_levels_round_trip(
    store: MemoryStore, remote: HttpMemoryPlatform
) -> None:
    product = store.add_product("Tee", ["A", "B"], available=3)
    warehouse, shop = store.location_ids()
    store.deactivate_location(shop)
    store.unstock(product.variants[1].item_id, warehouse)
    store.set_available(product.variants[0].item_id, warehouse, -2)
    item_ids = [v.item_id for v in product.variants]
    assert await remote.list_locations() == await store.list_locations()
    levels = await remote.read_levels(item_ids, [warehouse, shop])
    assert levels == await store.read_levels(item_ids, [warehouse, shop])
    assert levels[(item_ids[0], warehouse)] == -2
    assert levels[(item_ids[1], warehouse)] is None


async def test_set_levels_round_trips_applied_and_stale(
    store: MemoryStore, remote: HttpMemoryPlatform
) -> None:
    product = store.add_product("Tee", ["A", "B"], available=3)
    here = store.primary_location_id
    a, b = (v.item_id for v in product.variants)
    assert await remote.set_levels([LevelWrite(a, here, 9, 3), LevelWrite(b, here, 8, None)]) == (
        SetOutcome()
    )
    assert (store.level(a, here), store.level(b, here)) == (9, 8)
    stale = await remote.set_levels([LevelWrite(a, here, 1, 3), LevelWrite(b, here, 1, 2)])
    assert stale == SetOutcome(stale=(a, b))
    assert (store.level(a, here), store.level(b, here)) == (9, 8)


async def test_adjust_level_round_trips_with_its_key(
    store: MemoryStore, remote: HttpMemoryPlatform
) -> None:
    product = store.add_product("Tee", ["A"], available=3)
    item, here = product.variants[0].item_id, store.primary_location_id
    await remote.adjust_level(item, here, -5, "order-1:line-1")
    await remote.adjust_level(item, here, -5, "order-1:line-1")
    assert store.level(item, here) == -2
    with pytest.raises(IdempotencyConflictError):
        await remote.adjust_level(item, here, -4, "order-1:line-1")


async def test_products_round_trip_every_field(
    store: MemoryStore, remote: HttpMemoryPlatform
) -> None:
    created = await remote.create_product(FULL_DRAFT)
    assert created == await store.get_product(created.id)
    assert created.variants[0].weight == 0.1
    assert created.updated_at == datetime(2025, 3, 1, tzinfo=UTC)
    assert await remote.get_product(created.id) == created
    assert await remote.get_product("404") is None
    assert await remote.list_products() == [created]
    assert await remote.find_variants_by_sku(["TEA-1 ", "TEA-1", "TEA-2"]) == {
        "TEA-1 ": [created.variants[0]],
        "TEA-1": [],
        "TEA-2": [created.variants[1]],
    }
    found = await remote.find_variants_by_sku(["TEA-2"])
    assert found["TEA-2"][0].product_id == created.id


async def test_orders_round_trip_with_refunds(
    store: MemoryStore, remote: HttpMemoryPlatform
) -> None:
    product = store.add_product("Tee", ["A", "B"], available=3)
    first = store.place_order([(product.variants[0].id, 2), (None, 1)], financial_status="pending")
    second = store.place_order([(product.variants[1].id, 1)])
    store.refund(second.id, [(second.lines[0].id, 1)], restock=True)
    store.cancel_order(first.id, restock=False)
    store.delete_product(product.id)  # lines now name no variant
    expected = await store.orders_changed_since(None)
    assert await remote.orders_changed_since(None) == expected
    assert await remote.orders_changed_since(expected[0].version) == expected  # inclusive
    assert await remote.get_order(second.id) == store.order(second.id)
    assert await remote.get_order("404") is None


@pytest.mark.parametrize(
    ("arrange", "error", "detail"),
    [
        ("negative", UserErrors, ("INVALID_QUANTITY_NEGATIVE",)),
        ("inactive", LocationInactiveError, "location"),
        ("throttled", ThrottledError, 2.5),
        ("timeout", TransientPlatformError, None),
        ("auth", AuthError, None),
    ],
)
async def test_errors_cross_the_wire_typed(
    store: MemoryStore,
    remote: HttpMemoryPlatform,
    arrange: str,
    error: type[PlatformError],
    detail: object,
) -> None:
    product = store.add_product("Tee", ["A"], available=3)
    item, (warehouse, shop) = product.variants[0].item_id, store.location_ids()
    location, quantity = warehouse, 1
    if arrange == "negative":
        quantity = -1
    elif arrange == "inactive":
        store.deactivate_location(shop)
        location = shop
    elif arrange == "auth":
        store.faults.auth_revoked = True
    else:
        store.faults.fail_next(arrange, retry_after=2.5)  # type: ignore[arg-type]
    with pytest.raises(error) as raised:
        await remote.set_levels([LevelWrite(item, location, quantity, None)])
    assert type(raised.value) is error
    if isinstance(raised.value, UserErrors):
        assert raised.value.codes == detail
    if isinstance(raised.value, LocationInactiveError):
        assert raised.value.location_id == shop
    if isinstance(raised.value, ThrottledError):
        assert raised.value.retry_after == detail
    assert store.level(item, warehouse) == 3


async def test_a_lost_response_over_http_applies_and_raises(
    store: MemoryStore, remote: HttpMemoryPlatform
) -> None:
    product = store.add_product("Tee", ["A"], available=3)
    item, here = product.variants[0].item_id, store.primary_location_id
    store.faults.fail_next("lost_response")
    with pytest.raises(TransientPlatformError):
        await remote.set_levels([LevelWrite(item, here, 0, 3)])
    assert store.level(item, here) == 0


async def test_an_unknown_store_is_not_found(base_url: str) -> None:
    async with HttpMemoryPlatform(base_url, "nowhere.example") as remote:
        with pytest.raises(NotFoundError):
            await remote.list_locations()


async def test_a_malformed_request_is_refused(base_url: str, store: MemoryStore) -> None:
    product = store.add_product("Tee", ["A"], available=3)
    write = {
        "item_id": int(product.variants[0].item_id),  # an id must travel as a string
        "location_id": store.primary_location_id,
        "quantity": 1,
        "compare": None,
    }
    async with httpx.AsyncClient(base_url=base_url, trust_env=False) as client:
        response = await client.post(f"/stores/{store.ref}/set_levels", json={"writes": [write]})
        not_json = await client.post(f"/stores/{store.ref}/set_levels", content=b"{")
    assert response.status_code == not_json.status_code == 422
    assert response.json()["error"]["codes"] == ["INVALID_INPUT"]
    assert store.level(product.variants[0].item_id, store.primary_location_id) == 3


async def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with HttpMemoryPlatform(f"http://127.0.0.1:{port}", "shop.example") as remote:
        with pytest.raises(TransientPlatformError):
            await remote.list_products()


async def test_a_client_timeout_is_transient() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    transport = httpx.MockTransport(hang)
    async with HttpMemoryPlatform("http://127.0.0.1:9", "s", transport=transport) as remote:
        with pytest.raises(TransientPlatformError, match="timed out"):
            await remote.adjust_level("1", "2", 1, "k")


@pytest.mark.parametrize(
    "error",
    [
        TransientPlatformError("down"),
        ThrottledError("slow down", retry_after=None),
        AuthError("who are you"),
        NotFoundError("gone"),
        LocationInactiveError("closed", "77"),
        IdempotencyConflictError("again?"),
        UserErrors("no", ["A", "B"]),
        PermanentPlatformError("never"),
    ],
)
def test_every_error_survives_the_round_trip(error: PlatformError) -> None:
    response = error_to_response(error)
    back = error_from_response(
        response.status_code, httpx.Headers(dict(response.headers)), bytes(response.body)
    )
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert vars(back) == vars(error)


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after"),
    [
        (502, {}, TransientPlatformError, None),
        (429, {"Retry-After": "3"}, ThrottledError, 3.0),
        (401, {}, AuthError, None),
        (404, {}, NotFoundError, None),
        (418, {}, PermanentPlatformError, None),
    ],
)
def test_an_unreadable_error_body_falls_back_on_the_status(
    status: int, headers: dict[str, str], expected: type[PlatformError], retry_after: float | None
) -> None:
    error = error_from_response(status, httpx.Headers(headers), b"<html>Bad gateway</html>")
    assert type(error) is expected
    if isinstance(error, ThrottledError):
        assert error.retry_after == retry_after
