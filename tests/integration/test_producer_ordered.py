"""Ordered mode: the records of one shard reach it in the order they were put, even across retries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import kpl
from kpl.hashing import partition_key_hash
from tests.integration.test_producer_helpers import read_back, shard_ranges
from tests.support.localstack import FaultInjector


async def test_per_shard_order_survives_injected_failures(
    make_stream: Callable[..., str], kinesis: Any, fault_injection: FaultInjector
) -> None:
    stream = make_stream(shards=2)
    ranges = shard_ranges(kinesis, stream)
    records = [(f"user-{i % 41}", b"%08d" % i) for i in range(3000)]
    # Small aggregates make about 100 PutRecords requests, so that some certainly fail: with 30 % of
    # requests failing, the chance that none of them does is under 1e-9 (with 2 KiB aggregates, ~15
    # requests, it was about 1 %, and a run saw it).
    config = kpl.ProducerConfig(ordered_per_shard=True, record_max_buffered_time_ms=50, metrics_level="none",
                                aggregation_max_size=512)
    fault_injection.set(KINESIS_ERROR_PROBABILITY=0.3)
    async with kpl.AsyncProducer(config) as producer:
        futures = [await producer.put_record(stream, data, key) for key, data in records]
        await producer.flush_all()
    fault_injection.reset()
    results = [f.result() for f in futures]
    assert all(r.success for r in results)
    assert any(len(r.attempts) > 1 for r in results), "failures were injected, so some records were retried"

    expected: dict[str, list[bytes]] = defaultdict(list)
    for key, data in records:
        shard_id = next(s for s, r in ranges.items() if partition_key_hash(key) in r)
        expected[shard_id].append(data)
    landed, _ = read_back(kinesis, stream)  # in stream order: sequence number, then position in the aggregate
    found: dict[str, list[bytes]] = defaultdict(list)
    for record in landed:
        found[record.shard_id].append(record.data)
    assert found == expected
    # The results agree: sequence numbers never go backwards in put order, per shard.
    last: dict[str, int] = {}
    for result in results:
        assert result.shard_id is not None and result.sequence_number is not None
        sequence = int(result.sequence_number)
        assert sequence >= last.get(result.shard_id, 0)
        last[result.shard_id] = sequence
