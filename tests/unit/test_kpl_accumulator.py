"""Aggregation per shard and collection into PutRecords batches: what is sealed and flushed, and when.

Time is a fake clock: timers fire when the test advances it, so deadlines are tested without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from kpl.accumulator import (
    ARRIVAL,
    NO_LOG,
    Aggregator,
    KinesisRecord,
    PendingRecord,
    regroup,
    seal,
)
from kpl.aggregation import AggregateBuilder, decode, is_aggregated
from kpl.collector import SHARD_BYTES_PER_BATCH, Collector


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The two things the accumulator asks of its loop: the time, and ``call_at``."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, FakeTimer, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(self._timers, (when, next(self._order), timer, callback, args))
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while self._timers and self._timers[0][0] <= self.now:
            _, _, timer, callback, args = heapq.heappop(self._timers)
            if not timer.cancelled:
                callback(*args)

    @property
    def pending_timers(self) -> int:
        return sum(1 for *_, timer, _, _ in self._timers if not timer.cancelled)


def record(key: str, data: bytes, arrival: float = 0.0, hash_key: int = 7) -> PendingRecord:
    return (key, None, data, hash_key, len(key.encode()) + len(data), arrival, NO_LOG)


def aggregator(loop: FakeLoop, sealed: list[KinesisRecord], max_size: int = 51200,
               max_count: int = 4294967295, max_buffered: float = 0.1) -> Aggregator:
    return Aggregator(loop, sealed.append, max_size=max_size, max_count=max_count, ttl=30.0,  # type: ignore[arg-type]
                      max_buffered=max_buffered)


def test_records_of_one_shard_share_an_aggregate_until_the_deadline() -> None:
    loop, sealed = FakeLoop(), []
    agg = aggregator(loop, sealed)
    for i in range(10):
        agg.add(record(f"k{i}", b"x" * 10, arrival=0.0), f"future-{i}", "shard-1")
    agg.add(record("other", b"y", arrival=0.0), "future-o", "shard-2")
    loop.advance(0.05)
    assert sealed == [] and len(agg) == 11
    loop.advance(0.06)
    assert sorted(kr.shard_id or "" for kr in sealed) == ["shard-1", "shard-2"]
    big = next(kr for kr in sealed if kr.shard_id == "shard-1")
    assert big.futures == [f"future-{i}" for i in range(10)]
    assert is_aggregated(big.entry["Data"]) and big.entry["PartitionKey"] == "a"
    assert [r.partition_key for r in decode(big.entry["Data"])] == [f"k{i}" for i in range(10)]
    assert big.entry["ExplicitHashKey"] == "7"
    assert big.size == len(big.entry["Data"]) + 1
    assert loop.pending_timers == 0


def test_a_single_record_travels_raw_with_its_hash_key() -> None:
    loop, sealed = FakeLoop(), []
    agg = aggregator(loop, sealed)
    agg.add(record("alone", b"payload", hash_key=12345), "f", "shard-1")
    agg.flush()
    (kr,) = sealed
    assert kr.entry == {"Data": b"payload", "PartitionKey": "alone", "ExplicitHashKey": "12345"}
    assert kr.size == len("alone") + len("payload")


def test_a_full_aggregate_is_sealed_at_once_and_never_exceeds_the_limit() -> None:
    loop, sealed = FakeLoop(), []
    agg = aggregator(loop, sealed, max_size=1000)
    for i in range(40):
        agg.add(record(f"key-{i}", b"z" * 50), i, "s")
    assert len(sealed) >= 2, "filled aggregates leave before the deadline"
    assert all(len(kr.entry["Data"]) <= 1000 for kr in sealed)
    agg.flush()
    delivered = [r for kr in sealed for r in kr.futures]
    assert delivered == list(range(40)), "every record exactly once, in order"


def test_count_limit() -> None:
    loop, sealed = FakeLoop(), []
    agg = aggregator(loop, sealed, max_count=3)
    for i in range(7):
        agg.add(record("k", b"d"), i, "s")
    agg.flush()
    assert [len(kr.records) for kr in sealed] == [3, 3, 1]


def test_a_record_larger_than_an_aggregate_bypasses_aggregation() -> None:
    loop, sealed = FakeLoop(), []
    agg = aggregator(loop, sealed, max_size=200)
    agg.add(record("small", b"s"), "a", "s")
    agg.add(record("huge", b"h" * 500), "b", "s")
    assert [kr.futures for kr in sealed] == [["b"]]
    assert sealed[0].entry["Data"] == b"h" * 500
    agg.flush()
    assert [kr.futures for kr in sealed] == [["b"], ["a"]]


def test_the_first_record_sets_the_aggregate_deadline() -> None:
    loop, sealed = FakeLoop(), []
    agg = aggregator(loop, sealed)
    agg.add(record("first", b"1", arrival=0.0), "first", "s")
    loop.advance(0.05)
    agg.add(record("second", b"2", arrival=0.05), "second", "s")
    loop.advance(0.051)
    (kr,) = sealed
    assert kr.futures == ["first", "second"] and kr.user_bytes == 2 * (5 + 1) + 1


def test_take_returns_open_records_without_sealing() -> None:
    loop, sealed = FakeLoop(), []
    agg = aggregator(loop, sealed)
    agg.add(record("a", b"1"), "fa", "s1")
    agg.add(record("b", b"2"), "fb", "s2")
    records, futures = agg.take({"s1"})
    assert futures == ["fa"] and [r[0] for r in records] == ["a"]
    loop.advance(1.0)
    assert [kr.futures for kr in sealed] == [["fb"]]


def test_regroup_keeps_order_and_limits() -> None:
    records = [record(f"k{i}", b"v" * 30, arrival=float(i)) for i in range(30)]
    futures = list(range(30))
    krs = regroup(records, futures, "s", 3, aggregate=True, max_size=300, max_count=100, deadline=9.0, ttl=30.0)
    assert [f for kr in krs for f in kr.futures] == futures
    assert all(len(kr.entry["Data"]) <= 300 for kr in krs) and all(kr.generation == 3 for kr in krs)
    plain = regroup(records[:3], futures[:3], "s", 3, aggregate=False, max_size=300, max_count=100, deadline=9.0,
                    ttl=30.0)
    assert [kr.entry["Data"] for kr in plain] == [b"v" * 30] * 3


def test_seal_uses_the_oldest_arrival_for_expiry() -> None:
    old = (*record("old", b"o", arrival=1.0)[:6], ((0.5, 0.6, "InternalFailure", "x"),))
    builder = AggregateBuilder()
    for key in ("new", "old"):
        builder.add(key, None, b"n")
    kr = seal([record("new", b"n", arrival=5.0), old], ["a", "b"], builder, "s", 1, 9.0, 30.0, 4)
    assert kr.oldest_arrival == old[ARRIVAL] and kr.expiry == 31.0


# --- collector ---------------------------------------------------------------------------------------


def kinesis_record(size: int, shard: str = "s", deadline: float = 0.1) -> KinesisRecord:
    return KinesisRecord([record("k", b"x")], [None], {"Data": b"x"}, size, shard, 1, deadline, 0.0, 30.0, size)


def collector(loop: FakeLoop, batches: list[list[KinesisRecord]], max_count: int = 500,
              max_size: int = 5 * 1024 * 1024) -> Collector:
    return Collector(loop, batches.append, max_count=max_count, max_size=max_size)  # type: ignore[arg-type]


def test_batch_flushes_at_the_count_limit() -> None:
    loop, batches = FakeLoop(), []
    coll = collector(loop, batches, max_count=500)
    for i in range(1001):
        coll.add(kinesis_record(10, shard=f"s{i % 7}"), deadline=1.0)
    assert [len(b) for b in batches] == [500, 500]
    loop.advance(1.0)
    assert [len(b) for b in batches] == [500, 500, 1]


def test_batch_flushes_before_exceeding_the_size_limit() -> None:
    loop, batches = FakeLoop(), []
    coll = collector(loop, batches, max_size=100_000)
    for i in range(5):
        coll.add(kinesis_record(30_000, shard=f"s{i}"), deadline=1.0)
    assert [sum(kr.size for kr in b) for b in batches] == [90_000]
    coll.flush()
    assert [len(b) for b in batches] == [3, 2]


def test_one_shard_with_256_kib_flushes_the_batch() -> None:
    loop, batches = FakeLoop(), []
    coll = collector(loop, batches)
    coll.add(kinesis_record(100, shard="other"), deadline=1.0)
    per_shard = SHARD_BYTES_PER_BATCH // (50 * 1024) + 1
    for _ in range(per_shard):
        assert batches == []
        coll.add(kinesis_record(50 * 1024, shard="hot"), deadline=1.0)
    assert [len(b) for b in batches] == [1 + per_shard]


def test_batch_flushes_at_its_earliest_deadline() -> None:
    loop, batches = FakeLoop(), []
    coll = collector(loop, batches)
    coll.add(kinesis_record(10), deadline=0.5)
    coll.add(kinesis_record(10), deadline=0.2)
    loop.advance(0.19)
    assert batches == []
    loop.advance(0.02)
    assert [len(b) for b in batches] == [2]
    assert loop.pending_timers == 0


def test_take_empties_the_batch_without_sending() -> None:
    loop, batches = FakeLoop(), []
    coll = collector(loop, batches)
    coll.add(kinesis_record(10), deadline=0.5)
    assert len(coll.take()) == 1
    loop.advance(1.0)
    assert batches == [] and coll.pending() == []


def test_a_group_is_aggregated_as_its_records_one_by_one() -> None:
    sizes = [10, 300, 40, 900, 5, 5, 1200, 60, 70, 80] * 7  # some too large for an aggregate of 1000 bytes
    records = [record(f"key-{i % 13}", b"d" * size, arrival=i * 0.001) for i, size in enumerate(sizes)]
    outcomes = []
    for grouped in (False, True):
        loop, sealed = FakeLoop(), []
        agg = aggregator(loop, sealed, max_size=1000, max_count=9)
        if grouped:
            agg.add_group("s", records[:30], list(range(30)))
            agg.add_group("s", records[30:], list(range(30, len(records))))
        else:
            for i, rec in enumerate(records):
                agg.add(rec, i, "s")
        agg.flush()
        outcomes.append([(kr.futures, kr.entry["Data"], kr.deadline) for kr in sealed])
    assert outcomes[0] == outcomes[1]
    assert sorted(f for futures, _, _ in outcomes[1] for f in futures) == list(range(len(records)))


def test_an_aggregate_is_sealed_early_enough_to_leave_the_collector_within_the_buffered_time() -> None:
    """RecordMaxBufferedTime bounds put -> request: the collection time (the KPL's min(50 ms, 0.2 x RMBT))
    is taken out of the aggregation time, not added after it."""
    loop, batches = FakeLoop(), []
    coll = collector(loop, batches)
    agg = Aggregator(loop, lambda kr: coll.add(kr, kr.deadline), max_size=51200,  # type: ignore[arg-type]
                     max_count=2**32, ttl=30.0, max_buffered=0.1)
    agg.seal_early = 0.02
    agg.add(record("a", b"1", arrival=0.0), "fa", "s1")
    loop.advance(0.079)
    agg.add(record("b", b"2", arrival=0.079), "fb", "s2")
    assert batches == []
    loop.advance(0.002)  # 0.081: the first aggregate is sealed, and waits in the collector for company
    assert batches == [] and len(coll.pending()) == 1 and coll.pending()[0].deadline == 0.1
    loop.advance(0.019)  # 0.1: its deadline, the batch leaves
    assert [kr.futures for batch in batches for kr in batch] == [["fa"]]
    loop.advance(0.0795)  # just past 0.179 = 0.079 + 0.1, the second one's deadline
    assert [kr.futures for batch in batches for kr in batch] == [["fa"], ["fb"]]
