"""PutRecords in CBOR (the default) and in JSON against LocalStack: delivered, read back, errors read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kpl
from tests.integration.test_producer_helpers import assert_results_match_stream, read_back
from tests.support.localstack import FaultInjector

CONFIG = kpl.ProducerConfig(cbor_protocol=True, record_max_buffered_time_ms=50, metrics_level="none")


def test_cbor_is_the_default() -> None:
    assert kpl.ProducerConfig().cbor_protocol is True
    assert kpl.ProducerConfig.from_kpl_settings({"CborProtocol": "false"}).cbor_protocol is False


async def test_records_put_over_cbor_land_as_put(make_stream: Callable[..., str], kinesis: Any) -> None:
    stream = make_stream(shards=2)
    aggregated = [(f"user-{i % 50}", bytes([i % 256]) * (i % 300)) for i in range(600)]
    plain = [(f"plain-{i}", f"\x00\xff raw bytes {i}".encode()) for i in range(40)]
    async with kpl.AsyncProducer(CONFIG) as producer, \
            kpl.AsyncProducer(CONFIG.with_(aggregation_enabled=False)) as unaggregated:
        futures = await producer.put_records(stream, [(data, key) for key, data in aggregated])
        futures += [await unaggregated.put_record(stream, data, key) for key, data in plain]
        await producer.flush_all()
        await unaggregated.flush_all()
    landed, _ = read_back(kinesis, stream)
    assert_results_match_stream(aggregated + plain, [f.result() for f in futures], landed)
    assert sorted((r.partition_key, r.data) for r in landed) == sorted(aggregated + plain)


async def test_errors_in_cbor_are_read_and_retried(
    make_stream: Callable[..., str], kinesis: Any, fault_injection: FaultInjector
) -> None:
    stream = make_stream(shards=1)
    records = [(f"user-{i % 20}", f"event-{i}".encode()) for i in range(400)]
    fault_injection.set(KINESIS_ERROR_PROBABILITY=0.5)
    async with kpl.AsyncProducer(CONFIG.with_(aggregation_max_size=512, collection_max_count=2)) as producer:
        futures = await producer.put_records(stream, [(data, key) for key, data in records])
        await producer.flush_all()
    fault_injection.reset()
    results = [f.result() for f in futures]
    assert all(r.success for r in results), [r for r in results if not r.success][:2]
    codes = {a.error_code for r in results for a in r.attempts if a.error_code}
    assert codes, "some requests failed and were retried"
    assert "ProvisionedThroughputExceededException" in codes, codes
    landed, _ = read_back(kinesis, stream)
    assert sorted((r.partition_key, r.data) for r in landed) == sorted(records)


async def test_records_put_over_json_land_as_put(make_stream: Callable[..., str], kinesis: Any) -> None:
    stream = make_stream(shards=2)
    records = [(f"user-{i % 50}", bytes([i % 256]) * (i % 300)) for i in range(300)]
    async with kpl.AsyncProducer(CONFIG.with_(cbor_protocol=False)) as producer:
        futures = await producer.put_records(stream, [(data, key) for key, data in records])
        await producer.flush_all()
    landed, _ = read_back(kinesis, stream)
    assert_results_match_stream(records, [f.result() for f in futures], landed)
    assert sorted((r.partition_key, r.data) for r in landed) == sorted(records)
