"""Transport to one store's Admin GraphQL API: auth, versioned URL, throttling, retries, errors.

Shopify relies on:

* endpoint ``{https://shop.myshopify.com}/admin/api/{version}/graphql.json``, token in the
  ``X-Shopify-Access-Token`` header; 401/403 when the token is refused (or a scope is
  missing), 404 for an unknown shop or version path;
* GraphQL problems come back as HTTP 200 with ``errors`` whose ``extensions.code`` says
  what happened: ``THROTTLED`` (bucket empty: wait and retry), ``MAX_COST_EXCEEDED`` (the
  query asks for too much at once: ask for less), ``INTERNAL_SERVER_ERROR`` (transient),
  anything else (permanent for this document and input);
* every answer carries ``extensions.cost`` (``requestedQueryCost``, ``actualQueryCost``,
  ``throttleStatus``), which feeds the per-store :class:`~.throttle.CostBucket`;
* HTTP 429 with ``Retry-After`` may also signal throttling; 5xx and network failures are
  transient.

A request is re-sent after a transient failure only when a second delivery cannot apply
twice: queries, mutations carrying an ``@idempotent`` key, compare-and-swap writes, and any
request whose connection was refused before it was sent.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from stocksync.domain.ports import (
    AuthError,
    NotFoundError,
    PermanentPlatformError,
    ThrottledError,
    TransientPlatformError,
)
from stocksync.logs import elapsed_ms, get_logger
from stocksync.platforms.shopify.throttle import Clock, CostBucket, Sleep
from stocksync.platforms.shopify.versions import DEFAULT_VERSION, version_key

log = get_logger("stocksync.platforms.shopify")

DEFAULT_COST_ESTIMATE = 50.0  # before Shopify told us the cost of a document
MUTATION_COST_ESTIMATE = 10.0  # Shopify's documented cost of a mutation field


class QueryCostExceededError(PermanentPlatformError):
    """``MAX_COST_EXCEEDED``: the same document must be sent with smaller pages or batches."""

    def __init__(self, message: str, cost: int | None, max_cost: int | None) -> None:
        super().__init__(message)
        self.cost = cost
        self.max_cost = max_cost


class GraphQLErrors(PermanentPlatformError):
    """Errors at the top level of a GraphQL answer, other than throttling."""

    def __init__(self, message: str, codes: tuple[str, ...]) -> None:
        super().__init__(message)
        self.codes = codes


@dataclass
class RetryPolicy:
    """Bounded retries: exponential backoff with full jitter for transient failures, and the
    bucket's own estimate (or Retry-After) for throttling."""

    transient_attempts: int = 4  # retries after the first attempt
    throttled_attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_throttle_wait: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass
class Answer:
    data: dict[str, Any]
    extensions: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Call:
    """What one ``execute`` saw, for its log line."""

    requests: int = 0
    throttled: int = 0
    cost: dict[str, Any] | None = None


_OPERATION = re.compile(r"^\s*(query|mutation)\b", re.MULTILINE)


def _operation_kind(document: str) -> str:
    match = _OPERATION.search(document)
    return match.group(1) if match else "query"


class ShopifyClient:
    """One store's GraphQL transport. Keep one instance per store: its bucket is the store's."""

    def __init__(
        self,
        shop_domain: str,
        access_token: str,
        *,
        api_version: str = DEFAULT_VERSION,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        version_key(api_version)  # refuse a malformed version at once, not at the first call
        self.shop_domain = shop_domain
        self.api_version = api_version
        base = (base_url or f"https://{shop_domain}").rstrip("/")
        self.base_url = base
        self.endpoint = f"{base}/admin/api/{api_version}/graphql.json"
        self._token = access_token
        self._own_http = http_client is None
        self.http = http_client or httpx.AsyncClient(timeout=timeout, trust_env=False)
        self.retry = retry or RetryPolicy()
        self.sleep: Sleep = sleep or asyncio.sleep
        self.clock: Clock = clock or time.monotonic
        # jitter only spreads retries; it needs no secrecy
        self.rng = rng or random.Random()  # noqa: S311
        self.bucket = CostBucket(self.clock, self.sleep)
        self._cost_estimates: dict[str, float] = {}
        self.requests_sent = 0
        self.throttled_answers = 0

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    # ------------------------------------------------------------------ the one entry point
    async def execute(
        self,
        name: str,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        retry_safe: bool = True,
    ) -> Answer:
        """Send ``document`` (named ``name``, for cost bookkeeping) and return its data.

        ``retry_safe`` says whether a second delivery of this exact request is harmless.

        Each call logs one ``platform_call`` line: the operation, the shop, its duration
        (throttle waits and retries included), the requests sent, Shopify's query cost and
        throttle status of the last answer, and the error's class when it failed."""
        call = _Call()
        start = time.perf_counter()
        try:
            answer = await self._execute(name, document, variables, retry_safe, call)
        except Exception as exc:
            self._log_call(name, start, call, exc)
            raise
        self._log_call(name, start, call, None)
        return answer

    def _log_call(self, name: str, start: float, call: _Call, error: Exception | None) -> None:
        fields: dict[str, Any] = {
            "platform": "shopify",
            "shop": self.shop_domain,
            "operation": name,
            "outcome": "ok" if error is None else "error",
            "duration_ms": elapsed_ms(start, time.perf_counter()),
            "requests": call.requests,
        }
        if call.throttled:
            fields["throttled"] = call.throttled
        cost = call.cost
        if cost is not None:
            fields["cost_requested"] = cost.get("requestedQueryCost")
            fields["cost_actual"] = cost.get("actualQueryCost")
            status = cost.get("throttleStatus")
            if isinstance(status, dict):
                fields["cost_available"] = status.get("currentlyAvailable")
                fields["cost_maximum"] = status.get("maximumAvailable")
                fields["cost_restore_rate"] = status.get("restoreRate")
        if error is None:
            log.info("platform_call", **fields)
        else:
            log.warning("platform_call", error=type(error).__name__, reason=str(error), **fields)

    async def _execute(  # noqa: C901, PLR0912, PLR0915  one request's retries: each answer decided in one place
        self,
        name: str,
        document: str,
        variables: Mapping[str, Any] | None,
        retry_safe: bool,
        call: _Call,
    ) -> Answer:
        is_mutation = _operation_kind(document) == "mutation"
        default = MUTATION_COST_ESTIMATE if is_mutation else DEFAULT_COST_ESTIMATE
        transient_failures = 0
        throttled = 0
        while True:
            estimate = self._cost_estimates.get(name, default)
            await self.bucket.acquire(estimate)
            call.requests += 1
            try:
                response = await self._post(document, variables)
            except httpx.ConnectError as exc:
                # refused before anything was sent: always safe to send again
                transient_failures += 1
                await self._transient_pause(transient_failures, f"connection failed: {exc}")
                continue
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                transient_failures += 1
                if not retry_safe:
                    raise TransientPlatformError(
                        f"{self.shop_domain}: {name} failed in transit ({exc!r}); "
                        "not re-sent because a second delivery could apply twice"
                    ) from exc
                await self._transient_pause(transient_failures, f"{name} failed: {exc!r}")
                continue
            status = response.status_code
            if status in (401, 403):
                raise AuthError(
                    f"{self.shop_domain}: access refused (HTTP {status}): {_snippet(response)}"
                )
            if status == 404:
                raise NotFoundError(f"{self.shop_domain}: {self.endpoint} not found (HTTP 404)")
            if status == 429:
                throttled += 1
                call.throttled += 1
                self.throttled_answers += 1
                wait = _retry_after(response) or self.bucket.wait_for_throttled(estimate)
                if throttled > self.retry.throttled_attempts:
                    raise ThrottledError(f"{self.shop_domain}: throttled (HTTP 429)", wait)
                await self.sleep(min(wait, self.retry.max_throttle_wait))
                continue
            if status >= 500:
                transient_failures += 1
                if not retry_safe:
                    raise TransientPlatformError(
                        f"{self.shop_domain}: {name} answered HTTP {status}; not re-sent "
                        "because a second delivery could apply twice"
                    )
                await self._transient_pause(transient_failures, f"{name}: HTTP {status}")
                continue
            if status != 200:
                raise PermanentPlatformError(
                    f"{self.shop_domain}: {name} answered HTTP {status}: {_snippet(response)}"
                )
            try:
                body = response.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                transient_failures += 1
                await self._transient_pause(transient_failures, f"{name}: unreadable answer")
                continue
            if not isinstance(body, dict):
                raise PermanentPlatformError(f"{self.shop_domain}: {name}: answer is not an object")
            extensions = body.get("extensions") or {}
            cost = extensions.get("cost") if isinstance(extensions, dict) else None
            if isinstance(cost, dict):
                call.cost = cost
                requested = cost.get("requestedQueryCost")
                if isinstance(requested, int | float) and not isinstance(requested, bool):
                    self._cost_estimates[name] = float(requested)
                status_block = cost.get("throttleStatus")
                if isinstance(status_block, dict):
                    self.bucket.update(status_block)
            errors = body.get("errors")
            if errors:
                codes = _error_codes(errors)
                if "THROTTLED" in codes:
                    throttled += 1
                    call.throttled += 1
                    self.throttled_answers += 1
                    wait = self.bucket.wait_for_throttled(self._cost_estimates.get(name, estimate))
                    if throttled > self.retry.throttled_attempts:
                        raise ThrottledError(f"{self.shop_domain}: {name} throttled", wait)
                    await self.sleep(min(wait, self.retry.max_throttle_wait))
                    continue
                if "MAX_COST_EXCEEDED" in codes:
                    detail = _first_with_code(errors, "MAX_COST_EXCEEDED")
                    raise QueryCostExceededError(
                        f"{self.shop_domain}: {name}: {_message(errors)}",
                        _int_or_none(detail.get("cost")),
                        _int_or_none(detail.get("maxCost")),
                    )
                if "INTERNAL_SERVER_ERROR" in codes and retry_safe:
                    transient_failures += 1
                    await self._transient_pause(transient_failures, f"{name}: {_message(errors)}")
                    continue
                if "ACCESS_DENIED" in codes:
                    raise PermanentPlatformError(
                        f"{self.shop_domain}: {name}: access denied (missing scope?): "
                        f"{_message(errors)}"
                    )
                raise GraphQLErrors(f"{self.shop_domain}: {name}: {_message(errors)}", codes)
            data = body.get("data")
            if not isinstance(data, dict):
                raise PermanentPlatformError(f"{self.shop_domain}: {name}: answer has no data")
            return Answer(data, extensions if isinstance(extensions, dict) else {})

    async def _post(self, document: str, variables: Mapping[str, Any] | None) -> httpx.Response:
        self.requests_sent += 1
        return await self.http.post(
            self.endpoint,
            json={"query": document, "variables": dict(variables or {})},
            headers={
                "X-Shopify-Access-Token": self._token,
                "Accept": "application/json",
            },
        )

    async def _transient_pause(self, failures: int, what: str) -> None:
        if failures > self.retry.transient_attempts:
            raise TransientPlatformError(
                f"{self.shop_domain}: {what} (gave up after {failures} attempts)"
            )
        await self.sleep(self.retry.backoff(failures - 1, self.rng))

    async def stream_lines(self, url: str) -> AsyncIterator[str]:
        """An async iterator over the lines of a (large) document at ``url``, e.g. a bulk
        result; it is read as it arrives, never held whole in memory."""
        async with self.http.stream("GET", url) as response:
            if response.status_code in (401, 403):
                raise AuthError(f"{self.shop_domain}: access refused fetching {url}")
            if response.status_code == 404:
                raise NotFoundError(f"{self.shop_domain}: {url} not found")
            if response.status_code != 200:
                raise TransientPlatformError(
                    f"{self.shop_domain}: fetching {url} answered HTTP {response.status_code}"
                )
            async for line in response.aiter_lines():
                yield line


def _snippet(response: httpx.Response) -> str:
    return response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _error_codes(errors: Any) -> tuple[str, ...]:
    codes: list[str] = []
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict):
                ext = error.get("extensions")
                if isinstance(ext, dict) and isinstance(ext.get("code"), str):
                    codes.append(ext["code"])
    return tuple(codes)


def _first_with_code(errors: Any, code: str) -> dict[str, Any]:
    for error in errors if isinstance(errors, list) else []:
        ext = error.get("extensions") if isinstance(error, dict) else None
        if isinstance(ext, dict) and ext.get("code") == code:
            return ext
    return {}


def _message(errors: Any) -> str:
    if isinstance(errors, list):
        messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
        return "; ".join(messages)[:500]
    return str(errors)[:500]


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
