"""The benchmark sink's model: routing, sequence numbers, limits, failures, pre-filled reads, verification."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest

from kpl import aggregation
from kpl.hashing import MAX_HASH_KEY, ShardRanges, partition_key_hash
from tests.support.sink.kinesis import KinesisService
from tests.support.sink.model import (
    PrefillSpec,
    SinkError,
    SinkSettings,
    b64_decoded_length,
    decode_iterator,
    even_hash_ranges,
)


def entry(key: str, data: bytes = b"payload", explicit_hash_key: str | None = None) -> dict[str, str]:
    result = {"PartitionKey": key, "Data": base64.b64encode(data).decode()}
    if explicit_hash_key is not None:
        result["ExplicitHashKey"] = explicit_hash_key
    return result


def put(service: KinesisService, entries: list[dict[str, str]], stream: str = "s") -> dict[str, Any]:
    response: dict[str, Any] = json.loads(service.put_records({"StreamName": stream, "Records": entries}))
    return response


def service_with_stream(shards: int = 4, **settings: Any) -> KinesisService:
    service = KinesisService(SinkSettings(**settings))
    service.create_stream("s", shards)
    return service


@pytest.mark.parametrize("count", [1, 3, 4, 7])
def test_even_hash_ranges_partition_the_hash_space(count: int) -> None:
    ranges = even_hash_ranges(count)
    assert ShardRanges((str(i), r) for i, r in enumerate(ranges)).holes() == []
    assert ranges[0].start == 0 and ranges[-1].end == MAX_HASH_KEY
    assert all(a.end + 1 == b.start for a, b in itertools.pairwise(ranges))


def test_base64_length_without_decoding() -> None:
    for size in range(0, 9):
        assert b64_decoded_length(base64.b64encode(b"x" * size).decode()) == size


def test_records_are_routed_by_md5_of_the_partition_key_or_the_explicit_hash_key() -> None:
    service = service_with_stream(4)
    ranges = even_hash_ranges(4)
    keys = [f"user-{i}" for i in range(40)]
    response = put(service, [entry(key) for key in keys] + [entry("any", explicit_hash_key=str(MAX_HASH_KEY))])
    assert response["FailedRecordCount"] == 0
    for key, result in zip(keys, response["Records"], strict=False):
        owner = next(i for i, r in enumerate(ranges) if partition_key_hash(key) in r)
        assert result["ShardId"] == f"shardId-{owner:012d}"
    assert response["Records"][-1]["ShardId"] == "shardId-000000000003"


def test_sequence_numbers_increase_within_a_shard_and_are_unique() -> None:
    service = service_with_stream(2)
    results = put(service, [entry(f"k{i}") for i in range(100)])["Records"]
    results += put(service, [entry(f"k{i}") for i in range(100)])["Records"]
    numbers = [int(r["SequenceNumber"]) for r in results]
    assert len(set(numbers)) == len(numbers)
    assert all(len(r["SequenceNumber"]) == 56 for r in results)
    for shard in ("shardId-000000000000", "shardId-000000000001"):
        in_shard = [int(r["SequenceNumber"]) for r in results if r["ShardId"] == shard]
        assert in_shard == sorted(in_shard)
    stats = service.stats()["s"]
    assert stats["records"] == 200 and sum(s["records"] for s in stats["shards"]) == 200


def test_injected_failures_are_per_entry_throttling() -> None:
    service = service_with_stream(2, fail_rate=1.0)
    response = put(service, [entry("a"), entry("b")])
    assert response["FailedRecordCount"] == 2
    assert {r["ErrorCode"] for r in response["Records"]} == {"ProvisionedThroughputExceededException"}
    assert service.stats()["s"]["failed"] == 2 and service.stats()["s"]["records"] == 0
    service.settings.update({"fail_rate": 0.5})
    failed = put(service, [entry(f"k{i}") for i in range(400)])["FailedRecordCount"]
    assert 120 < failed < 280


@pytest.mark.parametrize(
    ("entries", "code", "text"),
    [
        ([entry("k")] * 501, "ValidationException", "less than or equal to 500"),
        ([entry("k" * 257)], "ValidationException", "1 to 256"),
        ([{"Data": "eA=="}], "ValidationException", "PartitionKey are required"),
        ([entry("k", explicit_hash_key=str(MAX_HASH_KEY + 1))], "InvalidArgumentException", "ExplicitHashKey"),
        ([entry("k", b"x" * (1024 * 1024))], "ValidationException", "maximum record size"),
        ([entry("k", b"x" * 1000 * 1024)] * 11, "InvalidArgumentException", "exceeds"),
    ],
)
def test_bad_requests_fail_whole_with_the_service_error(entries: list[dict[str, str]], code: str, text: str) -> None:
    service = service_with_stream(1)
    with pytest.raises(SinkError) as raised:
        put(service, entries)
    assert raised.value.code == code and text in raised.value.message
    assert service.stats()["s"]["records"] == 0


def test_unknown_stream_is_not_found_unless_auto_created() -> None:
    service = service_with_stream(1)
    with pytest.raises(SinkError, match="ResourceNotFoundException"):
        put(service, [entry("k")], stream="missing")
    service.settings.update({"auto_create": True, "default_shards": 3})
    put(service, [entry("k")], stream="missing")
    assert len(service.streams["missing"].shards) == 3


def test_list_shards_pages_by_next_token_alone() -> None:
    service = service_with_stream(2500)
    first = service.list_shards({"StreamName": "s"})
    assert len(first["Shards"]) == 1000
    with pytest.raises(SinkError, match="InvalidArgumentException"):
        service.list_shards({"StreamName": "s", "NextToken": first["NextToken"]})
    second = service.list_shards({"NextToken": first["NextToken"], "MaxResults": 2000})
    third = service.list_shards({"NextToken": second["NextToken"]})
    assert "NextToken" not in third
    ids = [s["ShardId"] for page in (first, second, third) for s in page["Shards"]]
    assert ids == [f"shardId-{i:012d}" for i in range(2500)]
    after = service.list_shards({"StreamName": "s", "ShardFilter": {"Type": "AFTER_SHARD_ID",
                                                                    "ShardId": "shardId-000000002497"}})
    assert [s["ShardId"] for s in after["Shards"]] == ["shardId-000000002498", "shardId-000000002499"]


def test_describe_stream_summary_reports_the_record_size_limit() -> None:
    service = KinesisService(SinkSettings())
    service.create_stream_operation({"StreamName": "big", "ShardCount": 2, "MaxRecordSizeInKiB": 2048})
    summary = service.describe_stream_summary({"StreamName": "big"})["StreamDescriptionSummary"]
    assert summary["MaxRecordSizeInKiB"] == 2048 and summary["OpenShardCount"] == 2
    put(service, [entry("k", b"x" * 1500 * 1024)], stream="big")


def read_all(service: KinesisService, stream: str, shard_id: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    iterator = service.get_shard_iterator({"StreamName": stream, "ShardId": shard_id,
                                           "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
    records: list[dict[str, Any]] = []
    calls = 0
    while True:
        response = json.loads(service.get_records({"ShardIterator": iterator, "Limit": limit}))
        calls += 1
        records += response["Records"]
        iterator = response["NextShardIterator"]
        if not response["Records"]:
            assert response["MillisBehindLatest"] == 0
            return records, calls
        assert response["MillisBehindLatest"] > 0 or decode_iterator(iterator)[2] == len(records)


def test_prefilled_plain_stream_serves_every_record_once_in_order() -> None:
    service = KinesisService(SinkSettings())
    spec = PrefillSpec(stream="r", shards=2, records_per_shard=2500, record_size=64, distinct_records=100)
    service.prefill(spec)
    shard = service.streams["r"].shards[1]
    records, calls = read_all(service, "r", shard.shard_id, limit=1000)
    assert len(records) == 2500 and calls == 4
    numbers = [int(r["SequenceNumber"]) for r in records]
    assert numbers == sorted(numbers) and len(set(numbers)) == 2500
    assert all(partition_key_hash(r["PartitionKey"]) in shard.hash_range for r in records)
    assert all(len(base64.b64decode(r["Data"])) == 64 for r in records)
    assert service.stats()["r"]["prefilled_user_records"] == spec.user_records == 5000


def test_prefilled_aggregated_stream_holds_exact_user_records_in_their_shard() -> None:
    service = KinesisService(SinkSettings())
    service.prefill(PrefillSpec(stream="r", shards=3, records_per_shard=5003, record_size=100, aggregate=True,
                                distinct_records=3))
    stream = service.streams["r"]
    for shard in stream.shards:
        records, _ = read_all(service, "r", shard.shard_id, limit=7)
        users = [u for r in records for u in aggregation.decode(base64.b64decode(r["Data"]))]
        assert len(users) == 5003
        assert all(len(base64.b64decode(r["Data"])) <= 51_200 for r in records)
        assert all(partition_key_hash(u.partition_key) in shard.hash_range for u in users)
    assert service.stats()["r"]["prefilled_user_records"] == 3 * 5003


def test_iterators_start_at_and_after_sequence_numbers_and_latest() -> None:
    service = KinesisService(SinkSettings(retain=True))
    service.create_stream("s", 1)
    results = put(service, [entry(f"k{i}", b"%d" % i) for i in range(10)])["Records"]

    def first_data(kind: str, **extra: Any) -> list[bytes]:
        iterator = service.get_shard_iterator({"StreamName": "s", "ShardId": "shardId-000000000000",
                                               "ShardIteratorType": kind, **extra})["ShardIterator"]
        return [base64.b64decode(r["Data"]) for r in json.loads(service.get_records(
            {"ShardIterator": iterator}))["Records"]]

    assert first_data("AT_SEQUENCE_NUMBER", StartingSequenceNumber=results[3]["SequenceNumber"])[0] == b"3"
    assert first_data("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=results[3]["SequenceNumber"])[0] == b"4"
    assert first_data("LATEST") == []
    assert len(first_data("AT_TIMESTAMP", Timestamp=0)) == 10
    with pytest.raises(SinkError, match="InvalidArgumentException"):
        service.get_records({"ShardIterator": "not-an-iterator"})


def test_verify_counts_user_records_and_sub_records_in_the_wrong_shard() -> None:
    service = service_with_stream(4, verify="route")
    ranges = ShardRanges((str(i), r) for i, r in enumerate(even_hash_ranges(4)))
    keys = [f"user-{i}" for i in range(50)]
    same_shard = [k for k in keys if ranges.shard_for(partition_key_hash(k)) == "0"]
    good = aggregation.encode([aggregation.SubRecord(k, None, b"d") for k in same_shard])
    mixed = aggregation.encode([aggregation.SubRecord(k, None, b"d") for k in keys[:10]])
    wrong = sum(1 for k in keys[:10] if ranges.shard_for(partition_key_hash(k)) != ranges.shard_for(
        partition_key_hash(keys[0])))
    corrupt = aggregation.MAGIC + b"\x0a\x01" + b"0" * 30
    put(service, [{"PartitionKey": same_shard[0], "Data": base64.b64encode(good).decode()},
                  {"PartitionKey": keys[0], "Data": base64.b64encode(mixed).decode()},
                  {"PartitionKey": "x", "Data": base64.b64encode(corrupt).decode()},
                  entry("plain")])
    stats = service.stats()["s"]
    assert stats["aggregated_records"] == 3
    assert stats["user_records"] == len(same_shard) + 10 + 1 + 1
    assert stats["misrouted_user_records"] == wrong > 0
    assert stats["invalid_aggregates"] == 1


def test_prefill_spec_round_trips_through_its_command_line_form() -> None:
    spec = PrefillSpec(stream="r", shards=3, records_per_shard=10, aggregate=True)
    assert PrefillSpec.parse(spec.to_arg()) == spec
    with pytest.raises(ValueError, match="shards"):
        PrefillSpec.parse("stream=r,shardz=3")


def test_records_put_after_a_prefill_are_read_after_it_when_retained() -> None:
    service = KinesisService(SinkSettings(retain=True))
    service.prefill(PrefillSpec(stream="s", shards=1, records_per_shard=5, record_size=20))
    put(service, [entry(f"k{i}", b"new-%d" % i) for i in range(3)])
    records, _ = read_all(service, "s", "shardId-000000000000", limit=4)
    assert [base64.b64decode(r["Data"]) for r in records[5:]] == [b"new-0", b"new-1", b"new-2"]
    numbers = [int(r["SequenceNumber"]) for r in records]
    assert len(records) == 8 and numbers == sorted(numbers)
    arrivals = [r["ApproximateArrivalTimestamp"] for r in records]
    assert arrivals == sorted(arrivals)


def test_verification_waits_until_the_counters_are_read() -> None:
    service = service_with_stream(4, verify="route")
    keys = [f"user-{i}" for i in range(30)]
    aggregate = aggregation.encode([aggregation.SubRecord(k, None, b"d") for k in keys])
    put(service, [{"PartitionKey": keys[0], "Data": base64.b64encode(aggregate).decode()}, entry("plain")])
    counters = service.streams["s"].counters
    assert counters.user_records == 1 and counters.aggregated_records == 1  # the aggregate is not decoded yet
    stats = service.stats()["s"]
    assert stats["user_records"] == 31 and stats["misrouted_user_records"] > 0


def test_verify_inline_decodes_before_answering_and_a_long_backlog_is_worked_off() -> None:
    aggregate = base64.b64encode(aggregation.encode([aggregation.SubRecord("k", None, b"d")] * 5)).decode()
    inline = service_with_stream(1, verify="count", verify_inline=True)
    put(inline, [{"PartitionKey": "k", "Data": aggregate}])
    assert inline.streams["s"].counters.user_records == 5
    bounded = service_with_stream(1, verify="count")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tests.support.sink.kinesis.VERIFY_BACKLOG_BYTES", len(aggregate))
        put(bounded, [{"PartitionKey": "k", "Data": aggregate}] * 3)
    assert bounded.streams["s"].counters.user_records == 10  # two verified to get back under the bound
    assert bounded.stats()["s"]["user_records"] == 15


def test_retained_aggregates_are_read_with_their_user_record_counts() -> None:
    service = service_with_stream(1, verify="count", retain=True)
    aggregate = base64.b64encode(aggregation.encode([aggregation.SubRecord("k", None, b"d")] * 4)).decode()
    put(service, [{"PartitionKey": "k", "Data": aggregate}])
    records, _ = read_all(service, "s", "shardId-000000000000", limit=10)
    assert len(records) == 1
    assert service.stats()["s"]["shards"][0]["served_user_records"] == 4
