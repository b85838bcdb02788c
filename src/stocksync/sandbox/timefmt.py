"""Timestamps in the two formats Shopify uses: GraphQL `DateTime` and REST webhook bodies."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_z(ts: float) -> str:
    """GraphQL DateTime: `2025-01-01T12:00:00Z`."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_offset(ts: float) -> str:
    """REST/webhook timestamps carry an offset: `2025-01-01T12:00:00+00:00`."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_time(value: str) -> float | None:
    text = value.strip().strip("'\"")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
