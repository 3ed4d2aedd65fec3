"""Records put through the producer come back from GetRecords exactly as they went in."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import kpl
from tests.integration.test_producer_helpers import (
    assert_results_match_stream,
    deaggregate_with_aws_kinesis_agg,
    read_back,
    shard_ranges,
)

FAST = kpl.ProducerConfig(record_max_buffered_time_ms=50, metrics_level="summary", metrics_upload_delay_ms=1000)


async def put_all(producer: kpl.AsyncProducer, stream: str, records: list[tuple[str, bytes]],
                  explicit: dict[int, str] | None = None) -> list[kpl.RecordResult]:
    futures = [await producer.put_record(stream, data, key, (explicit or {}).get(i))
               for i, (key, data) in enumerate(records)]
    await producer.flush_all()
    return [future.result() for future in futures]


async def test_round_trip_through_both_deaggregators(make_stream: Callable[..., str], kinesis: Any) -> None:
    first, second = make_stream(shards=3, purpose="a"), make_stream(shards=2, purpose="b")
    records_a = [(f"user-{i % 97}", f"page-view-{i}".encode() + os.urandom(i % 40)) for i in range(3000)]
    records_b = [(f"device-{i % 13}", b"\x00\xff" * (i % 300)) for i in range(1500)]
    # Explicit hash keys steer some records; they must survive aggregation too.
    explicit = {i: str(i * (2**128 // 3000)) for i in range(0, 3000, 7)}
    async with kpl.AsyncProducer(FAST) as producer:  # one producer, two streams
        results_a, results_b = await asyncio.gather(put_all(producer, first, records_a, explicit),
                                                    put_all(producer, second, records_b))
        assert producer.outstanding_records == 0 and producer.oldest_record_age == 0.0
        metrics = producer.metrics()
    for stream, sent, results in ((first, records_a, results_a), (second, records_b, results_b)):
        landed, raw = read_back(kinesis, stream)
        assert Counter((r.partition_key, r.data) for r in landed) == Counter(sent)
        assert Counter(deaggregate_with_aws_kinesis_agg(raw)) == Counter(sent)
        assert_results_match_stream(sent, results, landed)
        assert len(raw) < len(sent) / 5, "small records travel aggregated"
        ranges = shard_ranges(kinesis, stream)
        assert all(r.hash_key in ranges[r.shard_id] for r in landed), "aggregates are per shard"
        assert all(len(r.attempts) >= 1 and r.attempts[-1].success for r in results)
    landed_a, _ = read_back(kinesis, first)
    steered = {(r.partition_key, r.data): r.explicit_hash_key for r in landed_a}
    assert all(steered[records_a[i]] == key for i, key in explicit.items())
    put = {tuple(sorted(d["dimensions"].items())): d for d in metrics["UserRecordsPut"]}
    assert put[()]["sum"] == len(records_a) + len(records_b)


async def test_round_trip_without_aggregation(make_stream: Callable[..., str], kinesis: Any) -> None:
    stream = make_stream(shards=2)
    records = [(f"k{i}", f"plain-{i}".encode()) for i in range(300)]
    async with kpl.AsyncProducer(FAST.with_(aggregation_enabled=False)) as producer:
        results = await put_all(producer, stream, records)
    landed, raw = read_back(kinesis, stream)
    assert len(raw) == len(records), "one Kinesis record per user record"
    assert Counter((r.partition_key, r.data) for r in landed) == Counter(records)
    assert_results_match_stream(records, results, landed)


def test_sync_producer_round_trip(make_stream: Callable[..., str], kinesis: Any) -> None:
    stream = make_stream(shards=2)
    records = [(f"user-{i % 50}", f"sync-{i}".encode()) for i in range(1000)]
    with kpl.Producer(FAST) as producer:
        futures = [producer.put_record(stream, data, key) for key, data in records]
        producer.flush_all(timeout=120)
        results = [future.result(timeout=1) for future in futures]
    landed, _ = read_back(kinesis, stream)
    assert Counter((r.partition_key, r.data) for r in landed) == Counter(records)
    assert_results_match_stream(records, results, landed)


async def test_a_stream_named_by_its_arn(make_stream: Callable[..., str], kinesis: Any) -> None:
    """docs/kpl.md: a stream name may also be a stream ARN; every call about the stream (ListShards, the
    stream summary, PutRecords) names it by StreamARN, and the results still route by shard."""
    stream = make_stream(shards=2)
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    records = [(f"k{i % 20}", f"by-arn-{i}".encode()) for i in range(200)]
    async with kpl.AsyncProducer(FAST) as producer:
        results = await put_all(producer, arn, records)
    assert all(result.success for result in results), [r.error for r in results if not r.success][:3]
    landed, _ = read_back(kinesis, stream)
    assert Counter((r.partition_key, r.data) for r in landed) == Counter(records)
    assert_results_match_stream(records, results, landed)
