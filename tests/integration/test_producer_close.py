"""close(timeout) tells the truth: what it reports as not written is not in the stream, and it keeps its time.

When the timeout runs out, records that never left the producer fail with ``ProducerClosed`` (safe to
send again); requests in flight are awaited up to RequestTimeout and their records get the outcome
that came; a record whose request got no answer fails with ``OutcomeUnknown`` (it may be in the
stream).  Against a dead endpoint close returns within ``timeout`` + RequestTimeout, the final
CloudWatch upload included, leaving no client session open.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import kpl
from tests.integration.test_producer_helpers import read_back
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import async_wait_for, wait_for


def one_request_at_a_time(proxy: FaultProxy, **settings: Any) -> kpl.ProducerConfig:
    """Small aggregates, one per request, one request at a time: at any moment most records wait."""
    base = kpl.ProducerConfig(kinesis_endpoint=proxy.url, max_connections=1, collection_max_count=1,
                              aggregation_max_size=512, record_max_buffered_time_ms=20, record_ttl_ms=600_000,
                              metrics_level="none")
    return base.with_(**settings)


async def test_records_in_flight_at_the_timeout_get_their_real_outcome_and_failed_ones_are_not_in_the_stream(
    make_stream: Callable[..., str], kinesis: Any, fault_proxy: FaultProxy
) -> None:
    stream = make_stream(shards=1)
    producer = kpl.AsyncProducer(one_request_at_a_time(fault_proxy, request_timeout_ms=8000))
    await producer.start()
    assert (await (await producer.put_record(stream, b"warm-up", "w"))).success
    fault_proxy.latency(1.0)  # every request takes 2 s or more: it is in flight when close gives up
    sent = {f"record-{i}".encode() + b"." * 30: f"key-{i % 7}" for i in range(120)}
    futures = {data: await producer.put_record(stream, data, key) for data, key in sent.items()}
    await async_wait_for(lambda: fault_proxy.stats.bytes_up > 0 or fault_proxy.open_connections > 0, 10,
                         message="a request on its way")
    started = time.monotonic()
    await producer.close(timeout=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 + 8 + 1, elapsed
    results = {data: future.result() for data, future in futures.items()}
    codes = Counter("delivered" if r.success else r.error.code for r in results.values())  # type: ignore[union-attr]
    assert set(codes) == {"delivered", "ProducerClosed"}, codes
    assert all(r.retryable for r in results.values() if not r.success)
    fault_proxy.latency(0.0)
    landed = Counter(r.data for r in read_back(kinesis, stream)[0])
    for data, result in results.items():
        if result.success:
            assert landed[data] == 1, (data, result)
        else:
            assert landed[data] == 0, f"reported {result.error} but found in the stream: {data!r}"


async def test_close_against_a_dead_endpoint_keeps_its_time_and_says_what_is_unknown(
    make_stream: Callable[..., str], fault_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    stream = make_stream(shards=1)
    config = one_request_at_a_time(fault_proxy, request_timeout_ms=1000, metrics_level="summary",
                                   cloudwatch_endpoint=fault_proxy.url)
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        producer = kpl.AsyncProducer(config)
        await producer.start()
        assert (await (await producer.put_record(stream, b"warm-up", "w"))).success  # metrics to upload
        fault_proxy.blackhole()  # Kinesis and CloudWatch alike
        futures = [await producer.put_record(stream, f"r{i}".encode() + b"." * 40, f"k{i % 5}") for i in range(200)]
        await async_wait_for(lambda: fault_proxy.stats.dropped_bytes > 0, 10, message="a request in flight")
        started = time.monotonic()
        await producer.close(timeout=2)
        elapsed = time.monotonic() - started
        del producer
        gc.collect()
    assert 2.0 <= elapsed < 3.6, f"close(timeout=2) with RequestTimeout 1 s took {elapsed:.2f} s"
    results = [f.result() for f in futures]
    codes = Counter(r.error.code for r in results if r.error is not None)
    assert not any(r.success for r in results)
    assert set(codes) == {"OutcomeUnknown", "ProducerClosed"}, codes
    for result in results:
        assert result.error is not None
        if result.error.code == "OutcomeUnknown":
            assert not result.retryable and "may be in the stream" in result.error.message
            assert any(a.outcome_unknown for a in result.attempts)
        else:
            assert result.retryable and not any(a.outcome_unknown for a in result.attempts)
    # The producer's side: aiohttp's sessions and connectors, and sockets connected to the proxy.  (The
    # proxy's own server-side sockets of blackholed connections are left to the garbage collector.)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    leaks = [m for m in messages if "Unclosed client session" in m or "Unclosed connector" in m
             or ("unclosed <socket" in m and f"raddr=('127.0.0.1', {fault_proxy.port})" in m)]
    assert leaks == []
    assert any("final metrics upload did not finish in time" in r.getMessage() for r in caplog.records)


def test_sync_close_against_a_dead_endpoint_keeps_its_time_and_closes_every_client(
    make_stream: Callable[..., str], fault_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    stream = make_stream(shards=1)
    # Uploads every 0.3 s: one is stuck on the dead endpoint when close() begins.
    config = one_request_at_a_time(fault_proxy, request_timeout_ms=1000, metrics_level="summary",
                                   cloudwatch_endpoint=fault_proxy.url, metrics_upload_delay_ms=300)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        producer = kpl.Producer(config)
        assert producer.put_record(stream, b"warm-up", "w").result(timeout=30).success
        fault_proxy.blackhole()
        futures = [producer.put_record(stream, f"r{i}".encode(), f"k{i % 5}") for i in range(100)]
        wait_for(lambda: fault_proxy.stats.dropped_bytes > 0, 10, message="a request in flight")
        started = time.monotonic()
        producer.close(timeout=2)
        elapsed = time.monotonic() - started
        del producer
        gc.collect()
    assert elapsed < 3.6, f"close(timeout=2) with RequestTimeout 1 s took {elapsed:.2f} s"
    assert all(f.done() and not f.result().success for f in futures)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "Unclosed client session" in m or "Unclosed connector" in m] == []


async def test_a_cancelled_close_still_resolves_every_future(
    make_stream: Callable[..., str], fault_proxy: FaultProxy
) -> None:
    stream = make_stream(shards=1)
    producer = kpl.AsyncProducer(one_request_at_a_time(fault_proxy, request_timeout_ms=5000))
    await producer.start()
    assert (await (await producer.put_record(stream, b"warm-up", "w"))).success
    fault_proxy.blackhole()
    futures = [await producer.put_record(stream, f"r{i}".encode(), "k") for i in range(50)]
    await async_wait_for(lambda: fault_proxy.stats.dropped_bytes > 0, 10, message="a request in flight")
    closing = asyncio.create_task(producer.close())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    codes = Counter(f.result().error.code for f in futures)  # type: ignore[union-attr]
    assert set(codes) <= {"OutcomeUnknown", "ProducerClosed"} and codes["OutcomeUnknown"] >= 1, codes


async def test_close_against_an_endpoint_that_refuses_keeps_the_callers_timeout_with_default_settings(
    make_stream: Callable[..., str], fault_proxy: FaultProxy
) -> None:
    """A dead endpoint (connections reset) with the default RequestTimeout: close(timeout=2) takes ~2-3 s.

    Only a request that hangs (an unreachable endpoint) may hold close up to RequestTimeout longer.
    """
    stream = make_stream(shards=1)
    producer = kpl.AsyncProducer(kpl.ProducerConfig(kinesis_endpoint=fault_proxy.url, metrics_level="summary",
                                                    cloudwatch_endpoint=fault_proxy.url, record_ttl_ms=600_000))
    await producer.start()
    assert (await (await producer.put_record(stream, b"warm-up", "w"))).success
    fault_proxy.reset()
    futures = [await producer.put_record(stream, f"r{i}".encode(), f"k{i % 5}") for i in range(50)]
    producer.flush()
    started = time.monotonic()
    await producer.close(timeout=2)
    elapsed = time.monotonic() - started
    # 2 s, then the final CloudWatch upload: refused, botocore's one retry after a jittered wait of up to 1 s
    # (kpl.config cloudwatch_client_config: two attempts), refused again; plus scheduling on a loaded machine.
    assert elapsed < 3.5, f"close(timeout=2) against a refusing endpoint took {elapsed:.2f} s"
    results = [f.result() for f in futures]
    assert not any(r.success for r in results)
    assert {r.error.code for r in results if r.error is not None} <= {"ProducerClosed", "OutcomeUnknown"}
