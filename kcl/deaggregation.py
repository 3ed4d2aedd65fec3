"""Turning GetRecords/SubscribeToShard records into user records, with the Java KCL's rule.

* A record without the aggregation magic is a user record as it is (sub-sequence 0).
* A record with the magic that does not decode (bad MD5 trailer, protobuf or table index) is also a
  plain user record: producers other than the KPL may legitimately start data with those bytes.
* A valid aggregate becomes its sub-records, numbered 0..n-1.  If any sub-record's effective hash key
  (explicit hash key, else MD5 of the partition key) lies outside the shard's hash range, the *whole*
  aggregate is dropped: after a split the KPL may have sent the same aggregate to both children, and
  only the child owning every key must deliver it.  Drops are counted and logged (once per batch).

The hot path hashes a partition key once per shard consumer, not once per record (partition keys repeat:
users, devices), in a bounded cache, and creates nothing per record beyond the :class:`Record` itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import structlog

from kcl.processor import Record
from kpl.aggregation import AggregationFormatError, decode, is_aggregated
from kpl.hashing import HashRange, parse_explicit_hash_key, partition_key_hash

log = structlog.get_logger(__name__)


class Deaggregator:
    """Deaggregates one shard's records; ``hash_range`` None disables the range filter (and says so)."""

    __slots__ = ("_key_in_range", "dropped_aggregates", "dropped_records", "hash_range", "invalid_aggregates",
                 "shard_id")

    #: Partition keys whose range check is remembered; the cache starts over when it is full.
    KEY_CACHE_SIZE = 65_536

    def __init__(self, shard_id: str, hash_range: HashRange | None) -> None:
        self.shard_id = shard_id
        self.hash_range = hash_range
        self.dropped_aggregates = 0
        self.dropped_records = 0
        self.invalid_aggregates = 0
        self._key_in_range: dict[str, bool] = {}
        if hash_range is None:
            log.warning("shard hash range unknown: aggregates are not filtered by hash key", shard=shard_id)

    def deaggregate(self, raw_records: Iterable[Mapping[str, Any]]) -> list[Record]:
        """User records of a batch of service records (boto3 shape: SequenceNumber, Data, ...)."""
        out: list[Record] = []
        append = out.append
        dropped_before = self.dropped_aggregates
        for raw in raw_records:
            data = raw["Data"]
            sequence_number = raw["SequenceNumber"]
            arrival = raw.get("ApproximateArrivalTimestamp")
            if not is_aggregated(data):
                append(Record(data, raw["PartitionKey"], sequence_number, 0, arrival, None, False))
                continue
            try:
                sub_records = decode(data)
            except AggregationFormatError:
                self.invalid_aggregates += 1
                append(Record(data, raw["PartitionKey"], sequence_number, 0, arrival, None, False))
                continue
            if self.hash_range is not None and not self._all_in_range(sub_records):
                self.dropped_aggregates += 1
                self.dropped_records += len(sub_records)
                continue
            out.extend(_records_of(sub_records, sequence_number, arrival))
        if self.dropped_aggregates != dropped_before:
            log.warning("dropped aggregated records whose sub-records lie outside the shard's hash range",
                        shard=self.shard_id, aggregates=self.dropped_aggregates - dropped_before)
        return out

    def _all_in_range(self, sub_records: list[Any]) -> bool:
        hash_range = self.hash_range
        assert hash_range is not None
        start, end = hash_range.start, hash_range.end
        known = self._key_in_range
        for partition_key, explicit_hash_key, _ in sub_records:
            if explicit_hash_key is not None:
                try:
                    key = parse_explicit_hash_key(explicit_hash_key)
                except ValueError:
                    return False
                if not start <= key <= end:
                    return False
                continue
            inside = known.get(partition_key)
            if inside is None:
                if len(known) >= self.KEY_CACHE_SIZE:
                    known.clear()
                inside = known[partition_key] = start <= partition_key_hash(partition_key) <= end
            if not inside:
                return False
        return True


def _records_of(sub_records: list[Any], sequence_number: str, arrival: datetime | None) -> list[Record]:
    return [
        Record(data, partition_key, sequence_number, index, arrival, explicit_hash_key, True)
        for index, (partition_key, explicit_hash_key, data) in enumerate(sub_records)
    ]
