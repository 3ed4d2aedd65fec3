"""The KPL aggregated-record wire format: encoding (producer side) and decoding (consumer side).

    MAGIC (F3 89 9A C2) | AggregatedRecord (protobuf) | MD5(protobuf) (16 bytes)

    message AggregatedRecord {
      repeated string partition_key_table     = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records                 = 3;
    }
    message Record {
      required uint64 partition_key_index     = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes  data                    = 3;
      repeated Tag    tags                    = 4;   // never written by the KPL
    }

The encoder writes protobuf bytes directly: building message objects costs more than the whole rest of
the producer's per-record work, and the format is four field types.  Its size accounting is exact and
O(1) per record, so an aggregate is never built past its limit.  The decoder parses with the upb
protobuf runtime (C speed) through a descriptor built here on first use, so no generated module is
needed and the producer does not import the runtime at all.

As in the KPL, the partition-key and explicit-hash-key tables are de-duplicated, and a sub-record gets
an explicit-hash-key index only when the user gave an explicit hash key.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from hashlib import md5
from typing import Any, NamedTuple

from kpl.errors import KinesisToolkitError

__all__ = [
    "MAGIC",
    "AggregateBuilder",
    "AggregationFormatError",
    "ParsedAggregate",
    "aggregated_record_message",
    "decode",
    "is_aggregated",
    "parse"
]

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_SIZE = 16
#: Magic + MD5 trailer: the bytes an aggregate carries beyond its protobuf body.
OVERHEAD = len(MAGIC) + DIGEST_SIZE

_TAG_PK_TABLE = b"\x0a"  # field 1, length-delimited
_TAG_EHK_TABLE = b"\x12"  # field 2, length-delimited


def varint_size(value: int) -> int:
    """Bytes a protobuf varint of ``value`` (>= 0) occupies."""
    return max(1, (value.bit_length() + 6) // 7)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [_encode_varint(i) for i in range(1 << 14)]
_VARINT_SIZES = [len(v) for v in _SMALL_VARINTS]


def encode_varint(value: int) -> bytes:
    return _SMALL_VARINTS[value] if value < 16384 else _encode_varint(value)


class SubRecord(NamedTuple):
    """One user record inside an aggregate."""

    partition_key: str
    explicit_hash_key: str | None
    data: bytes


def record_entry_size(partition_key_index: int, explicit_hash_key_index: int | None, data_length: int) -> int:
    """Bytes one Record entry adds to the AggregatedRecord (tag + length prefix + body)."""
    inner = 1 + varint_size(partition_key_index) + 1 + varint_size(data_length) + data_length
    if explicit_hash_key_index is not None:
        inner += 1 + varint_size(explicit_hash_key_index)
    return 1 + varint_size(inner) + inner


def table_entry_size(key_length: int) -> int:
    return 1 + varint_size(key_length) + key_length


class AggregateBuilder:
    """Accumulates user records into one aggregated record, with exact size accounting.

    ``size`` is always the exact byte length ``build()`` would return (magic, protobuf body, MD5).
    ``add`` refuses (returns False, changing nothing) a record that would take the aggregate past
    ``max_size`` or ``max_count``, so a built aggregate never exceeds its limits.
    """

    __slots__ = ("_count", "_ehk_index", "_ehk_table", "_parts", "_pk_index", "_pk_table", "max_count",
                 "max_size", "size")

    def __init__(self, max_size: int = 51200, max_count: int = 2**32 - 1) -> None:
        self.max_size = max_size
        self.max_count = max_count
        self._pk_index: dict[str, int] = {}
        #: Table entries, encoded whole (tag, length, key), in index order.
        self._pk_table: list[bytes] = []
        self._ehk_index: dict[str, int] = {}
        self._ehk_table: list[bytes] = []
        #: Record entries: header, data, header, data, ...
        self._parts: list[bytes] = []
        self._count = 0
        #: Exact length of ``build()``'s result.
        self.size = OVERHEAD

    def __len__(self) -> int:
        return self._count

    def add(self, partition_key: str, explicit_hash_key: str | None, data: bytes) -> bool:
        """Append a record if it fits within the limits; False (and no change) when it does not."""
        return self.extend(((partition_key, explicit_hash_key, data),)) == 1

    def extend(self, records: Sequence[Sequence[Any]], start: int = 0, stop: int | None = None) -> int:
        """Append ``records[start:stop]`` in order while they fit; the index of the first that did not.

        Each record is a sequence that begins with (partition key, explicit hash key, data), as a
        :class:`SubRecord` or the producer's pending records do.  The same as calling :meth:`add` for
        each, in one loop with its state in locals: the producer adds every user record this way.
        """
        if stop is None:
            stop = len(records)
        # The count limit, as a bound on the loop rather than a test per record.
        stop = min(stop, start + self.max_count - self._count)
        pk_index_of = self._pk_index
        pk_table = self._pk_table
        append = self._parts.append
        # Bytes left rather than size so far: one int operation per record (each makes an int object).
        room = self.max_size - self.size
        headers = _PLAIN_HEADERS.by_index
        end = start
        for record in records[start:stop]:
            partition_key = record[0]
            data = record[2]
            if record[1] is not None:  # the rare record with an explicit hash key: the general way
                self.size = self.max_size - room
                if not self._add_with_hash_key(partition_key, record[1], data):
                    break
                room = self.max_size - self.size
                end += 1
                continue
            data_length = len(data)
            pk_index = pk_index_of.get(partition_key)
            if pk_index is not None:  # the common case: a key already in this aggregate's table
                header, entry_size = headers[pk_index].get(data_length) or _PLAIN_HEADERS.add(pk_index, data_length)
                if entry_size > room:
                    break
            else:
                pk_index = len(pk_table)
                table_entry = _PK_ENTRIES.get(partition_key) or _PK_ENTRIES.add(partition_key)
                header, entry_size = headers[pk_index].get(data_length) or _PLAIN_HEADERS.add(pk_index, data_length)
                entry_size += len(table_entry)
                if entry_size > room:
                    break
                pk_index_of[partition_key] = pk_index
                pk_table.append(table_entry)
            room -= entry_size
            append(header)
            append(data)
            end += 1
        self.size = self.max_size - room
        self._count += end - start
        return end

    def _add_with_hash_key(self, partition_key: str, explicit_hash_key: str, data: bytes) -> bool:
        """Append one record with an explicit hash key if it fits (``extend`` counts it)."""
        added = 0
        pk_index = self._pk_index.get(partition_key)
        pk_entry = None
        if pk_index is None:
            pk_index = len(self._pk_table)
            pk_entry = _PK_ENTRIES.get(partition_key) or _PK_ENTRIES.add(partition_key)
            added += len(pk_entry)
        ehk_index = self._ehk_index.get(explicit_hash_key)
        ehk_entry = None
        if ehk_index is None:
            ehk_index = len(self._ehk_table)
            raw = explicit_hash_key.encode()
            ehk_entry = _TAG_EHK_TABLE + encode_varint(len(raw)) + raw
            added += len(ehk_entry)
        data_length = len(data)
        fields = b"\x08" + encode_varint(pk_index) + b"\x10" + encode_varint(ehk_index) + b"\x1a" + \
            encode_varint(data_length)
        header = b"\x1a" + encode_varint(len(fields) + data_length) + fields
        new_size = self.size + added + len(header) + data_length
        if new_size > self.max_size:
            return False
        if pk_entry is not None:
            self._pk_index[partition_key] = pk_index
            self._pk_table.append(pk_entry)
        if ehk_entry is not None:
            self._ehk_index[explicit_hash_key] = ehk_index
            self._ehk_table.append(ehk_entry)
        self._parts.append(header)
        self._parts.append(data)
        self.size = new_size
        return True

    def build(self) -> bytes:
        """The aggregated record: magic, protobuf body and MD5 of the body."""
        # Two copies of the payload bytes, not four: one join, then the digest appended.
        blob = b"".join([MAGIC, *self._pk_table, *self._ehk_table, *self._parts])
        return blob + md5(memoryview(blob)[len(MAGIC):]).digest()


class _TableEntries(dict[str, bytes]):
    """Encoded partition-key table entries by key: applications reuse partition keys across aggregates."""

    def add(self, partition_key: str) -> bytes:
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        raw = partition_key.encode()
        entry = self[partition_key] = _TAG_PK_TABLE + encode_varint(len(raw)) + raw
        return entry


class _PlainHeaders:
    """Record-entry headers without an explicit hash key, by partition-key index and data length:
    (encoded header, header + data length).  Aggregates of similar records repeat the same few.

    A list by index of dicts by length, so that a lookup computes no int (each would be an object).
    """

    def __init__(self) -> None:
        self.by_index: list[dict[int, tuple[bytes, int]]] = [{} for _ in range(256)]
        self._entries = 0

    def clear(self) -> None:
        # In place: an encoder loop in progress holds ``by_index`` and must keep seeing every index.
        for headers in self.by_index:
            headers.clear()
        self._entries = 0

    def add(self, pk_index: int, data_length: int) -> tuple[bytes, int]:
        if self._entries >= _CACHE_LIMIT:
            self.clear()
        by_index = self.by_index
        while len(by_index) <= pk_index + 1:  # one more, so that the next new key has its dict too
            by_index.extend({} for _ in range(len(by_index)))
        fields = b"\x08" + encode_varint(pk_index) + b"\x1a" + encode_varint(data_length)
        header = b"\x1a" + encode_varint(len(fields) + data_length) + fields
        cached = by_index[pk_index][data_length] = (header, len(header) + data_length)
        self._entries += 1
        return cached


_CACHE_LIMIT = 1 << 14
_PK_ENTRIES = _TableEntries()
_PLAIN_HEADERS = _PlainHeaders()


def encode(records: list[SubRecord] | list[tuple[str, str | None, bytes]]) -> bytes:
    """Encode user records into one aggregated record (no size limit applied)."""
    builder = AggregateBuilder(max_size=2**63)
    for partition_key, explicit_hash_key, data in records:
        builder.add(partition_key, explicit_hash_key, data)
    return builder.build()


# --- decoding -----------------------------------------------------------------------------------


@functools.cache
def aggregated_record_message() -> Any:
    """The AggregatedRecord message class, built on first use: importing the protobuf runtime costs
    about 100 ms of CPU, which a producer (it only encodes) should not pay at import."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(
        name="kinesis_toolkit_aggregation.proto", package="kinesis_toolkit.aggregation", syntax="proto2"
    )
    label_required = descriptor_pb2.FieldDescriptorProto.LABEL_REQUIRED
    label_optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    label_repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    t = descriptor_pb2.FieldDescriptorProto
    tag = proto.message_type.add(name="Tag")
    tag.field.add(name="key", number=1, label=label_required, type=t.TYPE_STRING)
    tag.field.add(name="value", number=2, label=label_optional, type=t.TYPE_STRING)
    record = proto.message_type.add(name="Record")
    record.field.add(name="partition_key_index", number=1, label=label_required, type=t.TYPE_UINT64)
    record.field.add(name="explicit_hash_key_index", number=2, label=label_optional, type=t.TYPE_UINT64)
    record.field.add(name="data", number=3, label=label_required, type=t.TYPE_BYTES)
    record.field.add(name="tags", number=4, label=label_repeated, type=t.TYPE_MESSAGE,
                     type_name=".kinesis_toolkit.aggregation.Tag")
    aggregated = proto.message_type.add(name="AggregatedRecord")
    aggregated.field.add(name="partition_key_table", number=1, label=label_repeated, type=t.TYPE_STRING)
    aggregated.field.add(name="explicit_hash_key_table", number=2, label=label_repeated, type=t.TYPE_STRING)
    aggregated.field.add(name="records", number=3, label=label_repeated, type=t.TYPE_MESSAGE,
                         type_name=".kinesis_toolkit.aggregation.Record")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("kinesis_toolkit.aggregation.AggregatedRecord")
    )



class AggregationFormatError(KinesisToolkitError, ValueError):
    """Data is not a valid aggregate: raised by ``parse`` and ``decode`` when it lacks the aggregation
    magic, or has it with a bad MD5 trailer, a body that is not the protobuf, or an index past its table.

    The KCL rule is to treat such a record as a plain one (kcl's deaggregation does).  Also a ``ValueError``.
    """


def is_aggregated(data: bytes) -> bool:
    """True when ``data`` starts with the aggregation magic and is long enough to carry a digest."""
    return len(data) > OVERHEAD and data[:4] == MAGIC


class ParsedAggregate(NamedTuple):
    """An aggregate's tables and its Record messages (``partition_key_index``, ``data``, and
    ``explicit_hash_key_index`` where ``HasField`` says so), for consumers that build their own record
    objects without a SubRecord in between.  Table indexes are not checked: an index past its table
    raises IndexError when used, and means the aggregate is invalid."""

    partition_keys: list[str]
    explicit_hash_keys: list[str]
    records: Any


def parse(data: bytes) -> ParsedAggregate:
    """Check the magic and the MD5 trailer and parse the body; AggregationFormatError when invalid."""
    if not is_aggregated(data):
        raise AggregationFormatError("data does not start with the KPL aggregation magic")
    body = data[4:-DIGEST_SIZE]
    if md5(body).digest() != data[-DIGEST_SIZE:]:
        raise AggregationFormatError("aggregated record's MD5 trailer does not match its body")
    message = aggregated_record_message()()
    try:
        message.ParseFromString(body)
    except Exception as exc:  # upb raises google.protobuf.message.DecodeError
        raise AggregationFormatError(f"aggregated record body is not a valid protobuf: {exc}") from exc
    return ParsedAggregate(list(message.partition_key_table), list(message.explicit_hash_key_table), message.records)


def decode(data: bytes) -> list[SubRecord]:
    """The user records of an aggregate.  Raises AggregationFormatError when it is not a valid one.

    Callers that must treat invalid aggregates as plain records (the KCL rule) check ``is_aggregated``
    and catch the error.
    """
    pk_table, ehk_table, records = parse(data)
    make = SubRecord._make
    try:
        if not ehk_table:
            return [make((pk_table[r.partition_key_index], None, r.data)) for r in records]
        return [
            make((
                pk_table[r.partition_key_index],
                ehk_table[r.explicit_hash_key_index] if r.HasField("explicit_hash_key_index") else None,
                r.data,
            ))
            for r in records
        ]
    except IndexError as exc:
        raise AggregationFormatError("aggregated record refers to a missing table entry") from exc
