"""Streams with a raised maximum record size (MaxRecordSizeInKiB, up to 10 MiB).

kinesis-mock does not implement MaxRecordSizeInKiB, so this runs against the local sink
(``tests/support/sink/``), which takes it in CreateStream and reports it in DescribeStreamSummary as the
service does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import kpl
from kpl.aws import ClientConfig, sync_client
from tests.support.sink import SinkProcess

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def sink() -> Iterator[SinkProcess]:
    with SinkProcess(streams={"default": 1}, verify="route", retain=True) as process:
        sync_client("kinesis", ClientConfig(endpoint_url=process.url)).create_stream(
            StreamName="large", ShardCount=1, MaxRecordSizeInKiB=4096)
        yield process


def config(sink: SinkProcess) -> kpl.ProducerConfig:
    return kpl.ProducerConfig(kinesis_endpoint=sink.url, metrics_level="none", record_max_buffered_time_ms=20)


async def test_the_stream_limit_applies_to_each_stream(sink: SinkProcess) -> None:
    async with kpl.AsyncProducer(config(sink)) as producer:
        # The first put of a record over 1 MiB waits for the stream's limit, then goes through.
        large = await producer.put_record("large", b"L" * (3 * MIB), "k")
        small = await producer.put_record("large", b"s" * 100, "k")
        results = [await large, await small]
        assert all(r.success for r in results)
        with pytest.raises(ValueError, match="4194304-byte maximum record size of stream large"):
            await producer.put_record("large", b"x" * (4 * MIB), "k")
        with pytest.raises(ValueError, match="1048576-byte maximum record size of stream default"):
            await producer.put_record("default", b"x" * (2 * MIB), "k")
        with pytest.raises(ValueError, match="4194304"):
            producer.put_record_nowait("large", b"x" * (11 * MIB), "k")
    stats = sink.stats()["streams"]["large"]
    assert stats["records"] == 2, "the large record travelled alone, outside any aggregate"


def test_sync_producer_waits_for_the_limit_too(sink: SinkProcess) -> None:
    with kpl.Producer(config(sink), max_user_record_size=2 * MIB) as producer:
        assert producer.put_record("large", b"L" * (2 * MIB - 1), "k").result(timeout=60).success
        with pytest.raises(ValueError, match="2097152-byte"):
            producer.put_record("large", b"L" * (2 * MIB), "k")
