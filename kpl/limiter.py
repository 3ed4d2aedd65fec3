"""Per-shard rate limiting: token buckets for records and bytes, plus backing off a throttled shard.

A shard accepts 1000 records/s and 1 MiB/s.  Each predicted shard gets a bucket of both, refilled
at ``RateLimit`` percent of those limits, and every Kinesis record (aggregated or not) takes one
record token and its size in byte tokens.  That alone is the Java KPL's limiter.

The KPL never reacted to throttling (its ``add_error`` is a TODO), so a shard shared with other
producers was hammered at the static rate until records expired.  Here a throttled shard's rate is
cut in half (multiplicative decrease, with a floor) and its bucket emptied, and the rate then grows
back linearly while the shard is not throttled again (additive increase): the AIMD rule TCP uses.
"""

from __future__ import annotations

SHARD_RECORDS_PER_SECOND = 1000.0
SHARD_BYTES_PER_SECOND = 1024.0 * 1024.0

#: The lowest share of the configured rate a throttled shard is slowed to.
MIN_RATE_FACTOR = 0.05
#: How much of the configured rate a shard regains per second without throttling.
RECOVERY_PER_SECOND = 0.25
#: Throttles closer together than this count as one event (one response carries many entries).
THROTTLE_COALESCE_SECONDS = 0.05


class ShardLimiter:
    """Two token buckets (records, bytes) for one shard, with an adaptive rate factor.

    Buckets start full and hold at most one second of tokens.  A Kinesis record larger than the
    byte bucket can ever hold is let through when the bucket is full, leaving it in debt, so a
    large record is delayed rather than stuck.
    """

    __slots__ = ("byte_capacity", "byte_rate", "bytes", "factor", "last_throttle", "record_capacity", "record_rate",
                 "records", "updated")

    def __init__(self, rate_limit_percent: float, now: float) -> None:
        share = rate_limit_percent / 100.0
        self.record_rate = SHARD_RECORDS_PER_SECOND * share
        self.byte_rate = SHARD_BYTES_PER_SECOND * share
        self.record_capacity = self.record_rate
        self.byte_capacity = self.byte_rate
        self.records = self.record_capacity
        self.bytes = self.byte_capacity
        self.factor = 1.0
        self.updated = now
        self.last_throttle = float("-inf")

    def _refill(self, now: float) -> None:
        elapsed = now - self.updated
        if elapsed <= 0:
            return
        self.updated = now
        factor = self.factor
        if factor < 1.0:
            factor = self.factor = min(1.0, factor + elapsed * RECOVERY_PER_SECOND)
        records = self.records + elapsed * self.record_rate * factor
        self.records = records if records < self.record_capacity else self.record_capacity
        size = self.bytes + elapsed * self.byte_rate * factor
        self.bytes = size if size < self.byte_capacity else self.byte_capacity

    def try_take(self, size: int, now: float) -> bool:
        """Take one record and ``size`` bytes if available now."""
        if self.records < 1.0 or self.bytes < (size if size < self.byte_capacity else self.byte_capacity):
            self._refill(now)
            if self.records < 1.0 or self.bytes < (size if size < self.byte_capacity else self.byte_capacity):
                return False
        self.records -= 1.0
        self.bytes -= size
        return True

    def delay(self, size: int, now: float) -> float:
        """Seconds until ``try_take(size)`` can succeed (0 when it can now)."""
        self._refill(now)
        needed_bytes = min(size, self.byte_capacity)
        factor = self.factor
        wait_records = (1.0 - self.records) / (self.record_rate * factor) if self.records < 1.0 else 0.0
        wait_bytes = (needed_bytes - self.bytes) / (self.byte_rate * factor) if self.bytes < needed_bytes else 0.0
        # The factor grows while we wait, so this slightly overestimates: never early, at most a
        # little late, and the caller re-checks anyway.
        return max(wait_records, wait_bytes)

    def throttled(self, now: float) -> None:
        """The shard rejected a put for throughput: halve its rate and empty its buckets."""
        self._refill(now)
        if now - self.last_throttle < THROTTLE_COALESCE_SECONDS:
            return
        self.last_throttle = now
        self.factor = max(MIN_RATE_FACTOR, self.factor * 0.5)
        self.records = min(self.records, 0.0)
        self.bytes = min(self.bytes, 0.0)
