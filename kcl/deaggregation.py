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

from kcl.processor import Record
from kpl.aggregation import AggregationFormatError, ParsedAggregate, is_aggregated, parse
from kpl.hashing import HashRange, parse_explicit_hash_key, partition_key_hash
from kpl.logs import get_logger

log = get_logger(__name__)


class Deaggregator:
    """Deaggregates one shard's records; ``hash_range`` None disables the range filter (and says so)."""

    __slots__ = ("_keys_inside", "dropped_aggregates", "dropped_records", "hash_range", "invalid_aggregates",
                 "shard_id")

    #: Partition keys remembered as inside the shard's range; the set starts over when it is full.
    KEY_CACHE_SIZE = 65_536

    def __init__(self, shard_id: str, hash_range: HashRange | None) -> None:
        self.shard_id = shard_id
        self.hash_range = hash_range
        self.dropped_aggregates = 0
        self.dropped_records = 0
        self.invalid_aggregates = 0
        self._keys_inside: set[str] = set()
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
            if is_aggregated(data):
                try:
                    users = self._sub_records(parse(data), sequence_number, arrival)
                except (AggregationFormatError, IndexError):
                    self.invalid_aggregates += 1
                else:
                    if users is not None:
                        out.extend(users)
                    continue
            append(Record(data, raw["PartitionKey"], sequence_number, 0, arrival, None, False))
        if self.dropped_aggregates != dropped_before:
            log.warning("dropped aggregated records whose sub-records lie outside the shard's hash range",
                        shard=self.shard_id, aggregates=self.dropped_aggregates - dropped_before)
        return out

    def _sub_records(self, aggregate: ParsedAggregate, sequence_number: str,
                     arrival: datetime | None) -> list[Record] | None:
        """The aggregate's user records, or None when the hash-range rule drops it."""
        keys, explicit_keys, messages = aggregate
        if explicit_keys:
            return self._sub_records_with_explicit_keys(aggregate, sequence_number, arrival)
        if self.hash_range is not None and not self._keys_in_range(keys, messages):
            self._drop(len(messages))
            return None
        return [Record(message.data, keys[message.partition_key_index], sequence_number, index, arrival, None, True)
                for index, message in enumerate(messages)]

    def _sub_records_with_explicit_keys(self, aggregate: ParsedAggregate, sequence_number: str,
                                        arrival: datetime | None) -> list[Record] | None:
        keys, explicit_keys, messages = aggregate
        records = []
        for index, message in enumerate(messages):
            partition_key = keys[message.partition_key_index]
            explicit = (explicit_keys[message.explicit_hash_key_index]
                        if message.HasField("explicit_hash_key_index") else None)
            records.append(Record(message.data, partition_key, sequence_number, index, arrival, explicit, True))
        if self.hash_range is not None and not all(self._in_range(r.partition_key, r.explicit_hash_key)
                                                   for r in records):
            self._drop(len(records))
            return None
        return records

    def _keys_in_range(self, keys: list[str], messages: Any) -> bool:
        """Whether every partition key the sub-records use hashes into the shard.

        Checked per table entry, against the keys already known to be inside (a set difference, in C);
        only new keys are hashed.  Only when an entry is out of range are the records consulted, since
        an unused entry (the KPL writes none) must not drop the aggregate.
        """
        inside = self._keys_inside
        new = set(keys).difference(inside)
        if not new:
            return True
        if len(inside) + len(new) > self.KEY_CACHE_SIZE:
            inside.clear()
        outside = set()
        for key in new:
            if self._in_range(key, None):
                inside.add(key)
            else:
                outside.add(key)
        if not outside:
            return True
        used = {message.partition_key_index for message in messages}
        return not any(keys[index] in outside for index in used)

    def _in_range(self, partition_key: str, explicit_hash_key: str | None) -> bool:
        hash_range = self.hash_range
        assert hash_range is not None
        if explicit_hash_key is not None:
            try:
                return parse_explicit_hash_key(explicit_hash_key) in hash_range
            except ValueError:
                return False
        return partition_key_hash(partition_key) in hash_range

    def _drop(self, records: int) -> None:
        self.dropped_aggregates += 1
        self.dropped_records += records
