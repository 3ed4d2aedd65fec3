"""Service errors: throttled entries under fault injection, fatal errors, a stream that does not exist."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import kpl
from tests.integration.test_producer_helpers import assert_results_match_stream, read_back
from tests.support.localstack import FaultInjector

CONFIG = kpl.ProducerConfig(record_max_buffered_time_ms=50, metrics_level="detailed")


async def test_with_30_percent_of_entries_failing_nothing_is_lost_or_duplicated(
    make_stream: Callable[..., str], kinesis: Any, fault_injection: FaultInjector
) -> None:
    stream = make_stream(shards=2)
    records = [(f"user-{i % 200}", f"event-{i}".encode()) for i in range(4000)]
    plain = [(f"plain-{i}", f"single-{i}".encode()) for i in range(300)]
    # LocalStack fails that share of PutRecords *requests* (every entry with throughput exceeded);
    # small requests make sure there are dozens of them.
    fault_injection.set(KINESIS_ERROR_PROBABILITY=0.3)
    async with kpl.AsyncProducer(CONFIG.with_(aggregation_max_size=4096, collection_max_count=4)) as aggregating, \
            kpl.AsyncProducer(CONFIG.with_(aggregation_enabled=False, collection_max_count=10)) as unaggregated:
        futures = [await aggregating.put_record(stream, data, key) for key, data in records]
        futures += [await unaggregated.put_record(stream, data, key) for key, data in plain]
        await aggregating.flush_all()
        await unaggregated.flush_all()
        metrics = unaggregated.metrics()  # 30 requests or more: some certainly failed
    fault_injection.reset()
    results = [future.result() for future in futures]
    sent = records + plain

    assert all(r.success for r in results), [r for r in results if not r.success][:3]
    landed, _ = read_back(kinesis, stream)
    # Exactly one copy of every record: throttled entries were not written, so their retries
    # cannot duplicate, and nothing was dropped.
    assert Counter((r.partition_key, r.data) for r in landed) == Counter(sent)
    assert_results_match_stream(sent, results, landed)
    retried = [r for r in results if len(r.attempts) > 1]
    assert retried, "with 30% of entries failing, some records must have been retried"
    for result in retried:
        assert [a.error_code for a in result.attempts[:-1]] == \
            ["ProvisionedThroughputExceededException"] * (len(result.attempts) - 1)
        assert result.attempts[-1].success and all(a.duration >= 0 and a.delay >= 0 for a in result.attempts)
    errors = {d["dimensions"].get("ErrorCode") for d in metrics["ErrorsByCode"]}
    assert errors == {"ProvisionedThroughputExceededException"}


async def test_fail_if_throttled_fails_throttled_records_at_once(
    make_stream: Callable[..., str], fault_injection: FaultInjector
) -> None:
    stream = make_stream(shards=1)
    fault_injection.set(KINESIS_ERROR_PROBABILITY=0.5)
    config = CONFIG.with_(aggregation_enabled=False, fail_if_throttled=True, collection_max_count=3)
    async with kpl.AsyncProducer(config) as producer:
        futures = [await producer.put_record(stream, f"r{i}".encode(), f"k{i}") for i in range(60)]
        await producer.flush_all()
    results = [f.result() for f in futures]
    failed = [r for r in results if not r.success]
    assert failed and len(failed) < len(results)
    for result in failed:
        assert result.error is not None and result.error.code == "ProvisionedThroughputExceededException"
        assert result.retryable and len(result.attempts) == 1
        assert result.record is not None and result.record.stream_name == stream


async def test_an_unknown_stream_fails_fast_with_resource_not_found() -> None:
    async with kpl.AsyncProducer(CONFIG) as producer:
        started = time.monotonic()
        first = await (await producer.put_record("kt-no-such-stream", b"x", "k"))
        again = await (await producer.put_record("kt-no-such-stream", b"y", "k"))
        elapsed = time.monotonic() - started
        for result in (first, again):
            assert not result.success and not result.retryable
            assert result.error is not None and result.error.code == "ResourceNotFoundException"
            assert result.record is not None and result.record.data in (b"x", b"y")
        # The TTL is 30 s; fast means well under it (generous for a loaded machine).
        assert elapsed < CONFIG.record_ttl / 2
        assert producer.outstanding_records == 0


async def test_a_stream_deleted_while_producing_fails_its_records(
    make_stream: Callable[..., str], kinesis: Any
) -> None:
    stream = make_stream(shards=1)
    async with kpl.AsyncProducer(CONFIG) as producer:
        assert (await (await producer.put_record(stream, b"before", "k"))).success
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        futures = [await producer.put_record(stream, f"after-{i}".encode(), "k") for i in range(20)]
        await producer.flush_all()
    codes = {f.result().error.code for f in futures if not f.result().success}  # type: ignore[union-attr]
    assert codes <= {"ResourceNotFoundException", "ResourceInUseException"}
