"""The scaled clock, and idempotent refunds (2026-01)."""

from __future__ import annotations

import asyncio
import time

import pytest

from stocksync.sandbox import ManualClock, ScaledClock
from tests.sandbox.conftest import Admin, eventually
from tests.sandbox.helpers import create_order, location_ids, make_product, triple

REFUND = """
mutation($input: RefundInput!, $key: String!) {
  refundCreate(input: $input) @idempotent(key: $key) {
    refund { id }
    userErrors { field message }
  }
}"""


async def test_scaled_clock_runs_faster_than_real_time() -> None:
    clock = ScaledClock(time_scale=1000.0, start=0.0)
    started = time.monotonic()
    await clock.sleep(20)  # 20 virtual seconds: 20 ms of real time
    assert time.monotonic() - started < 1.0
    assert clock.monotonic() >= 20
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(time_scale=0)


async def test_manual_clock_wakes_sleepers_in_order() -> None:
    clock = ManualClock()
    woke: list[int] = []

    async def sleeper(n: int, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(n)

    tasks = [asyncio.create_task(sleeper(1, 5)), asyncio.create_task(sleeper(2, 1))]
    await eventually(lambda: clock.pending_sleepers() == 2)
    clock.advance(1)
    await tasks[1]
    assert woke == [2]
    clock.advance(4)
    await tasks[0]
    assert woke == [2, 1]
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


async def test_refund_with_the_same_key_is_applied_once(admin: Admin) -> None:
    loc = (await location_ids(admin))[0]
    variant = (await make_product(admin, "Pot", ["POT-1"], {loc: 10}))[0]
    order = await create_order(admin, variant["id"], 3)
    line = order["lineItems"]["nodes"][0]["id"]
    refund_input = {
        "orderId": order["id"],
        "refundLineItems": [{"lineItemId": line, "quantity": 1, "restockType": "CANCEL"}],
    }
    first = await admin.data(REFUND, {"input": refund_input, "key": "r-1"}, version="2026-01")
    again = await admin.data(REFUND, {"input": refund_input, "key": "r-1"}, version="2026-01")
    assert first == again
    assert await triple(admin, variant["inventoryItem"]["id"], loc) == (8, 2, 10)
    other = {**refund_input, "note": "different"}
    mismatch = await admin.data(REFUND, {"input": other, "key": "r-1"}, version="2026-01")
    assert mismatch["refundCreate"] == {
        "refund": None,
        "userErrors": [
            {
                "field": None,
                "message": "The same idempotency key cannot be used with different "
                "operation parameters.",
            }
        ],
    }
