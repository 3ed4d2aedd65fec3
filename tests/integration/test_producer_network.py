"""A dead network: backpressure holds the producer at its bounds, memory stays flat, nothing is lost.

The producer reaches LocalStack through the fault proxy, configured the way a user points the KPL
at an endpoint (``KinesisEndpoint``), and the proxy blackholes the traffic: connections are
accepted and read, but nothing is answered, so every request ends in the producer's timeout.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import kpl
from tests.integration.test_producer_helpers import read_back
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import async_wait_for, wait_for

BOUND = 600


def through(proxy: FaultProxy, **settings: Any) -> kpl.ProducerConfig:
    base = kpl.ProducerConfig(kinesis_endpoint=proxy.url, record_max_buffered_time_ms=50, request_timeout_ms=1000,
                              metrics_level="none")
    return base.with_(**settings)


async def test_blackhole_holds_records_at_the_bound_then_delivers_everything(
    make_stream: Callable[..., str], kinesis: Any, fault_proxy: FaultProxy
) -> None:
    stream = make_stream(shards=2)
    config = through(fault_proxy, max_outstanding_records=BOUND, record_ttl_ms=600_000)
    sent: list[tuple[str, bytes]] = []
    futures: list[asyncio.Future[kpl.RecordResult]] = []
    async with kpl.AsyncProducer(config) as producer:
        # Warm up (the shard map is loaded) before the network goes away.
        assert (await (await producer.put_record(stream, b"warm-up", "w"))).success
        sent.append(("w", b"warm-up"))
        fault_proxy.blackhole()

        async def produce(count: int) -> None:
            for i in range(count):
                key, data = f"user-{i % 37}", f"event-{i}".encode() + b"." * 200
                futures.append(await producer.put_record(stream, data, key))
                sent.append((key, data))

        producer_task = asyncio.create_task(produce(5 * BOUND))
        await async_wait_for(lambda: producer.outstanding_records >= BOUND, 60, message="outstanding at the bound")
        # Later puts wait: the producer task is stuck in put_record, not adding records.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(producer_task), timeout=2.0)
        assert producer.outstanding_records == BOUND
        assert producer.oldest_record_age > 0

        # Memory stays flat while requests keep timing out and being retried.
        gc.collect()
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        connections = fault_proxy.stats.connections
        await async_wait_for(lambda: fault_proxy.stats.connections >= connections + 3, 60,
                             message="retries against the dead endpoint")
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert after - before < 5 * 1024 * 1024, f"memory grew by {after - before} bytes while blocked"
        assert producer.outstanding_records == BOUND and not producer_task.done()

        fault_proxy.heal()
        await asyncio.wait_for(producer_task, timeout=120)
        await producer.flush_all()
    results = [future.result() for future in futures]
    assert all(r.success for r in results)
    assert any(a.error_code == "RequestTimeout" for r in results for a in r.attempts), "timeouts are attempts"
    landed, _ = read_back(kinesis, stream)
    found = Counter((r.partition_key, r.data) for r in landed)
    # At least once: a request that timed out may still have been written before the blackhole.
    assert all(found[record] >= 1 for record in sent)
    assert set(found) == set(sent)


async def test_with_a_short_ttl_records_expire_with_their_attempts(
    make_stream: Callable[..., str], fault_proxy: FaultProxy
) -> None:
    stream = make_stream(shards=1)
    async with kpl.AsyncProducer(through(fault_proxy, record_ttl_ms=3000, request_timeout_ms=800)) as producer:
        assert (await (await producer.put_record(stream, b"warm-up", "w"))).success
        fault_proxy.blackhole()
        futures = [await producer.put_record(stream, f"r{i}".encode(), f"k{i % 5}") for i in range(50)]
        results = await asyncio.wait_for(asyncio.gather(*futures), timeout=60)
        assert producer.outstanding_records == 0
    for result in results:
        assert not result.success and result.retryable
        assert result.error is not None and result.error.code == "Expired"
        assert "RequestTimeout" in result.error.message
        assert result.attempts and all(a.error_code == "RequestTimeout" for a in result.attempts)
        assert result.record is not None and result.record.stream_name == stream


async def test_close_with_a_timeout_resolves_every_future_as_outcome_unknown_when_unanswered(
    make_stream: Callable[..., str], fault_proxy: FaultProxy
) -> None:
    stream = make_stream(shards=1)
    producer = kpl.AsyncProducer(through(fault_proxy, record_ttl_ms=600_000))
    await producer.start()
    assert (await (await producer.put_record(stream, b"warm-up", "w"))).success
    fault_proxy.blackhole()
    futures = [await producer.put_record(stream, f"r{i}".encode(), f"k{i}") for i in range(300)]
    await async_wait_for(lambda: fault_proxy.stats.dropped_bytes > 0, 30, message="a request in flight")
    await producer.close(timeout=1.0)
    assert all(f.done() for f in futures)
    # One aggregate carried them all, in a request that got no answer: nobody knows whether it was written.
    codes = Counter(f.result().error.code for f in futures)  # type: ignore[union-attr]
    assert codes == {"OutcomeUnknown": 300}
    assert not any(f.result().retryable for f in futures)
    assert all(f.result().attempts[-1].outcome_unknown for f in futures)
    with pytest.raises(kpl.ProducerClosedError):
        await producer.put_record(stream, b"late", "k")


def test_sync_producer_blocks_with_timeouts_then_delivers(
    make_stream: Callable[..., str], kinesis: Any, fault_proxy: FaultProxy
) -> None:
    stream = make_stream(shards=1)
    with kpl.Producer(through(fault_proxy, max_outstanding_records=20, record_ttl_ms=600_000)) as producer:
        assert producer.put_record(stream, b"warm-up", "w").result(timeout=60).success
        fault_proxy.blackhole()
        futures = [producer.put_record(stream, f"r{i}".encode(), f"k{i}", timeout=10) for i in range(20)]
        wait_for(lambda: producer.outstanding_records == 20, 30, message="records handed over")
        with pytest.raises(kpl.BackpressureTimeoutError):
            producer.put_record(stream, b"one too many", "k", timeout=0.5)
        with pytest.raises(kpl.FlushTimeoutError):
            producer.flush_all(timeout=0.5)
        assert not any(f.done() for f in futures)
        fault_proxy.heal()
        producer.flush_all(timeout=120)
        assert all(f.result(timeout=1).success for f in futures)
        # Room again: a blocking put goes straight through.
        assert producer.put_record(stream, b"after", "k", timeout=5).result(timeout=60).success
    landed, _ = read_back(kinesis, stream)
    assert {f"r{i}".encode() for i in range(20)} <= {r.data for r in landed}
