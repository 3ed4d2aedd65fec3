"""What the sink remembers: streams, shards, sequence numbers, readable records, counters, settings.

Pure data and arithmetic with no I/O; :mod:`tests.support.sink.kinesis` and
:mod:`tests.support.sink.firehose` implement the operations on it and :mod:`tests.support.sink.server`
puts them behind HTTP.

Memory stays flat however many records pass through: a put record is counted, not kept (unless the
sink retains puts for a test), and a pre-filled stream serves ``records_per_shard`` records per shard
by cycling through a bounded set of pre-rendered records, each served copy with its own sequence
number and arrival time, so a million-record stream costs a few megabytes.

Sequence numbers are 56-digit decimals like the service's, increasing within a shard, and encode the
shard and the record's position, so an iterator is just (stream, shard, position).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from kpl import aggregation
from kpl.hashing import MAX_HASH_KEY, HashRange, ShardRanges, effective_hash_key, partition_key_hash

ACCOUNT_ID = "000000000000"
SEQUENCE_BASE = 49 * 10**54
SHARD_SEQUENCE_STRIDE = 10**30
DEFAULT_MAX_RECORD_SIZE_KIB = 1024
#: Partition keys whose shard a stream remembers, so routing a known key skips MD5 and the bisection.
ROUTING_CACHE_SIZE = 100_000

VerifyMode = Literal["none", "count", "route"]
VERIFY_MODES: tuple[VerifyMode, ...] = ("none", "count", "route")


class SinkError(Exception):
    """An error as the service reports it: the HTTP status, the AWS error code and a message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def even_hash_ranges(count: int) -> list[HashRange]:
    """How CreateStream splits the hash-key space: ``count`` equal ranges, the last one taking the rest."""
    if count < 1:
        raise ValueError(f"a stream needs at least one shard, got {count}")
    width = (MAX_HASH_KEY + 1) // count
    return [HashRange(i * width, MAX_HASH_KEY if i == count - 1 else (i + 1) * width - 1) for i in range(count)]


def shard_id_of(index: int) -> str:
    return f"shardId-{index:012d}"


def b64_decoded_length(text: str) -> int:
    """Bytes that a base64 string decodes to, without decoding it."""
    length = len(text)
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return length * 3 // 4 - padding


@dataclass(slots=True)
class StoredRecord:
    """A readable record: its JSON members after SequenceNumber/ApproximateArrivalTimestamp, pre-rendered."""

    tail: str
    data_bytes: int
    user_records: int
    arrival: float


@dataclass(slots=True)
class PrefilledRecords:
    """``count`` records served by cycling through ``templates``; the last one may be a shorter remainder.

    Record ``p`` arrived at ``first_arrival_ms + p`` milliseconds (one millisecond apart, ending at the
    time of the prefill), which gives GetRecords real MillisBehindLatest values and AT_TIMESTAMP a meaning.
    """

    templates: list[StoredRecord]
    count: int
    remainder: StoredRecord | None
    first_arrival_ms: int
    #: A template standing for all of them when they share size and user-record count, else None.
    uniform: StoredRecord | None = field(init=False)

    def __post_init__(self) -> None:
        first = self.templates[0]
        same = all(t.data_bytes == first.data_bytes and t.user_records == first.user_records for t in self.templates)
        self.uniform = first if same else None

    def record(self, position: int) -> StoredRecord:
        if self.remainder is not None and position == self.count - 1:
            return self.remainder
        return self.templates[position % len(self.templates)]

    def arrival(self, position: int) -> float:
        return (self.first_arrival_ms + position) / 1000

    def first_position_at_or_after(self, timestamp: float) -> int:
        return min(self.count, max(0, math.ceil(timestamp * 1000) - self.first_arrival_ms))

    @property
    def user_records(self) -> int:
        full = self.count - (1 if self.remainder is not None else 0)
        cycles, rest = divmod(full, len(self.templates))
        total = cycles * sum(t.user_records for t in self.templates)
        total += sum(t.user_records for t in self.templates[:rest])
        return total + (self.remainder.user_records if self.remainder is not None else 0)


@dataclass(slots=True)
class ShardCounters:
    records: int = 0
    bytes: int = 0
    failed: int = 0
    served_records: int = 0
    served_user_records: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "records": self.records, "bytes": self.bytes, "failed": self.failed,
            "served_records": self.served_records, "served_user_records": self.served_user_records,
        }


class Shard:
    """One shard: its hash range, the next position (sequence number), and what it can serve."""

    __slots__ = ("appended", "counters", "hash_range", "index", "next_position", "prefilled", "sequence_base",
                 "sequence_prefix", "shard_id")

    def __init__(self, index: int, hash_range: HashRange) -> None:
        self.index = index
        self.shard_id = shard_id_of(index)
        self.hash_range = hash_range
        self.sequence_base = SEQUENCE_BASE + index * SHARD_SEQUENCE_STRIDE
        #: The digits above the position: a sequence number is this prefix and the position in 30 digits.
        self.sequence_prefix = str(self.sequence_base // SHARD_SEQUENCE_STRIDE)
        self.next_position = 0
        self.prefilled: PrefilledRecords | None = None
        #: Records put while the sink retains puts, readable after the pre-filled ones.
        self.appended: list[StoredRecord] = []
        self.counters = ShardCounters()

    def sequence_number(self, position: int) -> str:
        return f"{self.sequence_prefix}{position:030d}"

    def position_of(self, sequence_number: str) -> int:
        try:
            value = int(sequence_number)
        except ValueError:
            message = f"StartingSequenceNumber {sequence_number!r} is not a number"
            raise SinkError("InvalidArgumentException", message) from None
        position = value - self.sequence_base
        if not 0 <= position < SHARD_SEQUENCE_STRIDE:
            raise SinkError(
                "InvalidArgumentException",
                f"StartingSequenceNumber {sequence_number} used in GetShardIterator on shard {self.shard_id} is not "
                "a sequence number of that shard",
            )
        return position

    @property
    def prefilled_count(self) -> int:
        return self.prefilled.count if self.prefilled is not None else 0

    @property
    def readable_end(self) -> int:
        return self.prefilled_count + len(self.appended)

    def arrival(self, position: int) -> float:
        prefilled = self.prefilled_count
        if position < prefilled:
            assert self.prefilled is not None
            return self.prefilled.arrival(position)
        return self.appended[position - prefilled].arrival

    def render(self, position: int, stop: int, max_bytes: int) -> tuple[list[str], int, int]:
        """GetRecords entries for ``[position, stop)`` within ``max_bytes`` of data (at least one record).

        Returns the rendered entries, their data bytes and the user records they hold.  This is the read
        hot path: arrival times are written as integer milliseconds with an ``e-3`` exponent (valid JSON,
        no float formatting), and a run of same-sized pre-filled records is rendered in one comprehension.
        """
        base = self.sequence_base
        prefilled = self.prefilled
        if prefilled is not None and position < prefilled.count:
            end = min(stop, prefilled.count)
            uniform = prefilled.uniform
            if uniform is not None and (end - position) * uniform.data_bytes <= max_bytes and (
                    prefilled.remainder is None or end < prefilled.count):
                templates, width, first_ms = prefilled.templates, len(prefilled.templates), prefilled.first_arrival_ms
                parts = [f'{{"SequenceNumber":"{base + p}","ApproximateArrivalTimestamp":{first_ms + p}e-3,'
                         f'{templates[p % width].tail}' for p in range(position, end)]
                if end == stop or end < prefilled.count:
                    return parts, len(parts) * uniform.data_bytes, len(parts) * uniform.user_records
                rest, rest_size, rest_users = self._render_each(end, stop, max_bytes - len(parts) * uniform.data_bytes)
                return (parts + rest, len(parts) * uniform.data_bytes + rest_size,
                        len(parts) * uniform.user_records + rest_users)
        return self._render_each(position, stop, max_bytes)

    def _render_each(self, position: int, stop: int, max_bytes: int) -> tuple[list[str], int, int]:
        parts: list[str] = []
        size = users = 0
        base = self.sequence_base
        for current in range(position, stop):
            record = self.stored(current)
            if parts and size + record.data_bytes > max_bytes:
                break
            arrival_ms = round(self.arrival(current) * 1000)
            parts.append(f'{{"SequenceNumber":"{base + current}","ApproximateArrivalTimestamp":{arrival_ms}e-3,'
                         f'{record.tail}')
            size += record.data_bytes
            users += record.user_records
        return parts, size, users

    def stored(self, position: int) -> StoredRecord:
        prefilled = self.prefilled_count
        if position < prefilled:
            assert self.prefilled is not None
            return self.prefilled.record(position)
        return self.appended[position - prefilled]

    def first_position_at_or_after(self, timestamp: float) -> int:
        if self.prefilled is not None:
            position = self.prefilled.first_position_at_or_after(timestamp)
            if position < self.prefilled.count:
                return position
        offset = bisect.bisect_left([r.arrival for r in self.appended], timestamp)
        return self.prefilled_count + offset

    def describe(self) -> dict[str, Any]:
        return {
            "ShardId": self.shard_id,
            "HashKeyRange": {"StartingHashKey": str(self.hash_range.start), "EndingHashKey": str(self.hash_range.end)},
            "SequenceNumberRange": {"StartingSequenceNumber": self.sequence_number(0)},
        }


@dataclass(slots=True)
class StreamCounters:
    records: int = 0
    bytes: int = 0
    failed: int = 0
    aggregated_records: int = 0
    #: Only counted when verifying: user records inside aggregates plus plain records.
    user_records: int = 0
    invalid_aggregates: int = 0
    misrouted_user_records: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "records": self.records, "bytes": self.bytes, "failed": self.failed,
            "aggregated_records": self.aggregated_records, "user_records": self.user_records,
            "invalid_aggregates": self.invalid_aggregates, "misrouted_user_records": self.misrouted_user_records,
        }


class Stream:
    def __init__(self, name: str, shard_count: int, region: str, max_record_size_kib: int) -> None:
        self.name = name
        self.arn = f"arn:aws:kinesis:{region}:{ACCOUNT_ID}:stream/{name}"
        self.created = time.time()
        self.max_record_size_kib = max_record_size_kib
        self.shards = [Shard(i, r) for i, r in enumerate(even_hash_ranges(shard_count))]
        self._by_id = {shard.shard_id: shard for shard in self.shards}
        self.ranges = ShardRanges((shard.shard_id, shard.hash_range) for shard in self.shards)
        self.counters = StreamCounters()
        #: partition key -> shard, cleared when full (clients with random keys would grow it forever)
        self.shard_of_key: dict[str, Shard] = {}

    def shard(self, shard_id: str) -> Shard:
        shard = self._by_id.get(shard_id)
        if shard is None:
            raise SinkError("ResourceNotFoundException", f"Shard {shard_id} in stream {self.name} under account "
                            f"{ACCOUNT_ID} does not exist")
        return shard

    def shard_for_key(self, hash_key: int) -> Shard:
        shard_id = self.ranges.shard_for(hash_key)
        assert shard_id is not None, "even_hash_ranges covers the whole hash-key space"
        return self._by_id[shard_id]

    def shard_for_partition_key(self, partition_key: str) -> Shard:
        shard = self.shard_of_key.get(partition_key)
        if shard is None:
            shard = self.shard_for_key(partition_key_hash(partition_key))
            if len(self.shard_of_key) >= ROUTING_CACHE_SIZE:
                self.shard_of_key.clear()
            self.shard_of_key[partition_key] = shard
        return shard

    def prefill(self, spec: PrefillSpec) -> None:
        if len(self.shards) != spec.shards:
            raise ValueError(f"stream {self.name} has {len(self.shards)} shards, the prefill asks for {spec.shards}")
        if any(shard.next_position for shard in self.shards):
            raise ValueError(f"stream {self.name} already has records; prefill an empty stream")
        keys = keys_by_shard(self, spec.users)
        now = time.time()
        for shard in self.shards:
            shard.prefilled = build_prefill(spec, shard, keys[shard.index], now)
            shard.next_position = shard.prefilled.count

    def reset_counters(self) -> None:
        self.counters = StreamCounters()
        for shard in self.shards:
            shard.counters = ShardCounters()

    def stats(self) -> dict[str, Any]:
        prefilled = [s.prefilled for s in self.shards if s.prefilled is not None]
        return {
            **self.counters.as_dict(),
            "prefilled_records": sum(p.count for p in prefilled),
            "prefilled_user_records": sum(p.user_records for p in prefilled),
            "shards": [{"shard_id": s.shard_id, **s.counters.as_dict()} for s in self.shards],
        }


@dataclass(frozen=True, slots=True)
class PrefillSpec:
    """A stream the sink creates full of records, for consumer benchmarks.

    ``records_per_shard`` counts user records.  With ``aggregate`` they are packed per shard into KPL
    aggregates of at most ``aggregation_max_size`` bytes; every sub-record's partition key hashes into
    its shard, so a KCL-style consumer keeps them all.  ``distinct_records`` and ``distinct_bytes``
    bound how many different Kinesis records a shard holds in memory; the rest are served again, each
    copy with its own sequence number.
    """

    stream: str
    shards: int = 4
    records_per_shard: int = 10_000
    record_size: int = 100
    aggregate: bool = False
    aggregation_max_size: int = 51_200
    users: int = 1000
    distinct_records: int = 4096
    distinct_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.shards < 1 or self.records_per_shard < 1 or self.distinct_records < 1:
            raise ValueError("prefill needs at least one shard, one record per shard and one distinct record")
        if self.record_size < 16:
            raise ValueError(f"prefill record_size must be at least 16 bytes, got {self.record_size}")

    @property
    def user_records(self) -> int:
        return self.shards * self.records_per_shard

    def to_arg(self) -> str:
        """The ``--prefill`` text :meth:`parse` reads back."""
        return ",".join(f"{name}={int(value) if isinstance(value, bool) else value}"
                        for name, value in ((n, getattr(self, n)) for n in self.__dataclass_fields__))

    @classmethod
    def parse(cls, text: str) -> PrefillSpec:
        """From ``stream=NAME,shards=4,records_per_shard=10000,record_size=100,aggregate=1``."""
        values: dict[str, Any] = {}
        fields = {name: kind for name, kind in cls.__annotations__.items()}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in fields:
                raise ValueError(f"bad prefill item {part!r}: expected key=value with key one of {sorted(fields)}")
            kind = fields[key]
            if kind == "bool":
                values[key] = value.lower() in ("1", "true", "yes", "on")
            elif kind == "int":
                values[key] = int(value)
            else:
                values[key] = value
        if "stream" not in values:
            raise ValueError(f"prefill {text!r} has no stream=NAME")
        return cls(**values)


def keys_by_shard(stream: Stream, users: int) -> list[list[str]]:
    """Partition keys from the user pool grouped by the shard they hash to; every shard gets at least one."""
    by_shard: list[list[str]] = [[] for _ in stream.shards]
    for j in range(users):
        key = f"user-{j:06d}"
        by_shard[stream.shard_for_key(effective_hash_key(key, None)).index].append(key)
    j = users
    while any(not keys for keys in by_shard):
        key = f"user-{j:06d}"
        keys = by_shard[stream.shard_for_key(effective_hash_key(key, None)).index]
        if not keys:
            keys.append(key)
        j += 1
    return by_shard


def render_tail(data: bytes | str, partition_key: str) -> str:
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    return f'"Data":"{encoded}","PartitionKey":{json.dumps(partition_key)}}}'


def _payload(shard_index: int, number: int, size: int) -> bytes:
    head = b"s%03d-r%010d-" % (shard_index, number)
    return head + b"x" * (size - len(head))


def build_prefill(spec: PrefillSpec, shard: Shard, keys: list[str], now: float) -> PrefilledRecords:
    if not spec.aggregate:
        distinct = min(spec.records_per_shard, spec.distinct_records, max(1, spec.distinct_bytes // spec.record_size))
        templates = []
        for n in range(distinct):
            data = _payload(shard.index, n, spec.record_size)
            templates.append(StoredRecord(render_tail(data, keys[n % len(keys)]), len(data), 1, 0.0))
        count = spec.records_per_shard
        return PrefilledRecords(templates, count, None, int(now * 1000) - count)

    def build_aggregate(first_number: int, limit: int) -> tuple[StoredRecord, int]:
        builder = aggregation.AggregateBuilder(max_size=spec.aggregation_max_size)
        number = first_number
        while number - first_number < limit:
            key = keys[number % len(keys)]
            if not builder.add(key, None, _payload(shard.index, number, spec.record_size)):
                break
            number += 1
        if len(builder) == 0:
            raise ValueError(f"record_size {spec.record_size} does not fit an aggregate of "
                             f"{spec.aggregation_max_size} bytes")
        blob = builder.build()
        return StoredRecord(render_tail(blob, keys[first_number % len(keys)]), len(blob), len(builder), 0.0), len(
            builder
        )

    first, per_aggregate = build_aggregate(0, spec.records_per_shard)
    full_aggregates, rest = divmod(spec.records_per_shard, per_aggregate)
    templates = [first]
    distinct = min(full_aggregates, spec.distinct_records, max(1, spec.distinct_bytes // first.data_bytes))
    for n in range(1, distinct):
        templates.append(build_aggregate(n * per_aggregate, per_aggregate)[0])
    remainder = build_aggregate(full_aggregates * per_aggregate, rest)[0] if rest else None
    count = full_aggregates + (1 if rest else 0)
    return PrefilledRecords(templates, count, remainder, int(now * 1000) - count)


@dataclass(slots=True)
class SinkSettings:
    """What the harness may change at run time through ``/_sink/config``."""

    #: Share of PutRecords / PutRecordBatch entries that fail (throttled), to exercise retry paths.
    fail_rate: float = 0.0
    fail_code: str = "ProvisionedThroughputExceededException"
    #: Added before every AWS response, to imitate a network round trip.
    latency_ms: float = 0.0
    verify: VerifyMode = "none"
    #: Verify each aggregate before answering its PutRecords, as the sink did before verification was
    #: deferred: only to reproduce how that slowed clients that wait for their answers (bench.crosscheck).
    verify_inline: bool = False
    #: Keep put records so GetRecords returns them (memory grows with every record: tests and short runs).
    retain: bool = False
    #: Create unknown streams and delivery streams on first use instead of answering ResourceNotFound.
    auto_create: bool = False
    default_shards: int = 4

    def __post_init__(self) -> None:
        self.validate()

    def update(self, changes: dict[str, Any]) -> None:
        for key in changes:
            if key not in self.__dataclass_fields__:
                raise ValueError(f"unknown sink setting {key!r}; known: {sorted(self.__dataclass_fields__)}")
        previous = self.as_dict()
        for key, value in changes.items():
            setattr(self, key, value)
        try:
            self.validate()
        except ValueError:
            for key, value in previous.items():
                setattr(self, key, value)
            raise

    def validate(self) -> None:
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be within [0, 1], got {self.fail_rate}")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, got {self.verify!r}")

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def encode_iterator(stream: str, shard_index: int, position: int) -> str:
    return base64.urlsafe_b64encode(f"sink1|{stream}|{shard_index}|{position}".encode()).decode()


def decode_iterator(iterator: str) -> tuple[str, int, int]:
    try:
        tag, stream, shard_text, position_text = base64.urlsafe_b64decode(iterator.encode()).decode().split("|")
        if tag != "sink1":
            raise ValueError(tag)
        return stream, int(shard_text), int(position_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise SinkError("InvalidArgumentException", f"invalid ShardIterator {iterator[:40]!r}") from None

