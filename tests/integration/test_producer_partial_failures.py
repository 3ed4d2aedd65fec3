"""Partial PutRecords failures: single entries throttled inside a successful response.

LocalStack's fault injection fails whole requests; the service more often fails single entries of a
request that otherwise succeeds.  The local sink (``tests/support/sink/``, a real HTTP server in a
second process that routes entries to shards like the service) fails a share of the *entries* of
every request, and keeps what it accepted, so these tests read the stream back from it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

import kpl
from kpl.aws import ClientConfig, sync_client
from tests.integration.test_producer_helpers import read_back
from tests.support.sink import SinkProcess

STREAM = "partial"


@pytest.fixture(scope="module")
def sink() -> Iterator[SinkProcess]:
    with SinkProcess(streams={STREAM: 4}, verify="route", fail_rate=0.3, retain=True) as process:
        yield process


def through(sink: SinkProcess, **settings: Any) -> kpl.ProducerConfig:
    return kpl.ProducerConfig(kinesis_endpoint=sink.url, metrics_level="none", record_max_buffered_time_ms=20,
                              **settings)


def sink_client(sink: SinkProcess) -> Any:
    return sync_client("kinesis", ClientConfig(endpoint_url=sink.url))


async def test_failed_entries_are_retried_alone_and_land_exactly_once(sink: SinkProcess) -> None:
    sink.reset()
    records = [(f"user-{i % 300}", f"event-{i}".encode()) for i in range(20_000)]
    async with kpl.AsyncProducer(through(sink, aggregation_max_size=2048)) as producer:
        futures = [producer.put_record_nowait(STREAM, data, key) for key, data in records]
        await producer.flush_all()
    results = [f.result() for f in futures]
    assert all(r.success for r in results)
    stats = sink.stats()["streams"][STREAM]
    assert stats["failed"] > 0, "the sink failed some entries"
    assert stats["user_records"] == len(records), "each record accepted exactly once"
    assert stats["misrouted_user_records"] == 0 and stats["invalid_aggregates"] == 0
    codes = Counter(a.error_code for r in results for a in r.attempts if a.error_code)
    assert set(codes) == {"ProvisionedThroughputExceededException"}


async def test_ordered_mode_keeps_shard_order_through_entry_failures(sink: SinkProcess) -> None:
    stream = "ordered"
    sink.create_stream(stream, 4)
    records = [(f"key-{i % 64}", b"%06d" % i) for i in range(4000)]
    async with kpl.AsyncProducer(through(sink, ordered_per_shard=True, aggregation_max_size=1024)) as producer:
        futures = [await producer.put_record(stream, data, key) for key, data in records]
        await producer.flush_all()
    results = [f.result() for f in futures]
    assert all(r.success for r in results)
    assert any(len(r.attempts) > 1 for r in results)
    landed, _ = read_back(sink_client(sink), stream)
    found: dict[str, list[bytes]] = defaultdict(list)
    for record in landed:
        found[record.shard_id].append(record.data)
    expected: dict[str, list[bytes]] = defaultdict(list)
    for (_, data), result in zip(records, results, strict=True):
        assert result.shard_id is not None
        expected[result.shard_id].append(data)
    assert found == expected
