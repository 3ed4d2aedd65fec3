"""Starting, closing, bad input at the call, KPL properties files and CloudWatch metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import kpl
from tests.integration.test_producer_helpers import read_back
from tests.support.waiting import wait_for

CONFIG = kpl.ProducerConfig(metrics_level="none")


async def test_close_with_records_in_flight_delivers_and_resolves_every_future(
    make_stream: Callable[..., str], kinesis: Any
) -> None:
    stream = make_stream(shards=2)
    producer = kpl.AsyncProducer(CONFIG.with_(record_max_buffered_time_ms=5000))
    await producer.start()
    futures = [await producer.put_record(stream, f"r{i}".encode(), f"k{i % 10}") for i in range(500)]
    assert not any(f.done() for f in futures), "buffered: the deadline is 5 s away"
    await asyncio.gather(producer.close(), producer.close())  # the second waits for the first
    assert all(f.done() and f.result().success for f in futures)
    assert producer.outstanding_records == 0
    landed, _ = read_back(kinesis, stream)
    assert sorted(r.data for r in landed) == sorted(f"r{i}".encode() for i in range(500))
    await producer.close()  # idempotent


async def test_bad_input_fails_at_the_call(make_stream: Callable[..., str]) -> None:
    stream = make_stream(shards=1)
    async with kpl.AsyncProducer(CONFIG) as producer:
        with pytest.raises(TypeError, match="bytes-like"):
            await producer.put_record(stream, "text is not bytes", "k")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="partition_key"):
            await producer.put_record(stream, b"d", "")
        with pytest.raises(ValueError, match="partition_key"):
            producer.put_record_nowait(stream, b"d", "k" * 257)
        with pytest.raises(ValueError, match="explicit_hash_key"):
            await producer.put_record(stream, b"d", "k", explicit_hash_key=str(2**128))
        with pytest.raises(ValueError, match="maximum record size"):
            await producer.put_record(stream, b"x" * (1024 * 1024), "k")  # 1 MiB + the key
        with pytest.raises(ValueError, match="stream_name"):
            await producer.put_record("", b"d", "k")
        fits = await producer.put_record(stream, b"x" * (1024 * 1024 - 1), "k")
        assert (await fits).success, "partition key + data of exactly 1 MiB is allowed"
        assert producer.outstanding_records == 0
    with pytest.raises(kpl.ProducerClosedError):
        await producer.put_record(stream, b"d", "k")
    with pytest.raises(kpl.ProducerClosedError):
        producer.put_record_nowait(stream, b"d", "k")


async def test_put_before_start_and_buffer_full(make_stream: Callable[..., str]) -> None:
    stream = make_stream(shards=1)
    producer = kpl.AsyncProducer(CONFIG.with_(max_outstanding_records=3))
    with pytest.raises(kpl.ProducerNotStartedError):
        await producer.put_record(stream, b"d", "k")
    async with producer:
        futures = [producer.put_record_nowait(stream, b"d", "k") for _ in range(3)]
        with pytest.raises(kpl.BufferFullError, match="3 records"):
            producer.put_record_nowait(stream, b"d", "k")
        await producer.flush_all()
        assert all(f.result().success for f in futures)
        assert (await producer.put_record_nowait(stream, b"d", "k")).success


def test_a_kpl_properties_file_drives_the_producer(
    make_stream: Callable[..., str], kinesis: Any, aws_clients: Callable[[str], Any], tmp_path: Path,
    unique_name: Callable[[str], str],
) -> None:
    stream = make_stream(shards=1)
    namespace = unique_name("metrics")
    properties = tmp_path / "kpl.properties"
    properties.write_text(
        "# written for the Java KPL\n"
        "AggregationEnabled = true\nRecordMaxBufferedTime = 20\nRecordTtl = 60000\nMaxConnections = 4\n"
        "MaxUserRecordSize = 1048576;\nThreadingModel = POOLED\nThreadPoolSize = 16\n"
        f"MetricsLevel = summary\nMetricsGranularity = stream\nMetricsNamespace = {namespace}\n"
        "MetricsUploadDelay = 1000\n"
    )
    config = kpl.ProducerConfig.from_properties(properties)
    assert ("ThreadPoolSize", "16") in config.ignored_settings
    with kpl.Producer(config) as producer:
        futures = [producer.put_record(stream, f"p{i}".encode(), "key") for i in range(50)]
        producer.flush_all(timeout=60)
        assert all(f.result().success for f in futures)
        local = producer.metrics()
        assert {d["dimensions"].get("StreamName") for d in local["UserRecordsPut"]} == {None, stream}
        assert "RequestTime" not in local, "a detailed metric at level summary"
    landed, _ = read_back(kinesis, stream)
    assert len(landed) == 50 and len({r.sequence_number for r in landed}) == 1, "one aggregate"
    cloudwatch = aws_clients("cloudwatch")

    def uploaded() -> bool:
        names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=namespace)["Metrics"]}
        return {"UserRecordsPut", "KinesisRecordsPut"} <= names

    wait_for(uploaded, 60, message="metrics in CloudWatch")
