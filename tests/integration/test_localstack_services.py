"""The services the toolkit depends on, exercised over HTTP against LocalStack."""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from kpl.aws import ClientConfig, async_client, sync_client
from tests.support.kinesis import read_all
from tests.support.waiting import wait_for


def test_kinesis_put_and_read_back(kinesis: Any, make_stream: Callable[..., str]) -> None:
    stream = make_stream(shards=2)
    sent = [f"record-{i}".encode() for i in range(50)]
    response = kinesis.put_records(
        StreamName=stream, Records=[{"Data": data, "PartitionKey": f"pk-{i}"} for i, data in enumerate(sent)]
    )
    assert response["FailedRecordCount"] == 0
    by_shard = read_all(kinesis, stream)
    received = sorted(r["Data"] for records in by_shard.values() for r in records)
    assert received == sorted(sent)
    assert len([s for s, records in by_shard.items() if records]) == 2, "both shards should have data"


async def test_async_client_reads_back(kinesis: Any, make_stream: Callable[..., str]) -> None:
    stream = make_stream(shards=1)
    async with async_client("kinesis") as client:
        put = await client.put_record(StreamName=stream, Data=b"async", PartitionKey="k")
        iterator = (await client.get_shard_iterator(
            StreamName=stream, ShardId=put["ShardId"], ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=put["SequenceNumber"],
        ))["ShardIterator"]
        records = (await client.get_records(ShardIterator=iterator))["Records"]
    assert [r["Data"] for r in records] == [b"async"]


def test_dynamodb_conditional_write_is_refused(aws_clients: Callable[[str], Any],
                                               make_table: Callable[..., str]) -> None:
    dynamodb = aws_clients("dynamodb")
    table = make_table()
    item = {"leaseKey": {"S": "shardId-000000000000"}, "leaseCounter": {"N": "1"}}
    dynamodb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(leaseKey)")
    with pytest.raises(ClientError) as refused:
        dynamodb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(leaseKey)")
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"

    # The optimistic-lock pattern the lease table relies on: update only if the counter is unchanged.
    dynamodb.update_item(
        TableName=table, Key={"leaseKey": item["leaseKey"]},
        UpdateExpression="SET leaseCounter = :next", ConditionExpression="leaseCounter = :seen",
        ExpressionAttributeValues={":next": {"N": "2"}, ":seen": {"N": "1"}},
    )
    with pytest.raises(ClientError) as stale:
        dynamodb.update_item(
            TableName=table, Key={"leaseKey": item["leaseKey"]},
            UpdateExpression="SET leaseCounter = :next", ConditionExpression="leaseCounter = :seen",
            ExpressionAttributeValues={":next": {"N": "2"}, ":seen": {"N": "1"}},
        )
    assert stale.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    stored = dynamodb.get_item(TableName=table, Key={"leaseKey": item["leaseKey"]}, ConsistentRead=True)
    assert stored["Item"]["leaseCounter"] == {"N": "2"}


def test_dynamodb_conditional_writes_are_atomic_under_concurrency(aws_clients: Callable[[str], Any],
                                                                 make_table: Callable[..., str]) -> None:
    """Workers racing to take one lease: exactly one conditional update wins each round, as in DynamoDB.

    (The plugin serialises moto's backend; without that, two racing takes could both succeed.)
    """
    dynamodb = aws_clients("dynamodb")
    table = make_table()
    key = {"leaseKey": {"S": "shardId-000000000000"}}
    dynamodb.put_item(TableName=table, Item={**key, "leaseCounter": {"N": "0"}})
    contenders, rounds = 16, 40  # without the plugin's lock, about 4 rounds in 100 had two winners
    clients = [sync_client("dynamodb", ClientConfig(read_timeout=60.0)) for _ in range(contenders)]
    barrier = threading.Barrier(contenders)

    def take(worker: int, counter: int) -> bool:
        barrier.wait(timeout=60)
        try:
            clients[worker].update_item(
                TableName=table, Key=key, UpdateExpression="SET leaseCounter = :next, leaseOwner = :me",
                ConditionExpression="leaseCounter = :seen",
                ExpressionAttributeValues={":next": {"N": str(counter + 1)}, ":seen": {"N": str(counter)},
                                           ":me": {"S": f"worker-{worker}"}},
            )
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
            return False
        return True

    with concurrent.futures.ThreadPoolExecutor(contenders) as pool:
        for counter in range(rounds):
            winners = sum(pool.map(take, range(contenders), [counter] * contenders))
            assert winners == 1, f"round {counter}: {winners} conditional updates succeeded"
    stored = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
    assert stored["Item"]["leaseCounter"] == {"N": str(rounds)}


def test_firehose_delivers_into_s3(aws_clients: Callable[[str], Any], unique_name: Callable[[str], str]) -> None:
    s3, firehose = aws_clients("s3"), aws_clients("firehose")
    bucket, delivery_stream = unique_name("bucket").lower(), unique_name("firehose")
    s3.create_bucket(Bucket=bucket)
    firehose.create_delivery_stream(
        DeliveryStreamName=delivery_stream,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::000000000000:role/firehose-delivery",
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "events/",
            "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 1},
        },
    )
    try:
        wait_for(
            lambda: firehose.describe_delivery_stream(DeliveryStreamName=delivery_stream)
            ["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "ACTIVE",
            30, message="delivery stream ACTIVE",
        )
        lines = [json.dumps({"n": i, "id": uuid.uuid4().hex}) + "\n" for i in range(20)]
        result = firehose.put_record_batch(
            DeliveryStreamName=delivery_stream, Records=[{"Data": line.encode()} for line in lines]
        )
        assert result["FailedPutCount"] == 0

        def delivered() -> str:
            objects = s3.list_objects_v2(Bucket=bucket, Prefix="events/").get("Contents", [])
            body = b"".join(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in objects)
            if body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
            text = body.decode()
            return text if all(line in text for line in lines) else ""

        wait_for(delivered, 90, interval=0.5, message="Firehose objects in S3")
    finally:
        firehose.delete_delivery_stream(DeliveryStreamName=delivery_stream)


def test_cloudwatch_put_metric(aws_clients: Callable[[str], Any], unique_name: Callable[[str], str]) -> None:
    cloudwatch = aws_clients("cloudwatch")
    namespace = unique_name("ns")
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[{"MetricName": "UserRecordsPut", "Value": 42.0, "Unit": "Count",
                     "Dimensions": [{"Name": "StreamName", "Value": "s"}]}],
    )
    metrics = wait_for(
        lambda: cloudwatch.list_metrics(Namespace=namespace)["Metrics"], 30, message="metric listed"
    )
    assert metrics[0]["MetricName"] == "UserRecordsPut"
    stats = cloudwatch.get_metric_statistics(
        Namespace=namespace, MetricName="UserRecordsPut", Dimensions=[{"Name": "StreamName", "Value": "s"}],
        StartTime=time.time() - 600, EndTime=time.time() + 60, Period=60, Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 42.0
