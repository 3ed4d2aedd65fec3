"""The KCL's deaggregation rule on top of kpl.aggregation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kcl.deaggregation import Deaggregator
from kpl.aggregation import encode
from kpl.hashing import MAX_HASH_KEY, HashRange, partition_key_hash

ARRIVAL = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WHOLE = HashRange(0, MAX_HASH_KEY)


def service_record(data: bytes, sequence: str = "100", key: str = "outer") -> dict[str, Any]:
    return {"Data": data, "SequenceNumber": sequence, "PartitionKey": key, "ApproximateArrivalTimestamp": ARRIVAL}


def test_plain_records_pass_through_unchanged() -> None:
    [record] = Deaggregator("s", WHOLE).deaggregate([service_record(b"hello", "7", "pk")])
    assert (record.data, record.partition_key, record.sequence_number, record.sub_sequence_number) == (
        b"hello", "pk", "7", 0)
    assert record.explicit_hash_key is None and not record.aggregated
    assert record.approximate_arrival_timestamp == ARRIVAL


def test_aggregate_becomes_its_sub_records_numbered_from_zero() -> None:
    data = encode([("a", None, b"1"), ("b", "12345", b"2"), ("a", None, b"3")])
    records = Deaggregator("s", WHOLE).deaggregate([service_record(data, "555")])
    assert [(r.partition_key, r.explicit_hash_key, r.data, r.sub_sequence_number) for r in records] == [
        ("a", None, b"1", 0), ("b", "12345", b"2", 1), ("a", None, b"3", 2)]
    assert all(r.sequence_number == "555" and r.aggregated and r.approximate_arrival_timestamp == ARRIVAL
               for r in records)


def test_invalid_aggregate_is_a_plain_record() -> None:
    data = bytearray(encode([("a", None, b"1")]))
    data[-1] ^= 0xFF  # corrupt the MD5 trailer
    deaggregator = Deaggregator("s", WHOLE)
    [record] = deaggregator.deaggregate([service_record(bytes(data), key="pk")])
    assert record.data == bytes(data) and record.partition_key == "pk" and not record.aggregated
    assert deaggregator.invalid_aggregates == 1


def test_aggregate_with_any_sub_record_outside_the_shard_is_dropped_whole() -> None:
    inside, outside = "key-inside", "key-outside"
    low = HashRange(0, MAX_HASH_KEY // 2)
    while partition_key_hash(inside) not in low:
        inside += "x"
    while partition_key_hash(outside) in low:
        outside += "y"
    deaggregator = Deaggregator("s", low)
    mixed = encode([(inside, None, b"1"), (outside, None, b"2")])
    clean = encode([(inside, None, b"3")])
    records = deaggregator.deaggregate([service_record(mixed, "1"), service_record(clean, "2")])
    assert [r.data for r in records] == [b"3"]
    assert (deaggregator.dropped_aggregates, deaggregator.dropped_records) == (1, 2)


def test_explicit_hash_key_decides_the_range_not_the_partition_key() -> None:
    low = HashRange(0, 1000)
    deaggregator = Deaggregator("s", low)
    inside = encode([("whatever-key", "999", b"1")])
    outside = encode([("whatever-key", "1001", b"2")])
    assert [r.data for r in deaggregator.deaggregate([service_record(inside), service_record(outside)])] == [b"1"]


def test_plain_records_are_never_filtered_by_hash_range() -> None:
    assert len(Deaggregator("s", HashRange(0, 0)).deaggregate([service_record(b"plain")])) == 1


def test_unknown_hash_range_disables_filtering() -> None:
    data = encode([("a", "0", b"1"), ("b", str(MAX_HASH_KEY), b"2")])
    assert len(Deaggregator("s", None).deaggregate([service_record(data)])) == 2


def test_empty_batch() -> None:
    assert Deaggregator("s", WHOLE).deaggregate([]) == []
