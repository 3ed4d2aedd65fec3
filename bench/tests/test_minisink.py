"""The independent minimal sink over HTTP, as boto3 sees it: routing, paging, errors, every way of answering.

It runs as its own process on 127.0.0.1, as in a benchmark; these tests take a few seconds.  Routing
is checked against kpl.hashing, which the minisink does not use: two implementations that agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.harness import Variant, run_once
from bench.minisink import BEHAVIOURS
from bench.minisink_process import MiniSinkProcess
from bench.workload import Workload
from kpl.aws import ClientConfig, StaticCredentials, sync_client
from kpl.hashing import MAX_HASH_KEY, HashRange, ShardRanges, partition_key_hash
from tests.support.sink.wire import check_cbor_put_records_route_as_json


@pytest.fixture(scope="module")
def minisink() -> Iterator[MiniSinkProcess]:
    with MiniSinkProcess(streams={"s": 5, "one": 1}) as running:
        yield running


def config(sink: MiniSinkProcess, max_attempts: int = 3) -> ClientConfig:
    """The sink named explicitly, so that these tests need nothing of tests/conftest.py's AWS set-up."""
    return ClientConfig(endpoint_url=sink.url, region="us-east-1", max_attempts=max_attempts,
                        credentials=StaticCredentials("bench", "bench"))


def kinesis(sink: MiniSinkProcess) -> Any:
    return sync_client("kinesis", config(sink, max_attempts=1))


def shard_ranges(client: Any, stream: str) -> ShardRanges:
    shards = client.list_shards(StreamName=stream)["Shards"]
    return ShardRanges((shard["ShardId"], HashRange.from_shard(shard)) for shard in shards)


def test_shards_split_the_hash_space_evenly_and_list_in_pages(minisink: MiniSinkProcess) -> None:
    client = kinesis(minisink)
    ranges = shard_ranges(client, "s")
    assert ranges.holes() == []
    first = client.list_shards(StreamName="s", MaxResults=2)
    second = client.list_shards(NextToken=first["NextToken"], MaxResults=2)
    third = client.list_shards(NextToken=second["NextToken"], MaxResults=2)
    listed = [s["ShardId"] for page in (first, second, third) for s in page["Shards"]]
    assert listed == [f"shardId-{i:012d}" for i in range(5)] and "NextToken" not in third
    summary = client.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 5 and summary["StreamStatus"] == "ACTIVE"
    assert len(client.describe_stream(StreamName="s")["StreamDescription"]["Shards"]) == 5


def test_records_go_to_the_shard_whose_range_holds_their_hash_key(minisink: MiniSinkProcess) -> None:
    client = kinesis(minisink)
    ranges = shard_ranges(client, "s")
    keys = [f"user-{i}" for i in range(200)]
    response = client.put_records(StreamName="s", Records=[{"PartitionKey": k, "Data": b"x"} for k in keys])
    assert response["FailedRecordCount"] == 0
    assert [r["ShardId"] for r in response["Records"]] == [ranges.shard_for(partition_key_hash(k)) for k in keys]
    explicit = client.put_records(StreamName="s", Records=[
        {"PartitionKey": "k", "Data": b"x", "ExplicitHashKey": str(key)} for key in (0, MAX_HASH_KEY)])
    assert [r["ShardId"] for r in explicit["Records"]] == ["shardId-000000000000", "shardId-000000000004"]
    numbers = [int(r["SequenceNumber"]) for r in response["Records"] if r["ShardId"] == "shardId-000000000001"]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_errors_reach_boto3_as_its_exceptions(minisink: MiniSinkProcess) -> None:
    client = kinesis(minisink)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.put_records(StreamName="missing", Records=[{"PartitionKey": "k", "Data": b"x"}])
    with pytest.raises(client.exceptions.InvalidArgumentException):
        client.put_records(StreamName="s", Records=[
            {"PartitionKey": "k", "Data": b"x", "ExplicitHashKey": str(MAX_HASH_KEY + 1)}])
    with pytest.raises(client.exceptions.ClientError, match="UnknownOperation"):
        client.get_shard_iterator(StreamName="s", ShardId="shardId-000000000000", ShardIteratorType="LATEST")


def test_counters_and_cloudwatch(minisink: MiniSinkProcess) -> None:
    minisink.reset()
    client = kinesis(minisink)
    client.put_records(StreamName="one", Records=[{"PartitionKey": "k", "Data": b"12345"}] * 3)
    cloudwatch = sync_client("cloudwatch", config(minisink))
    cloudwatch.put_metric_data(Namespace="n", MetricData=[{"MetricName": "m", "Value": 1.0}])
    stats = minisink.stats()
    assert stats["streams"]["one"] == {"records": 3, "bytes": 3 * 6, "records_per_shard": [3]}
    assert stats["requests"]["PutRecords"] == 1 and stats["requests"]["cloudwatch.PutMetricData"] == 1


@pytest.mark.parametrize("behaviour", [b for b in BEHAVIOURS if b != "keep-alive"])
def test_every_way_of_answering_still_speaks_http_to_boto3(behaviour: str) -> None:
    with MiniSinkProcess(streams={"s": 2}, behaviour=behaviour) as sink:
        client = kinesis(sink)
        for _ in range(3):  # several requests: the client must cope with closed connections too
            response = client.put_records(StreamName="s", Records=[{"PartitionKey": "k", "Data": b"x"}] * 10)
            assert response["FailedRecordCount"] == 0 and len(response["Records"]) == 10
        assert sink.stats()["streams"]["s"]["records"] == 30


def test_the_harness_runs_a_peer_against_it() -> None:
    with MiniSinkProcess(streams={"bench": 4}) as sink:
        result = run_once(Variant("agg", "bench.peers:agg_boto3_producer",
                                  {"workload": Workload(records=3000, record_size=50).to_dict()}), sink)
    assert result.ok and result.measurement is not None and result.measurement.records == 3000
    assert result.sink["requests"] >= 2 and result.sink["records"] >= 4  # ListShards + PutRecords; 4 aggregates
    assert "setup" in result.measurement.phases and result.measurement.thread_cpu_s > 0


def test_put_records_in_cbor_route_and_answer_as_in_json() -> None:
    """As the project's sink does (tests/unit/test_support_sink_cbor.py): the same check, independent code."""
    with MiniSinkProcess(streams={"s": 4}) as sink:
        check_cbor_put_records_route_as_json(sink)
