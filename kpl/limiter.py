"""The limiter stage: sealed Kinesis records wait per shard for tokens, then go on to the collector.

A shard accepts 1000 records/s and 1 MiB/s.  Each predicted shard gets a bucket of both, refilled
at ``RateLimit`` percent of those limits, and every Kinesis record (aggregated or not) takes one
record token and its size in byte tokens.  That alone is the Java KPL's limiter.

The KPL never reacted to throttling (its ``add_error`` is a TODO), so a shard shared with other
producers was hammered at the static rate until records expired.  Here a throttled shard's rate is
cut in half (multiplicative decrease, with a floor) and its bucket emptied, and the rate then grows
back linearly while the shard is not throttled again (additive increase): the AIMD rule TCP uses.

:class:`Limiter` is the stage: one queue per predicted shard in front of its :class:`ShardLimiter`.
A record goes straight on when its shard's queue is empty and tokens are there; otherwise it waits
in the queue, drained in order by a timer set for when the tokens will be there.  Retried records
are pushed back at the *front* of their shard's queue, ahead of younger ones.  In ordered mode a
shard also releases one Kinesis record at a time: the next only after the outcome of the last.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from kpl.accumulator import KinesisRecord

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


class _ShardQueue:
    """The Kinesis records of one predicted shard waiting for its tokens."""

    __slots__ = ("busy", "limiter", "queue", "timer")

    def __init__(self, limiter: ShardLimiter | None) -> None:
        self.queue: deque[KinesisRecord] = deque()
        #: None for records without a predicted shard: the KPL does not limit those either.
        self.limiter = limiter
        #: Ordered mode: a Kinesis record of this shard is between the queue and its outcome.
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None


class Limiter:
    """Per-shard queues and token buckets of one stream; released records go to ``on_released``.

    ``on_released(record, deadline)`` receives each record with the time by which it must leave the
    collector, its deadline.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_released: Callable[[KinesisRecord, float], None], *,
        rate_limit: float, ordered: bool,
    ) -> None:
        self._loop = loop
        self._on_released = on_released
        self._rate_limit = float(rate_limit)
        self._ordered = ordered
        self._shards: dict[str | None, _ShardQueue] = {}

    def _state(self, shard_id: str | None) -> _ShardQueue:
        state = self._shards.get(shard_id)
        if state is None:
            limiter = None if shard_id is None else ShardLimiter(self._rate_limit, self._loop.time())
            state = self._shards[shard_id] = _ShardQueue(limiter)
        return state

    def add(self, kr: KinesisRecord) -> None:
        """A sealed Kinesis record: on to the collector now if its shard has tokens, else queued."""
        state = self._shards.get(kr.shard_id) or self._state(kr.shard_id)
        if state.queue or state.busy:
            state.queue.append(kr)
            self._drain(state)
        elif state.limiter is None or state.limiter.try_take(kr.size, self._loop.time()):
            self._release(state, kr)
        else:
            state.queue.append(kr)
            self._schedule_drain(state)

    def push_front(self, fronts: dict[str | None, list[KinesisRecord]]) -> None:
        """Retried Kinesis records, oldest first per shard, ahead of everything queued."""
        for shard_id, krs in fronts.items():
            state = self._state(shard_id)
            state.queue.extendleft(reversed(krs))
            if state.timer is None:
                self._drain(state)

    def _release(self, state: _ShardQueue, kr: KinesisRecord) -> None:
        if self._ordered:
            state.busy = True
        self._on_released(kr, kr.deadline)

    def _drain(self, state: _ShardQueue) -> None:
        queue = state.queue
        limiter = state.limiter
        now = self._loop.time()
        while queue and not state.busy:
            kr = queue[0]
            if limiter is not None and not limiter.try_take(kr.size, now):
                self._schedule_drain(state)
                return
            queue.popleft()
            self._release(state, kr)

    def _schedule_drain(self, state: _ShardQueue) -> None:
        if state.timer is not None or not state.queue:
            return
        assert state.limiter is not None
        delay = state.limiter.delay(state.queue[0].size, self._loop.time())
        state.timer = self._loop.call_later(max(delay, 0.001), self._drain_timer, state)

    def _drain_timer(self, state: _ShardQueue) -> None:
        state.timer = None
        self._drain(state)

    def drain_all(self) -> None:
        """Release whatever the tokens allow now (a flush)."""
        for state in list(self._shards.values()):
            self._drain(state)

    def done(self, shard_ids: Iterable[str | None]) -> None:
        """Ordered mode: these shards' Kinesis records have their outcomes; the next may go."""
        if not self._ordered:
            return
        for shard_id in shard_ids:
            state = self._shards.get(shard_id)
            if state is not None:
                state.busy = False
                self._drain(state)

    def throttled(self, shard_ids: Iterable[str | None], now: float) -> None:
        """These shards said they were over their throughput: slow them down."""
        for shard_id in shard_ids:
            state = self._shards.get(shard_id)
            if state is not None and state.limiter is not None:
                state.limiter.throttled(now)

    def take(self, shard_ids: Iterable[str | None] | None = None) -> list[KinesisRecord]:
        """Remove the queued records of ``shard_ids`` (all when None), forgetting idle shards."""
        taken: list[KinesisRecord] = []
        for shard_id in list(self._shards) if shard_ids is None else list(shard_ids):
            state = self._shards.get(shard_id)
            if state is None:
                continue
            taken.extend(state.queue)
            state.queue.clear()
            if state.timer is not None:
                state.timer.cancel()
                state.timer = None
            if not state.busy:
                del self._shards[shard_id]
        return taken

    def take_expired(self, now: float) -> list[KinesisRecord]:
        """Remove the queued records that reached their expiry."""
        expired: list[KinesisRecord] = []
        for state in self._shards.values():
            if state.queue and any(kr.expiry <= now for kr in state.queue):
                expired.extend(kr for kr in state.queue if kr.expiry <= now)
                state.queue = deque(kr for kr in state.queue if kr.expiry > now)
        return expired

    def shards(self) -> list[str | None]:
        return list(self._shards)

    def queued(self) -> Iterator[KinesisRecord]:
        for state in self._shards.values():
            yield from state.queue
