"""The memory platform over HTTP, for tests whose workers are separate processes.

A worker killed with SIGKILL must not take the stores' state with it, so the
:class:`~stocksync.platforms.memory.MemoryWorld` stays in the test's process and is served by
:func:`serve_memory_world`; workers reach it through :class:`HttpMemoryPlatform`, which
implements :class:`~stocksync.domain.ports.StorePlatform` and raises the same typed errors the
in-process store raises. Every port method is ``POST /stores/{ref}/{method}`` with a JSON body;
identifiers travel as strings and quantities as integers, so values round-trip exactly.

Errors travel as ``{"error": {"type": ..., "message": ..., ...}}`` with a status that says the
same on its own (429 throttled, 503 transient, 401 auth, 404 not found, 409 inactive location or
idempotency conflict, 422 user errors, 400 other permanent errors). A connection failure or a
timeout on the client's side is a :class:`TransientPlatformError`, as it would be against a
real platform: the caller cannot know whether a write applied.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from stocksync.domain.ports import (
    AuthError,
    IdempotencyConflictError,
    IdempotencyKeySpentError,
    LevelAdjustment,
    LevelsRead,
    LevelWrite,
    LocationInactiveError,
    NotFoundError,
    OrderLine,
    OrderSnapshot,
    PermanentPlatformError,
    PlatformError,
    PlatformLocation,
    Product,
    ProductDraft,
    Refund,
    RefundLine,
    SetOutcome,
    ThrottledError,
    TransientPlatformError,
    UserErrors,
    Variant,
)
from stocksync.platforms.memory import API_METHODS, MemoryStore, MemoryWorld

Json = dict[str, Any]
_T = TypeVar("_T")


class WireError(ValueError):
    """A JSON document does not have the expected shape."""


# --- reading JSON strictly (no silent coercion: an id must be a string, a quantity an int) -----


def _obj(value: object, what: str) -> Json:
    if not isinstance(value, dict):
        raise WireError(f"{what} must be an object")
    return value


def _list(doc: Json, key: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise WireError(f"{key} must be a list")
    return value


def _str(doc: Json, key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise WireError(f"{key} must be a string")
    return value


def _opt_str(doc: Json, key: str) -> str | None:
    return None if doc.get(key) is None else _str(doc, key)


def _int(doc: Json, key: str) -> int:
    value = doc.get(key)
    if type(value) is not int:  # bool is an int subclass and a float may have lost digits
        raise WireError(f"{key} must be an integer")
    return value


def _opt_int(doc: Json, key: str) -> int | None:
    return None if doc.get(key) is None else _int(doc, key)


def _bool(doc: Json, key: str) -> bool:
    value = doc.get(key)
    if not isinstance(value, bool):
        raise WireError(f"{key} must be a boolean")
    return value


def _opt_bool(doc: Json, key: str) -> bool | None:
    return None if doc.get(key) is None else _bool(doc, key)


def _strs(doc: Json, key: str) -> tuple[str, ...]:
    values = _list(doc, key)
    if not all(isinstance(v, str) for v in values):
        raise WireError(f"{key} must be a list of strings")
    return tuple(values)


def _opt_float(doc: Json, key: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if type(value) not in (int, float):
        raise WireError(f"{key} must be a number")
    return float(value)


# --- values <-> JSON ----------------------------------------------------------------------------


def location_to_json(location: PlatformLocation) -> Json:
    return {"id": location.id, "name": location.name, "active": location.active}


def location_from_json(doc: Json) -> PlatformLocation:
    return PlatformLocation(_str(doc, "id"), _str(doc, "name"), _bool(doc, "active"))


def write_to_json(write: LevelWrite) -> Json:
    return {
        "item_id": write.item_id,
        "location_id": write.location_id,
        "quantity": write.quantity,
        "compare": write.compare,
    }


def write_from_json(doc: Json) -> LevelWrite:
    return LevelWrite(
        _str(doc, "item_id"),
        _str(doc, "location_id"),
        _int(doc, "quantity"),
        _opt_int(doc, "compare"),
    )


def variant_to_json(variant: Variant) -> Json:
    return {
        "id": variant.id,
        "item_id": variant.item_id,
        "sku": variant.sku,
        "tracked": variant.tracked,
        "title": variant.title,
        "barcode": variant.barcode,
        "price": variant.price,
        "compare_at_price": variant.compare_at_price,
        "weight": variant.weight,
        "weight_unit": variant.weight_unit,
        "option_values": list(variant.option_values),
        "continue_selling": variant.continue_selling,
        "product_id": variant.product_id,
    }


def variant_from_json(doc: Json) -> Variant:
    return Variant(
        id=_str(doc, "id"),
        item_id=_str(doc, "item_id"),
        sku=_str(doc, "sku"),
        tracked=_bool(doc, "tracked"),
        title=_str(doc, "title"),
        barcode=_opt_str(doc, "barcode"),
        price=_opt_str(doc, "price"),
        compare_at_price=_opt_str(doc, "compare_at_price"),
        weight=_opt_float(doc, "weight"),
        weight_unit=_opt_str(doc, "weight_unit"),
        option_values=_strs(doc, "option_values"),
        continue_selling=_bool(doc, "continue_selling"),
        product_id=_opt_str(doc, "product_id"),
    )


def _catalogue_fields(value: Product | ProductDraft) -> Json:
    return {
        "title": value.title,
        "variants": [variant_to_json(v) for v in value.variants],
        "description": value.description,
        "vendor": value.vendor,
        "product_type": value.product_type,
        "tags": list(value.tags),
        "status": value.status,
        "images": list(value.images),
        "options": list(value.options),
    }


def product_to_json(product: Product) -> Json:
    updated_at = product.updated_at.isoformat() if product.updated_at else None
    return {"id": product.id, **_catalogue_fields(product), "updated_at": updated_at}


def product_from_json(doc: Json) -> Product:
    updated_at = _opt_str(doc, "updated_at")
    try:
        when = datetime.fromisoformat(updated_at) if updated_at is not None else None
    except ValueError:
        raise WireError("updated_at must be an ISO-8601 instant") from None
    return Product(
        id=_str(doc, "id"),
        title=_str(doc, "title"),
        variants=tuple(variant_from_json(_obj(v, "variant")) for v in _list(doc, "variants")),
        description=_str(doc, "description"),
        vendor=_str(doc, "vendor"),
        product_type=_str(doc, "product_type"),
        tags=_strs(doc, "tags"),
        status=_str(doc, "status"),
        images=_strs(doc, "images"),
        options=_strs(doc, "options"),
        updated_at=when,
    )


def draft_to_json(draft: ProductDraft) -> Json:
    return {**_catalogue_fields(draft), "extra": dict(draft.extra)}


def draft_from_json(doc: Json) -> ProductDraft:
    extra = _obj(doc.get("extra", {}), "extra")
    if not all(isinstance(v, str) for v in extra.values()):
        raise WireError("extra must map strings to strings")
    return ProductDraft(
        title=_str(doc, "title"),
        variants=tuple(variant_from_json(_obj(v, "variant")) for v in _list(doc, "variants")),
        description=_str(doc, "description"),
        vendor=_str(doc, "vendor"),
        product_type=_str(doc, "product_type"),
        tags=_strs(doc, "tags"),
        status=_str(doc, "status"),
        images=_strs(doc, "images"),
        options=_strs(doc, "options"),
        extra=extra,
    )


def refund_to_json(refund: Refund) -> Json:
    return {
        "id": refund.id,
        "lines": [
            {
                "id": line.id,
                "line_id": line.line_id,
                "quantity": line.quantity,
                "restock": line.restock,
                "location_id": line.location_id,
            }
            for line in refund.lines
        ],
    }


def refund_from_json(doc: Json) -> Refund:
    lines = tuple(
        RefundLine(
            id=_str(line, "id"),
            line_id=_str(line, "line_id"),
            quantity=_int(line, "quantity"),
            restock=_bool(line, "restock"),
            location_id=_opt_str(line, "location_id"),
        )
        for line in (_obj(v, "refund line") for v in _list(doc, "lines"))
    )
    return Refund(_str(doc, "id"), lines)


def order_to_json(order: OrderSnapshot) -> Json:
    return {
        "id": order.id,
        "financial_status": order.financial_status,
        "cancelled": order.cancelled,
        "version": order.version,
        "created_at": order.created_at,
        "lines": [
            {"id": ln.id, "variant_id": ln.variant_id, "sku": ln.sku, "quantity": ln.quantity}
            for ln in order.lines
        ],
        "refunds": [refund_to_json(r) for r in order.refunds],
        "paid_in_full": order.paid_in_full,
    }


def order_from_json(doc: Json) -> OrderSnapshot:
    lines = tuple(
        OrderLine(
            id=_str(line, "id"),
            variant_id=_opt_str(line, "variant_id"),
            sku=_str(line, "sku"),
            quantity=_int(line, "quantity"),
        )
        for line in (_obj(v, "order line") for v in _list(doc, "lines"))
    )
    return OrderSnapshot(
        id=_str(doc, "id"),
        financial_status=_str(doc, "financial_status"),
        cancelled=_bool(doc, "cancelled"),
        version=_str(doc, "version"),
        lines=lines,
        refunds=tuple(refund_from_json(_obj(r, "refund")) for r in _list(doc, "refunds")),
        created_at=_opt_str(doc, "created_at"),
        paid_in_full=_opt_bool(doc, "paid_in_full"),
    )


# --- errors <-> HTTP ------------------------------------------------------------------------------


def error_to_response(exc: PlatformError) -> JSONResponse:
    body: Json = {"type": type(exc).__name__, "message": str(exc)}
    headers: dict[str, str] = {}
    if isinstance(exc, ThrottledError):
        status = 429
        body["retry_after"] = exc.retry_after
        if exc.retry_after is not None:
            headers["Retry-After"] = f"{exc.retry_after:g}"
    elif isinstance(exc, TransientPlatformError):
        status = 503
    elif isinstance(exc, AuthError):
        status = 401
    elif isinstance(exc, NotFoundError):
        status = 404
    elif isinstance(exc, LocationInactiveError):
        status = 409
        body["location_id"] = exc.location_id
    elif isinstance(exc, IdempotencyConflictError):
        status = 409
    elif isinstance(exc, UserErrors):
        status = 422
        body["codes"] = list(exc.codes)
    elif isinstance(exc, PermanentPlatformError):
        status = 400
    else:
        status = 500
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def error_from_response(status: int, headers: httpx.Headers, content: bytes) -> PlatformError:
    """The typed error an error response stands for; by its status when its body is unreadable."""
    body: Json = {}
    try:
        body = _obj(_obj(json.loads(content), "response")["error"], "error")
        kind, message = _str(body, "type"), _str(body, "message")
    except (ValueError, KeyError):
        kind, message = "", f"HTTP {status}: {content[:200]!r}"
    try:
        if kind == "ThrottledError" or status == 429:
            retry_after = body.get("retry_after") if kind else headers.get("Retry-After")
            return ThrottledError(message, float(retry_after) if retry_after is not None else None)
        if kind == "LocationInactiveError":
            return LocationInactiveError(message, _str(body, "location_id"))
        if kind == "UserErrors":
            return UserErrors(message, _strs(body, "codes"))
    except (ValueError, TypeError):
        pass  # a malformed detail: fall back on the status below
    by_name: dict[str, type[PlatformError]] = {
        "TransientPlatformError": TransientPlatformError,
        "AuthError": AuthError,
        "NotFoundError": NotFoundError,
        "IdempotencyConflictError": IdempotencyConflictError,
        "IdempotencyKeySpentError": IdempotencyKeySpentError,
        "PermanentPlatformError": PermanentPlatformError,
        "PlatformError": PlatformError,
    }
    if kind in by_name:
        return by_name[kind](message)
    if status >= 500:
        return TransientPlatformError(message)
    if status in (401, 403):
        return AuthError(message)
    if status == 404:
        return NotFoundError(message)
    return PermanentPlatformError(message)


# --- the server ---------------------------------------------------------------------------------


async def _dispatch(store: MemoryStore, method: str, body: Json) -> Json:
    if method == "list_locations":
        return {"locations": [location_to_json(x) for x in await store.list_locations()]}
    if method == "read_levels":
        levels = await store.read_levels(_strs(body, "item_ids"), _strs(body, "location_ids"))
        return {
            "levels": [
                {"item_id": item, "location_id": location, "available": available}
                for (item, location), available in levels.items()
            ]
        }
    if method == "set_levels":
        writes = [write_from_json(_obj(w, "write")) for w in _list(body, "writes")]
        return {"stale": list((await store.set_levels(writes)).stale)}
    if method == "adjust_level":
        await store.adjust_level(
            _str(body, "item_id"),
            _str(body, "location_id"),
            _int(body, "delta"),
            _str(body, "idempotency_key"),
        )
        return {}
    if method == "adjust_levels":
        changes = [
            LevelAdjustment(_str(c, "item_id"), _str(c, "location_id"), _int(c, "delta"))
            for c in (_obj(c, "change") for c in _list(body, "changes"))
        ]
        await store.adjust_levels(changes, _str(body, "idempotency_key"))
        return {}
    if method == "list_products":
        return {"products": [product_to_json(p) for p in await store.list_products()]}
    if method == "get_product":
        product = await store.get_product(_str(body, "product_id"))
        return {"product": product_to_json(product) if product else None}
    if method == "find_variants_by_sku":
        found = await store.find_variants_by_sku(_strs(body, "skus"))
        # a list of pairs, not an object: JSON objects do not promise to keep their order
        return {
            "found": [
                {"sku": sku, "variants": [variant_to_json(v) for v in variants]}
                for sku, variants in found.items()
            ]
        }
    if method == "create_product":
        product = await store.create_product(draft_from_json(_obj(body.get("draft"), "draft")))
        return {"product": product_to_json(product)}
    if method == "get_order":
        order = await store.get_order(_str(body, "order_id"))
        return {"order": order_to_json(order) if order else None}
    if method == "orders_changed_since":
        orders = await store.orders_changed_since(_opt_str(body, "since"))
        return {"orders": [order_to_json(o) for o in orders]}
    raise NotFoundError(f"no method {method!r}")


def memory_world_app(world: MemoryWorld) -> Starlette:
    """An ASGI app serving every store of ``world`` (see the module's notes)."""

    async def call(request: Request) -> Response:
        ref, method = request.path_params["ref"], request.path_params["method"]
        try:
            store = world.stores.get(ref)
            if store is None:
                raise NotFoundError(f"no store {ref!r}")
            if method not in API_METHODS:
                raise NotFoundError(f"no method {method!r}")
            try:
                body = _obj(json.loads(await request.body() or b"{}"), "request")
                result = await _dispatch(store, method, body)
            except (WireError, json.JSONDecodeError) as exc:
                raise UserErrors(f"malformed request: {exc}", ["INVALID_INPUT"]) from exc
        except PlatformError as exc:
            return error_to_response(exc)
        return JSONResponse(result)

    return Starlette(routes=[Route("/stores/{ref:path}/{method}", call, methods=["POST"])])


class _Server(uvicorn.Server):
    """uvicorn's server, telling the thread that started it when it listens (or gave up)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    def run_until_stopped(self, sock: socket.socket) -> None:
        try:
            self.run(sockets=[sock])
        finally:
            self.ready.set()  # a failed start must not leave the caller waiting


@contextmanager
def serve_memory_world(
    world: MemoryWorld,
    *,
    startup_timeout: float = 10.0,
    middleware: Callable[[ASGIApp], ASGIApp] | None = None,
) -> Iterator[str]:
    """Serve ``world`` on 127.0.0.1 on a free port in a background thread; yields the base URL.

    The socket is bound before the server starts, so the port is known and cannot be taken by
    another process in between. ``middleware`` wraps the served app (a fault test uses it to
    watch or hold calls in flight); it runs in the server's thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app: ASGIApp = memory_world_app(world)
    config = uvicorn.Config(
        middleware(app) if middleware is not None else app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http="h11",
        ws="none",
    )
    server = _Server(config)
    thread = threading.Thread(
        target=server.run_until_stopped, args=(sock,), name=f"memory-world:{port}", daemon=True
    )
    thread.start()
    try:
        if not server.ready.wait(startup_timeout) or not server.started:
            raise RuntimeError("the memory world's HTTP server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(startup_timeout)
        sock.close()


# --- the client ---------------------------------------------------------------------------------


class HttpMemoryPlatform:
    """One store of a served :class:`MemoryWorld`, as a :class:`StorePlatform` over HTTP."""

    def __init__(
        self,
        base_url: str,
        store_ref: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store_ref = store_ref
        self._prefix = f"/stores/{quote(store_ref, safe='')}/"
        # trust_env=False: a proxy from the environment must never stand between us and it
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, transport=transport, trust_env=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpMemoryPlatform:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(self, method: str, body: Json | None = None) -> Json:
        try:
            response = await self._client.post(self._prefix + method, json=body or {})
        except httpx.TimeoutException as exc:
            raise TransientPlatformError(f"{self.store_ref}: {method} timed out") from exc
        except httpx.HTTPError as exc:
            raise TransientPlatformError(f"{self.store_ref}: {method} failed: {exc!r}") from exc
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.headers, response.content)
        try:
            return _obj(response.json(), "response")
        except ValueError as exc:  # a truncated body, as a dropped connection leaves
            raise TransientPlatformError(f"{self.store_ref}: unreadable response") from exc

    def _decode(self, read: Callable[[], _T]) -> _T:
        try:
            return read()
        except (WireError, KeyError) as exc:
            raise PlatformError(f"{self.store_ref}: unexpected response: {exc}") from exc

    async def list_locations(self) -> list[PlatformLocation]:
        doc = await self._call("list_locations")
        return self._decode(
            lambda: [location_from_json(_obj(x, "location")) for x in _list(doc, "locations")]
        )

    async def read_levels(self, item_ids: Sequence[str], location_ids: Sequence[str]) -> LevelsRead:
        doc = await self._call(
            "read_levels", {"item_ids": list(item_ids), "location_ids": list(location_ids)}
        )

        def read() -> LevelsRead:
            levels = (_obj(x, "level") for x in _list(doc, "levels"))
            return LevelsRead(
                {
                    (_str(x, "item_id"), _str(x, "location_id")): _opt_int(x, "available")
                    for x in levels
                }
            )

        return self._decode(read)

    async def set_levels(self, writes: Sequence[LevelWrite]) -> SetOutcome:
        doc = await self._call("set_levels", {"writes": [write_to_json(w) for w in writes]})
        return self._decode(lambda: SetOutcome(stale=_strs(doc, "stale")))

    async def adjust_level(
        self, item_id: str, location_id: str, delta: int, idempotency_key: str
    ) -> None:
        await self._call(
            "adjust_level",
            {
                "item_id": item_id,
                "location_id": location_id,
                "delta": delta,
                "idempotency_key": idempotency_key,
            },
        )

    async def adjust_levels(self, changes: Sequence[LevelAdjustment], idempotency_key: str) -> None:
        await self._call(
            "adjust_levels",
            {
                "changes": [
                    {"item_id": c.item_id, "location_id": c.location_id, "delta": c.delta}
                    for c in changes
                ],
                "idempotency_key": idempotency_key,
            },
        )

    async def list_products(self) -> list[Product]:
        doc = await self._call("list_products")
        return self._decode(
            lambda: [product_from_json(_obj(x, "product")) for x in _list(doc, "products")]
        )

    async def get_product(self, product_id: str) -> Product | None:
        doc = await self._call("get_product", {"product_id": product_id})
        product = doc.get("product")
        if product is None:
            return None
        return self._decode(lambda: product_from_json(_obj(product, "product")))

    async def find_variants_by_sku(self, skus: Sequence[str]) -> dict[str, list[Variant]]:
        doc = await self._call("find_variants_by_sku", {"skus": list(skus)})

        def read() -> dict[str, list[Variant]]:
            found = (_obj(x, "match") for x in _list(doc, "found"))
            return {
                _str(x, "sku"): [
                    variant_from_json(_obj(v, "variant")) for v in _list(x, "variants")
                ]
                for x in found
            }

        return self._decode(read)

    async def create_product(self, draft: ProductDraft) -> Product:
        doc = await self._call("create_product", {"draft": draft_to_json(draft)})
        return self._decode(lambda: product_from_json(_obj(doc.get("product"), "product")))

    async def get_order(self, order_id: str) -> OrderSnapshot | None:
        doc = await self._call("get_order", {"order_id": order_id})
        order = doc.get("order")
        if order is None:
            return None
        return self._decode(lambda: order_from_json(_obj(order, "order")))

    async def orders_changed_since(self, since: str | None) -> list[OrderSnapshot]:
        doc = await self._call("orders_changed_since", {"since": since})
        return self._decode(
            lambda: [order_from_json(_obj(x, "order")) for x in _list(doc, "orders")]
        )
