"""The sink over HTTP as real clients see it (boto3, aiobotocore).

The sink runs as its own process on 127.0.0.1, as tests and benchmarks run it; these tests take a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kpl import aggregation
from kpl.aws import ClientConfig, async_client, sync_client
from tests.support.sink import PrefillSpec, SinkProcess

AGGREGATED = PrefillSpec(stream="reads", shards=2, records_per_shard=700, aggregate=True, aggregation_max_size=4096)


@pytest.fixture(scope="module")
def sink() -> Iterator[SinkProcess]:
    with SinkProcess(streams={"s": 4}, retain=True, prefill=[AGGREGATED]) as running:
        yield running


def config(sink: SinkProcess) -> ClientConfig:
    return ClientConfig(endpoint_url=sink.url, region="us-east-1", max_attempts=1)


def client(sink: SinkProcess, service: str) -> Any:
    return sync_client(service, config(sink))


def test_boto3_put_records_then_get_records_round_trip(sink: SinkProcess) -> None:
    kinesis = client(sink, "kinesis")
    sent = {f"user-{i}": b"event-%d" % i for i in range(50)}
    response = kinesis.put_records(StreamName="s", Records=[{"PartitionKey": k, "Data": v} for k, v in sent.items()])
    assert response["FailedRecordCount"] == 0
    received: dict[str, bytes] = {}
    for shard in kinesis.list_shards(StreamName="s")["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName="s", ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        assert page["MillisBehindLatest"] == 0
        received.update({r["PartitionKey"]: r["Data"] for r in page["Records"]})
        routed = [r["SequenceNumber"] for r in response["Records"] if r["ShardId"] == shard["ShardId"]]
        assert [r["SequenceNumber"] for r in page["Records"]] == routed
    assert received == sent


def test_service_errors_reach_clients_as_their_exceptions(sink: SinkProcess) -> None:
    kinesis = client(sink, "kinesis")
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.put_records(StreamName="missing", Records=[{"PartitionKey": "k", "Data": b"x"}])
    with pytest.raises(kinesis.exceptions.InvalidArgumentException):
        kinesis.put_record(StreamName="s", PartitionKey="k", Data=b"x", ExplicitHashKey="12x")


def test_firehose_batches_and_cloudwatch_metrics_are_accepted_and_counted(sink: SinkProcess) -> None:
    firehose = client(sink, "firehose")
    response = firehose.put_record_batch(DeliveryStreamName="bench", Records=[{"Data": b"line\n"}] * 3)
    assert response["FailedPutCount"] == 0 and len(response["RequestResponses"]) == 3
    client(sink, "cloudwatch").put_metric_data(Namespace="bench", MetricData=[{"MetricName": "m", "Value": 1.0}])
    stats = sink.stats()
    assert stats["delivery_streams"]["bench"]["records"] >= 3
    assert stats["requests"]["cloudwatch.PutMetricData"] >= 1


def test_aggregated_prefill_reads_back_through_boto3(sink: SinkProcess) -> None:
    kinesis = client(sink, "kinesis")
    users = 0
    for shard in kinesis.list_shards(StreamName="reads")["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName="reads", ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while True:
            page = kinesis.get_records(ShardIterator=iterator, Limit=50)
            users += sum(len(aggregation.decode(r["Data"])) for r in page["Records"])
            iterator = page["NextShardIterator"]
            if not page["Records"]:
                break
    assert users == AGGREGATED.user_records


async def test_aiobotocore_clients_work_too(sink: SinkProcess) -> None:
    async with async_client("kinesis", config(sink)) as kinesis:
        response = await kinesis.put_records(StreamName="s", Records=[{"PartitionKey": "a", "Data": b"async"}])
        summary = await kinesis.describe_stream_summary(StreamName="s")
    assert response["Records"][0]["ShardId"].startswith("shardId-")
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 4
