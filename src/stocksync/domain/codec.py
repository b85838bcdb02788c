"""Inbound events to and from JSON, so that the inbox keeps the normalised event beside the raw
payload and a job (which carries only the inbox row's id) can read it back exactly."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from stocksync.domain import events, ports

_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        events.LevelChanged,
        events.OrderSeen,
        events.OrderEdited,
        events.RefundSeen,
        events.ProductChanged,
        events.ProductDeleted,
        events.LocationsChanged,
        events.AppUninstalled,
        events.PrivacyRequest,
    )
}


class CodecError(ValueError):
    """The stored event cannot be read back."""


def encode_event(event: events.InboundEvent) -> dict[str, Any]:
    return {"type": type(event).__name__, "data": _encode(event)}


def decode_event(data: dict[str, Any]) -> events.InboundEvent:
    try:
        cls = _EVENT_TYPES[data["type"]]
        result: events.InboundEvent = _decode(cls, data["data"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"unreadable event: {exc}") from None
    return result


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _decode(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _decode(args[0], value)
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_decode(inner, v) for v in value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _HINTS.get(tp)
        if hints is None:
            hints = _HINTS[tp] = typing.get_type_hints(tp, vars(ports) | vars(events))
        kwargs = {
            f.name: _decode(hints[f.name], value[f.name])
            for f in dataclasses.fields(tp)
            if f.name in value
        }
        return tp(**kwargs)
    if tp is int and not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    if tp is str and not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value
