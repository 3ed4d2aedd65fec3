"""The KPL aggregation format: round trips, exact size accounting, limits, interop with aws-kinesis-agg."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from kpl.aggregation import (
    MAGIC,
    OVERHEAD,
    AggregateBuilder,
    AggregationFormatError,
    SubRecord,
    decode,
    encode,
    is_aggregated,
)
from kpl.hashing import MAX_HASH_KEY

partition_keys = st.text(min_size=1, max_size=256)
explicit_hash_keys = st.none() | st.integers(0, MAX_HASH_KEY).map(str)
payloads = st.binary(max_size=2048)
sub_records = st.builds(SubRecord, partition_keys, explicit_hash_keys, payloads)


@given(st.lists(sub_records, min_size=1, max_size=60))
def test_round_trip(records: list[SubRecord]) -> None:
    assert decode(encode(records)) == records


@given(st.lists(sub_records, min_size=1, max_size=60))
def test_size_is_exact_while_building(records: list[SubRecord]) -> None:
    builder = AggregateBuilder(max_size=2**40)
    for record in records:
        assert builder.add(*record)
        assert builder.size == len(builder.build())


@settings(max_examples=200)
@given(
    st.lists(sub_records, min_size=1, max_size=120),
    st.integers(min_value=64, max_value=8192),
    st.integers(min_value=1, max_value=50),
)
def test_limits_are_never_exceeded(records: list[SubRecord], max_size: int, max_count: int) -> None:
    builder = AggregateBuilder(max_size=max_size, max_count=max_count)
    accepted: list[SubRecord] = []
    for record in records:
        before = builder.size
        if builder.add(*record):
            accepted.append(record)
        else:
            assert builder.size == before, "a refused record must leave the builder unchanged"
    assert len(builder) <= max_count
    if accepted:
        blob = builder.build()
        assert len(blob) <= max_size
        assert decode(blob) == accepted


def test_wire_layout() -> None:
    blob = encode([SubRecord("pk", None, b"data")])
    assert blob[:4] == MAGIC
    assert blob[-16:] == hashlib.md5(blob[4:-16]).digest()
    assert len(blob) == OVERHEAD + len(blob[4:-16])
    # partition_key_table "pk", then Record{partition_key_index: 0, data: "data"}
    assert blob[4:-16] == b"\x0a\x02pk" + b"\x1a\x08" + b"\x08\x00" + b"\x1a\x04data"


def test_partition_and_hash_key_tables_are_deduplicated() -> None:
    records = [SubRecord("same", "42", b"a"), SubRecord("same", "42", b"b"), SubRecord("other", None, b"c")]
    blob = encode(records)
    assert blob.count(b"same") == 1 and blob.count(b"42") == 1
    assert decode(blob) == records


def test_invalid_aggregates_are_rejected() -> None:
    blob = encode([SubRecord("k", None, b"v"), SubRecord("k", None, b"w")])
    corrupted = blob[:-1] + bytes([blob[-1] ^ 0xFF])
    assert is_aggregated(blob) and is_aggregated(corrupted)
    for bad in (corrupted, b"plain data", MAGIC + b"\x00" * 16 + b"x"):
        try:
            decode(bad)
        except AggregationFormatError:
            continue
        raise AssertionError(f"{bad!r} decoded")


@settings(max_examples=50)
@given(st.lists(sub_records, min_size=2, max_size=40))
def test_aws_kinesis_agg_reads_what_we_write(records: list[SubRecord]) -> None:
    import base64

    import aws_kinesis_agg.aggregator  # noqa: F401  (messages_pb2 needs it imported first)
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    blob = encode(records)
    envelope = {"Data": blob, "PartitionKey": "a", "SequenceNumber": "1", "ApproximateArrivalTimestamp": 0}
    out = [r["kinesis"] for r in iter_deaggregate_records([envelope], data_format="Boto3")]
    assert [(r["partitionKey"], base64.b64decode(r["data"])) for r in out] == [(r[0], r[2]) for r in records]
    # aws-kinesis-agg reports explicit_hash_key_table[0] for sub-records that carry no explicit hash
    # key (it ignores field presence), so only the keys we did write are comparable.
    for theirs, ours in zip(out, records, strict=True):
        if ours.explicit_hash_key is not None:
            assert theirs["explicitHashKey"] == ours.explicit_hash_key


@settings(max_examples=50)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), payloads), min_size=1, max_size=40))
def test_we_read_what_aws_kinesis_agg_writes(records: list[tuple[str, bytes]]) -> None:
    from aws_kinesis_agg.aggregator import RecordAggregator

    aggregator = RecordAggregator()
    for partition_key, data in records:
        aggregator.add_user_record(partition_key.encode(), data)
    _, _, blob = aggregator.clear_and_get().get_contents()
    assert [(r.partition_key, r.data) for r in decode(blob)] == records


@given(st.lists(sub_records, min_size=1, max_size=60))
def test_encoding_does_not_depend_on_the_encoder_caches(records: list[SubRecord]) -> None:
    from kpl import aggregation

    warm = encode(records)
    aggregation._PK_ENTRIES.clear()
    aggregation._PLAIN_HEADERS.clear()
    assert encode(records) == warm
    assert decode(warm) == records


@settings(max_examples=100)
@given(st.lists(sub_records, min_size=1, max_size=80), st.integers(min_value=64, max_value=4096))
def test_shard_grouping_keeps_every_record_in_order_within_the_limit(records: list[SubRecord], max_size: int) -> None:
    from kpl.accumulator import regroup

    pending = [(r.partition_key, r.explicit_hash_key, r.data, 0, len(r.partition_key.encode()) + len(r.data), 0.0, ())
               for r in records]
    krs = regroup(pending, list(range(len(pending))), "shard", 1, aggregate=True, max_size=max_size,
                  max_count=2**32, deadline=0.0, ttl=30.0)
    assert [future for kr in krs for future in kr.futures] == list(range(len(records)))
    for kr in krs:
        data = kr.entry["Data"]
        if len(kr.records) > 1:
            assert len(data) <= max_size
            assert decode(data) == [SubRecord(*r[:3]) for r in kr.records]
        else:
            assert data == kr.records[0][2], "a record alone travels raw"


@settings(max_examples=200)
@given(
    st.lists(sub_records, min_size=1, max_size=120),
    st.integers(min_value=64, max_value=8192),
    st.integers(min_value=1, max_value=50),
)
def test_extend_takes_what_add_would_take(records: list[SubRecord], max_size: int, max_count: int) -> None:
    one_by_one = AggregateBuilder(max_size=max_size, max_count=max_count)
    taken = 0
    while taken < len(records) and one_by_one.add(*records[taken]):
        taken += 1
    in_one_call = AggregateBuilder(max_size=max_size, max_count=max_count)
    assert in_one_call.extend(records) == taken
    assert in_one_call.size == one_by_one.size and len(in_one_call) == len(one_by_one)
    if taken:
        assert in_one_call.build() == one_by_one.build()


def test_extend_survives_the_header_cache_being_cleared_mid_aggregate() -> None:
    from kpl import aggregation

    # Many distinct keys and lengths: the header cache fills and is cleared while this aggregate is built.
    records = [SubRecord(f"key-{i}", None, b"x" * (i % 97)) for i in range(40_000)]
    builder = AggregateBuilder(max_size=2**40)
    aggregation._PLAIN_HEADERS.clear()
    assert builder.extend(records) == len(records)
    assert decode(builder.build()) == records
