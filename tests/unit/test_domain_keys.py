"""Unique keys (B2): random, URL-safe, searchable only by hash, rate-limited when wrong."""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime, timedelta

from stocksync.domain.keys import (
    KEY_BYTES,
    KEY_PREFIX,
    KeyAttemptPolicy,
    key_hash,
    looks_like_key,
    new_key,
)

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_key_has_at_least_128_bits_of_randomness_and_is_url_safe() -> None:
    assert KEY_BYTES * 8 >= 128
    key = new_key()
    assert key.startswith(KEY_PREFIX)
    body = key.removeprefix(KEY_PREFIX)
    assert URL_SAFE.match(body)
    # base64 carries 6 bits a character
    assert len(body) * 6 >= 128
    assert len(body) == math.ceil(KEY_BYTES * 8 / 6)
    assert looks_like_key(key)


def test_keys_do_not_repeat() -> None:
    keys = {new_key() for _ in range(2000)}
    assert len(keys) == 2000


def test_key_characters_are_spread_over_the_alphabet() -> None:
    # a crude check that the body is random text, not a counter or a timestamp
    chars = "".join(new_key().removeprefix(KEY_PREFIX) for _ in range(500))
    assert len(set(chars)) == 64


def test_key_hash_is_sha256_of_the_trimmed_key() -> None:
    key = new_key()
    assert key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    assert key_hash(f"  {key}\n") == key_hash(key)
    assert key_hash(key) != key_hash(new_key())
    assert len(key_hash(key)) == 64


def test_looks_like_key() -> None:
    assert looks_like_key(f" {new_key()} ")
    assert not looks_like_key("")
    assert not looks_like_key("ssk_short")
    assert not looks_like_key("abc_" + "x" * 40)
    assert not looks_like_key(KEY_PREFIX + "x" * 400)


def test_attempts_are_allowed_below_the_limit() -> None:
    policy = KeyAttemptPolicy()
    failures = [NOW - timedelta(minutes=m) for m in range(4)]
    assert policy.retry_after(failures, NOW) is None
    assert policy.retry_after([], NOW) is None


def test_fifth_recent_failure_blocks_until_the_oldest_of_them_leaves_the_window() -> None:
    policy = KeyAttemptPolicy(max_failures=5, window=timedelta(minutes=15))
    failures = [NOW - timedelta(minutes=m) for m in (1, 2, 3, 4, 10)]
    assert policy.retry_after(failures, NOW) == timedelta(minutes=5)
    # five minutes later the failure of ten minutes ago has left the window
    later = NOW + timedelta(minutes=5)
    assert policy.retry_after(failures, later) is None


def test_failures_outside_the_window_do_not_count() -> None:
    policy = KeyAttemptPolicy(max_failures=5, window=timedelta(minutes=15))
    old = [NOW - timedelta(minutes=15), NOW - timedelta(hours=2)] * 3
    recent = [NOW - timedelta(seconds=s) for s in (1, 2, 3, 4)]
    assert policy.retry_after(old + recent, NOW) is None
    assert policy.retry_after([*old, *recent, NOW], NOW) == timedelta(minutes=15) - timedelta(
        seconds=4
    )


def test_wait_is_counted_from_the_last_failure_that_reached_the_limit() -> None:
    policy = KeyAttemptPolicy(max_failures=3, window=timedelta(minutes=10))
    failures = [NOW - timedelta(minutes=m) for m in (9, 8, 1, 2, 3)]  # in any order
    assert policy.retry_after(failures, NOW) == timedelta(minutes=7)
