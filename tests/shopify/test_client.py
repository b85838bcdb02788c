"""Transport behaviour: throttling, retries, typed errors, cost-driven page sizes."""

from __future__ import annotations

import json
import random
import socket
from typing import Any

import httpx
import pytest

from stocksync.domain.ports import (
    AuthError,
    NotFoundError,
    ThrottledError,
    TransientPlatformError,
)
from stocksync.platforms.shopify import ShopifyPlatform
from stocksync.platforms.shopify.client import RetryPolicy, ShopifyClient
from stocksync.platforms.shopify.throttle import CostBucket
from tests.log_capture import capture_logs
from tests.shopify.conftest import Env, VirtualTime, make_platform
from tests.shopify.helpers import product


async def _catalog(env: Env, products: int, variants: int) -> None:
    for p in range(products):
        await product(env, f"P{p}", [f"S{p}-{v}" for v in range(variants)])


async def test_client_waits_for_the_bucket_instead_of_being_throttled(env: Env) -> None:
    await _catalog(env, 10, 10)  # a listing page then costs nearly its requested 762 points
    env.time.clock.advance(30)  # the merchant's setup calls are forgotten: a full bucket
    platform = env.platform()
    for _ in range(6):
        products = await platform.list_products()
        assert len(products) == 10
    stats = env.sandbox.stats_of(env.shop)
    assert stats.throttled == 0
    assert platform.client.throttled_answers == 0
    assert sum(env.time.slept) > 0  # it did wait, on the bucket's reckoning


async def test_throttled_answer_is_waited_out_and_retried(env: Env) -> None:
    platform = env.platform()
    env.sandbox.set_faults("north", throttle={"next": 2})
    locations = await platform.list_locations()
    assert len(locations) == 3
    assert env.sandbox.stats_of(env.shop).throttled == 2
    assert platform.client.throttled_answers == 2


async def test_throttled_too_often_raises_throttled_error(env: Env) -> None:
    platform = env.platform(retry=RetryPolicy(throttled_attempts=2))
    env.sandbox.set_faults("north", throttle={"next": 5})
    with pytest.raises(ThrottledError) as raised:
        await platform.list_locations()
    assert raised.value.retry_after is not None
    assert env.sandbox.stats_of(env.shop).throttled == 3


async def test_server_errors_are_retried_with_backoff(env: Env) -> None:
    platform = env.platform()
    env.sandbox.set_faults("north", error_5xx={"next": 3})
    assert len(await platform.list_locations()) == 3
    assert env.sandbox.stats_of(env.shop).errors_5xx == 3
    backoffs = [s for s in env.time.slept if s > 0]
    assert len(backoffs) == 3
    assert backoffs[0] < backoffs[2]  # exponential (with jitter inside each step)


async def test_server_errors_give_up_after_a_bounded_number(env: Env) -> None:
    platform = env.platform(retry=RetryPolicy(transient_attempts=2))
    env.sandbox.set_faults("north", error_5xx={"next": 10})
    with pytest.raises(TransientPlatformError):
        await platform.list_locations()
    assert env.sandbox.stats_of(env.shop).errors_5xx == 3


async def test_a_create_is_not_re_sent_after_a_server_error(env: Env) -> None:
    from tests.shopify.test_adapter import DRAFT

    platform = env.platform()
    env.sandbox.set_faults("north", error_5xx={"next": 1})
    with pytest.raises(TransientPlatformError):
        await platform.create_product(DRAFT)
    assert env.sandbox.stats_of(env.shop).errors_5xx == 1
    assert await platform.list_products() == []


async def test_unreachable_shop_is_transient(env: Env) -> None:
    platform = env.platform(retry=RetryPolicy(transient_attempts=1))
    env.sandbox.set_faults("north", unreachable=True)
    with pytest.raises(TransientPlatformError):
        await platform.list_locations()


async def test_refused_token_is_an_auth_error(env: Env) -> None:
    platform = ShopifyPlatform(
        env.shop.domain,
        "shpat_wrong",
        base_url=env.sandbox.shop_base_url(env.shop),
        http_client=env.http,
        sleep=env.time.sleep,
    )
    with pytest.raises(AuthError):
        await platform.list_locations()


async def test_unknown_shop_is_not_found(env: Env) -> None:
    platform = ShopifyPlatform(
        "nowhere.myshopify.com",
        "shpat_x",
        base_url=f"{env.running.url}/shops/nowhere.myshopify.com",
        http_client=env.http,
        sleep=env.time.sleep,
    )
    with pytest.raises(NotFoundError):
        await platform.list_locations()


async def test_refused_connection_is_retried_then_transient(env: Env) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    platform = ShopifyPlatform(
        "gone.myshopify.com",
        "shpat_x",
        base_url=f"http://127.0.0.1:{port}",
        http_client=env.http,
        sleep=env.time.sleep,
        rng=random.Random(1),
        retry=RetryPolicy(transient_attempts=2),
    )
    with pytest.raises(TransientPlatformError, match="gave up after 3 attempts"):
        await platform.list_locations()


async def test_max_cost_exceeded_shrinks_the_page(env: Env) -> None:
    await _catalog(env, 3, 1)
    platform = env.platform()
    platform.products_page = 100  # 100 products x their variants: far over 1,000 points
    assert [p.title for p in await platform.list_products()] == ["P0", "P1", "P2"]
    assert platform.products_page == 12
    assert env.sandbox.stats_of(env.shop).max_cost_exceeded == 3


async def test_one_stores_bucket_never_delays_another(env: Env) -> None:
    other_shop = env.sandbox.create_shop("south", access_token="shpat_south")
    slow = env.platform()
    fast = make_platform(env, other_shop, "2026-10")
    slow.client.bucket.update(
        {"maximumAvailable": 1000, "currentlyAvailable": 0, "restoreRate": 50}
    )
    assert slow.client.bucket.delay_for(50) == pytest.approx(1.0)
    before = len(env.time.slept)
    await fast.list_locations()
    assert [s for s in env.time.slept[before:] if s > 0] == []


def _mock(handler: Any, time: VirtualTime) -> ShopifyClient:
    return ShopifyClient(
        "mock.myshopify.com",
        "token",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        sleep=time.sleep,
        clock=time.monotonic,
        rng=random.Random(3),
    )


async def test_429_with_retry_after_is_honoured(env: Env) -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "2.5"}, text="Too Many Requests"),
        httpx.Response(200, json={"data": {"shop": {"name": "m"}}}),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    client = _mock(handler, env.time)
    answer = await client.execute("shop", "query Shop { shop { name } }")
    assert answer.data == {"shop": {"name": "m"}}
    assert env.time.slept == [2.5]
    assert str(seen[0].url) == "https://mock.myshopify.com/admin/api/2026-10/graphql.json"
    assert seen[0].headers["X-Shopify-Access-Token"] == "token"
    assert json.loads(seen[0].content) == {"query": "query Shop { shop { name } }", "variables": {}}


async def test_graphql_errors_other_than_throttling_are_permanent(env: Env) -> None:
    from stocksync.platforms.shopify.client import GraphQLErrors

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "errors": [
                    {
                        "message": "Field 'nope' doesn't exist on type 'Shop'",
                        "extensions": {"code": "undefinedField"},
                    }
                ]
            },
        )

    with pytest.raises(GraphQLErrors) as raised:
        await _mock(handler, env.time).execute("shop", "query Shop { shop { nope } }")
    assert raised.value.codes == ("undefinedField",)


async def test_403_is_an_auth_error(env: Env) -> None:
    client = _mock(lambda request: httpx.Response(403, text="Forbidden"), env.time)
    with pytest.raises(AuthError):
        await client.execute("shop", "query Shop { shop { name } }")


def test_bucket_waits_for_the_points_it_needs(env: Env) -> None:
    bucket = CostBucket(env.time.monotonic, env.time.sleep)
    assert bucket.delay_for(500) == 0.0  # nothing known yet: no reason to wait
    bucket.update({"maximumAvailable": 1000.0, "currentlyAvailable": 100, "restoreRate": 50.0})
    assert bucket.delay_for(600) == pytest.approx(10.0)
    env.time.clock.advance(4)
    assert bucket.delay_for(600) == pytest.approx(6.0)
    assert bucket.delay_for(5000) == pytest.approx((1000 - 300) / 50)  # capped at a full bucket
    bucket.update({"maximumAvailable": "x"})  # malformed: ignored
    assert bucket.maximum == 1000.0


async def test_each_call_logs_its_operation_duration_and_cost(env: Env) -> None:
    platform = env.platform()
    env.sandbox.set_faults("north", throttle={"next": 1})
    with capture_logs("INFO") as captured:
        await platform.list_locations()
    [line] = captured.events("platform_call")
    assert (line["level"], line["platform"], line["shop"]) == ("info", "shopify", env.shop.domain)
    assert (line["operation"], line["outcome"]) == ("locations", "ok")
    # One throttled answer, waited out, then the answer: two requests in one call.
    assert (line["requests"], line["throttled"]) == (2, 1)
    assert isinstance(line["duration_ms"], float)
    answer = env.recorded[-1].body["extensions"]["cost"]
    assert line["cost_requested"] == answer["requestedQueryCost"]
    assert line["cost_actual"] == answer["actualQueryCost"]
    status = answer["throttleStatus"]
    assert line["cost_available"] == status["currentlyAvailable"]
    assert line["cost_maximum"] == status["maximumAvailable"]
    assert line["cost_restore_rate"] == status["restoreRate"]
    assert line["cost_actual"] > 0
    assert env.shop.access_token not in captured.text


async def test_a_failed_call_logs_its_error_class_and_no_token(env: Env) -> None:
    token = "shpat_0123456789abcdef0123456789abcdef"
    platform = ShopifyPlatform(
        env.shop.domain,
        token,
        base_url=env.sandbox.shop_base_url(env.shop),
        http_client=env.http,
        sleep=env.time.sleep,
    )
    with capture_logs("DEBUG") as captured, pytest.raises(AuthError):
        await platform.list_locations()
    [line] = captured.events("platform_call")
    assert (line["level"], line["outcome"], line["error"]) == ("warning", "error", "AuthError")
    assert (line["operation"], line["requests"]) == ("locations", 1)
    assert "access refused (HTTP 401)" in line["reason"]
    assert token not in captured.text
