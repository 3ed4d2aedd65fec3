"""Per-shard token buckets and the adaptive backoff of a throttled shard (time is passed in)."""

from __future__ import annotations

import pytest

from kpl.limiter import MIN_RATE_FACTOR, SHARD_BYTES_PER_SECOND, ShardLimiter


def drain(limiter: ShardLimiter, size: int, now: float) -> int:
    taken = 0
    while limiter.try_take(size, now):
        taken += 1
    return taken


def test_records_per_second_follow_rate_limit() -> None:
    limiter = ShardLimiter(150, now=0.0)
    assert drain(limiter, 10, 0.0) == 1500  # starts full: one second of tokens
    assert not limiter.try_take(10, 0.0)
    assert limiter.delay(10, 0.0) == pytest.approx(1 / 1500)
    assert drain(limiter, 10, 1.0) == 1500  # refilled at 1500 records/s, capped at one second


def test_bytes_per_second_follow_rate_limit() -> None:
    limiter = ShardLimiter(100, now=0.0)
    record = 64 * 1024
    assert drain(limiter, record, 0.0) == 16  # 1 MiB/s at 100%
    assert limiter.delay(record, 0.0) == pytest.approx(record / SHARD_BYTES_PER_SECOND)
    assert drain(limiter, record, 0.5) == 8


def test_a_record_larger_than_the_bucket_waits_for_a_full_bucket_then_goes() -> None:
    limiter = ShardLimiter(50, now=0.0)  # 512 KiB capacity
    assert limiter.try_take(900 * 1024, 0.0)  # full bucket: let through, leaving debt
    assert not limiter.try_take(1, 0.0)
    assert limiter.delay(1, 0.0) > 0.5


def test_throttling_halves_the_rate_and_it_recovers() -> None:
    limiter = ShardLimiter(100, now=0.0)
    drain(limiter, 1, 0.0)
    limiter.throttled(0.0)
    assert limiter.factor == 0.5
    limiter.throttled(0.01)  # within the same burst of throttled entries: one event
    assert limiter.factor == pytest.approx(0.5, abs=0.01)
    limiter.throttled(0.2)
    assert limiter.factor == pytest.approx(0.25 + 0.2 * 0.25 / 2, rel=0.2)
    # Tokens refill at the reduced rate: about 250 records in the next second, not 1000.
    taken = drain(limiter, 1, 1.2)
    assert 250 <= taken <= 600
    limiter.delay(1, 10.0)  # refills, and so recovers, lazily
    assert limiter.factor == 1.0


def test_the_rate_never_drops_below_the_floor() -> None:
    limiter = ShardLimiter(100, now=0.0)
    for i in range(50):
        limiter.throttled(i * 0.1)
    assert limiter.factor == MIN_RATE_FACTOR
    assert limiter.delay(1, 5.0) < 1.0
