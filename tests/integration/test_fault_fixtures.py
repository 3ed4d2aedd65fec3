"""The fault fixtures themselves: each fault must really happen, or the tests built on them prove nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from kpl.aws import ClientConfig, async_client, sync_client
from tests.support.faultproxy import FaultProxy
from tests.support.localstack import FaultInjector


def _no_retry(endpoint: str, read_timeout: float = 1.0) -> ClientConfig:
    return ClientConfig(endpoint_url=endpoint, max_attempts=1, connect_timeout=1.0, read_timeout=read_timeout)


def test_injected_kinesis_throttling_shows_as_failed_entries(
    kinesis: Any, make_stream: Callable[..., str], fault_injection: FaultInjector
) -> None:
    stream = make_stream()
    records = [{"Data": b"x", "PartitionKey": str(i)} for i in range(10)]
    fault_injection.set(KINESIS_ERROR_PROBABILITY=1.0)
    throttled = kinesis.put_records(StreamName=stream, Records=records)
    assert throttled["FailedRecordCount"] > 0
    assert {r.get("ErrorCode") for r in throttled["Records"]} == {"ProvisionedThroughputExceededException"}
    fault_injection.reset()
    assert kinesis.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0


def test_injected_dynamodb_errors(
    aws_clients: Callable[[str], Any], make_table: Callable[..., str], fault_injection: FaultInjector
) -> None:
    table = make_table()
    dynamodb = sync_client("dynamodb", ClientConfig(max_attempts=1))
    key = {"leaseKey": {"S": "k"}}
    fault_injection.set(DYNAMODB_WRITE_ERROR_PROBABILITY=1.0)
    with pytest.raises(ClientError) as write_error:
        dynamodb.put_item(TableName=table, Item=key)
    assert write_error.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    dynamodb.get_item(TableName=table, Key=key)  # reads unaffected by the write switch
    fault_injection.set(DYNAMODB_WRITE_ERROR_PROBABILITY=0.0, DYNAMODB_READ_ERROR_PROBABILITY=1.0)
    dynamodb.put_item(TableName=table, Item=key)
    with pytest.raises(ClientError) as read_error:
        dynamodb.get_item(TableName=table, Key=key)
    assert read_error.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    fault_injection.reset()
    assert dynamodb.get_item(TableName=table, Key=key)["Item"] == key


def test_proxy_passes_traffic_and_adds_latency(fault_proxy: FaultProxy, make_stream: Callable[..., str]) -> None:
    stream = make_stream()
    client = sync_client("kinesis", _no_retry(fault_proxy.url, read_timeout=10))
    client.describe_stream_summary(StreamName=stream)
    fault_proxy.latency(0.3)
    started = time.monotonic()
    client.describe_stream_summary(StreamName=stream)
    assert time.monotonic() - started >= 0.3
    assert fault_proxy.stats.bytes_down > 0


def test_proxy_blackhole_makes_a_call_time_out(fault_proxy: FaultProxy, make_stream: Callable[..., str]) -> None:
    stream = make_stream()
    client = sync_client("kinesis", _no_retry(fault_proxy.url))
    client.describe_stream_summary(StreamName=stream)  # a pooled connection exists before the fault
    fault_proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client.describe_stream_summary(StreamName=stream)
    assert time.monotonic() - started >= 0.9
    fault_proxy.heal()
    assert client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamName"] == stream


async def test_proxy_blackhole_times_out_async_clients(
    fault_proxy: FaultProxy, make_stream: Callable[..., str]
) -> None:
    stream = make_stream()
    fault_proxy.blackhole()
    async with async_client("kinesis", _no_retry(fault_proxy.url)) as client:
        with pytest.raises(ReadTimeoutError):
            await client.describe_stream_summary(StreamName=stream)


def test_proxy_reset_makes_a_call_fail_with_a_connection_error(
    fault_proxy: FaultProxy, make_stream: Callable[..., str]
) -> None:
    stream = make_stream()
    client = sync_client("kinesis", _no_retry(fault_proxy.url))
    client.describe_stream_summary(StreamName=stream)
    fault_proxy.reset()
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        client.describe_stream_summary(StreamName=stream)
    assert fault_proxy.stats.resets >= 1
    fault_proxy.heal()
    client.describe_stream_summary(StreamName=stream)
