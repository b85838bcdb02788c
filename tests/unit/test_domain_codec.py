"""Inbound events survive the inbox exactly: to JSON text and back (B23: 64-bit ids, unicode)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stocksync.domain.codec import CodecError, decode_event, encode_event
from stocksync.domain.events import (
    InboundEvent,
    LevelChanged,
    OrderEdited,
    OrderSeen,
    ProductChanged,
    ProductDeleted,
    RefundSeen,
)
from stocksync.domain.ports import OrderLine, OrderSnapshot, Refund, RefundLine

DETERMINISTIC = settings(derandomize=True, max_examples=200, deadline=None)

BIG = str(2**63 - 1)  # past 2**53: a float would round it
BIGGER = str(2**53 + 1)


def _through_text(event: InboundEvent) -> InboundEvent:
    return decode_event(json.loads(json.dumps(encode_event(event), ensure_ascii=False)))


def _order() -> OrderSnapshot:
    return OrderSnapshot(
        id=BIG,
        financial_status="paid",
        cancelled=False,
        version="2025-01-01T00:00:00.000001Z",
        lines=(
            OrderLine(id=BIGGER, variant_id=BIG, sku="TÉE-ß-😀", quantity=2),
            OrderLine(id="1", variant_id=None, sku="", quantity=1),
        ),
        refunds=(
            Refund(
                id=BIG,
                lines=(
                    RefundLine(
                        id=BIGGER, line_id=BIGGER, quantity=1, restock=True, location_id=BIG
                    ),
                    RefundLine(id="2", line_id="1", quantity=1, restock=False),
                ),
            ),
        ),
    )


EVENTS: list[InboundEvent] = [
    LevelChanged(item_id=BIG, location_id=BIGGER, available=-3),
    LevelChanged(item_id=BIG, location_id=BIGGER, available=None),
    OrderSeen(_order()),
    OrderEdited(order_id=BIG),
    RefundSeen(order_id=BIG, refund=_order().refunds[0]),
    ProductChanged(product_id="商品-" + BIG),
    ProductDeleted(product_id=BIG),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_round_trip_is_exact(event: InboundEvent) -> None:
    assert _through_text(event) == event


def test_big_ids_stay_text_in_json() -> None:
    data = encode_event(OrderSeen(_order()))
    text = json.dumps(data)
    assert f'"{BIG}"' in text
    assert f'"{BIGGER}"' in text
    decoded = decode_event(json.loads(text))
    assert isinstance(decoded, OrderSeen)
    assert decoded.order.lines[0].id == BIGGER
    assert decoded.order.refunds[0].lines[0].location_id == BIG


def test_encoded_form_names_the_event_type() -> None:
    assert encode_event(OrderEdited(order_id="7")) == {
        "type": "OrderEdited",
        "data": {"order_id": "7"},
    }


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"type": "Nonsense", "data": {}},
        {"type": "OrderEdited"},
        {"type": "OrderEdited", "data": {}},
        {"type": "OrderEdited", "data": {"order_id": 7}},  # an id parsed as a number
        {"type": "OrderEdited", "data": None},
        {"type": "LevelChanged", "data": {"item_id": "1", "location_id": "2", "available": "3"}},
        {"type": "OrderSeen", "data": {"order": "not an order"}},
        {"type": "RefundSeen", "data": {"order_id": "1", "refund": {"id": "9", "lines": 5}}},
        {"type": "RefundSeen", "data": [1, 2]},
    ],
)
def test_unreadable_events_raise_codec_error(data: Any) -> None:
    with pytest.raises(CodecError, match="unreadable event"):
        decode_event(data)


def test_a_non_mapping_raises_codec_error() -> None:
    with pytest.raises(CodecError):
        decode_event(None)  # type: ignore[arg-type]


IDS = st.one_of(
    st.integers(min_value=0, max_value=2**64).map(str),
    st.text(min_size=1, max_size=20),
)
TEXT = st.text(max_size=30)  # any unicode, surrogates excluded by JSON text anyway


def _lines() -> st.SearchStrategy[tuple[OrderLine, ...]]:
    return st.lists(
        st.builds(
            OrderLine,
            id=IDS,
            variant_id=st.none() | IDS,
            sku=TEXT,
            quantity=st.integers(min_value=-(2**40), max_value=2**40),
        ),
        max_size=4,
    ).map(tuple)


def _refunds() -> st.SearchStrategy[Refund]:
    return st.builds(
        Refund,
        id=IDS,
        lines=st.lists(
            st.builds(
                RefundLine,
                id=IDS,
                line_id=IDS,
                quantity=st.integers(min_value=0, max_value=10**6),
                restock=st.booleans(),
                location_id=st.none() | IDS,
            ),
            max_size=3,
        ).map(tuple),
    )


ORDERS = st.builds(
    OrderSnapshot,
    id=IDS,
    financial_status=TEXT,
    cancelled=st.booleans(),
    version=TEXT,
    lines=_lines(),
    refunds=st.lists(_refunds(), max_size=2).map(tuple),
)

ANY_EVENT: st.SearchStrategy[InboundEvent] = st.one_of(
    st.builds(LevelChanged, item_id=IDS, location_id=IDS, available=st.none() | st.integers()),
    st.builds(OrderSeen, order=ORDERS),
    st.builds(OrderEdited, order_id=IDS),
    st.builds(RefundSeen, order_id=IDS, refund=_refunds()),
    st.builds(ProductChanged, product_id=IDS),
    st.builds(ProductDeleted, product_id=IDS),
)


@DETERMINISTIC
@given(event=ANY_EVENT)
def test_every_event_round_trips_through_json_text(event: InboundEvent) -> None:
    assert _through_text(event) == event
