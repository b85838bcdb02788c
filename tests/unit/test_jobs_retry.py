"""Backoff, the give-up rule, and procrastinate's view of them: no database needed."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from procrastinate.jobs import Job

from stocksync.jobs.pg import BackoffRetryStrategy
from stocksync.jobs.queue import PermanentJobError
from stocksync.jobs.retry import ExponentialBackoff, describe_error, is_final

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    backoff = ExponentialBackoff(base=0.5, cap=5.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    # Far past any realistic attempt count the exponent stays bounded.
    assert backoff.ceiling(10_000) == 5.0


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    backoff = ExponentialBackoff(base=1.0, cap=30.0, rng=random.Random(3))
    for attempt in range(1, 12):
        for _ in range(50):
            assert 0.0 <= backoff.delay(attempt) <= backoff.ceiling(attempt)


def test_a_seeded_backoff_repeats_its_delays() -> None:
    first = ExponentialBackoff(base=1.0, cap=60.0, rng=random.Random(42))
    second = ExponentialBackoff(base=1.0, cap=60.0, rng=random.Random(42))
    assert [first.delay(n) for n in range(1, 6)] == [second.delay(n) for n in range(1, 6)]
    reference = random.Random(42)
    expected = [reference.uniform(0.0, min(60.0, 2.0 ** (n - 1))) for n in range(1, 6)]
    again = ExponentialBackoff(base=1.0, cap=60.0, rng=random.Random(42))
    assert [again.delay(n) for n in range(1, 6)] == expected


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        ExponentialBackoff(base=-1.0)


def test_give_up_after_the_last_attempt_or_on_a_permanent_error() -> None:
    assert not is_final(ValueError("x"), attempt=1, max_attempts=3)
    assert not is_final(ValueError("x"), attempt=2, max_attempts=3)
    assert is_final(ValueError("x"), attempt=3, max_attempts=3)
    assert is_final(PermanentJobError("gone"), attempt=1, max_attempts=3)


def test_errors_are_described_on_one_line() -> None:
    assert describe_error(ValueError("bad  sku ")) == "ValueError: bad  sku"
    assert describe_error(TimeoutError()) == "TimeoutError"


def job(attempts: int) -> Job:
    """A procrastinate job as its worker sees it: ``attempts`` runs already ended."""
    return Job(
        id=1,
        queue="default",
        lock=None,
        queueing_lock=None,
        task_name="flush",
        attempts=attempts,
    )


def strategy(max_attempts: int = 3) -> BackoffRetryStrategy:
    backoff = ExponentialBackoff(base=2.0, cap=60.0, rng=random.Random(5))
    return BackoffRetryStrategy(max_attempts, backoff, clock=lambda: NOW)


def test_procrastinate_retries_with_our_backoff_until_the_last_attempt() -> None:
    retry = strategy(max_attempts=3)
    reference = ExponentialBackoff(base=2.0, cap=60.0, rng=random.Random(5))
    first = retry.get_retry_decision(exception=ValueError("502"), job=job(attempts=0))
    second = retry.get_retry_decision(exception=ValueError("502"), job=job(attempts=1))
    assert first is not None
    assert second is not None
    assert first.retry_at == NOW + timedelta(seconds=reference.delay(1))
    assert second.retry_at == NOW + timedelta(seconds=reference.delay(2))
    # The third run is the last of three: no retry, the job fails.
    assert retry.get_retry_decision(exception=ValueError("502"), job=job(attempts=2)) is None


def test_procrastinate_does_not_retry_a_permanent_error() -> None:
    decision = strategy().get_retry_decision(exception=PermanentJobError("gone"), job=job(0))
    assert decision is None


def test_procrastinate_hands_back_a_job_interrupted_by_shutdown_at_once() -> None:
    decision = strategy().get_retry_decision(exception=asyncio.CancelledError(), job=job(2))
    assert decision is not None
    assert decision.retry_at == NOW
