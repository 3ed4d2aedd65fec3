"""Starting, closing, bad input at the call, KPL properties files and CloudWatch metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import subprocess
import sys
import threading
import time
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
    started = time.monotonic()
    await asyncio.gather(producer.close(), producer.close())  # the second waits for the first
    # close sends at once, also records that waited for the shard map when it began.
    assert time.monotonic() - started < 4.0
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


BAD_INPUT: list[tuple[tuple[object, ...], type[Exception], str]] = [
    ((None, b"d", "k"), TypeError, "stream_name"),
    (("", b"d", "k"), ValueError, "stream_name"),
    (("{stream}", None, "k"), TypeError, "bytes-like"),
    (("{stream}", "", "k"), TypeError, "bytes-like"),
    (("{stream}", b"d", ""), ValueError, "partition_key"),
    (("{stream}", b"d", 5), TypeError, "partition_key"),
    (("{stream}", b"d", "k", -1), ValueError, "explicit_hash_key"),
]


def _args(args: tuple[object, ...], stream: str) -> tuple[Any, ...]:
    return tuple(stream if a == "{stream}" else a for a in args)


async def test_bad_input_raises_at_the_call_in_both_faces_before_anything_starts(
    make_stream: Callable[..., str]
) -> None:
    stream = make_stream(shards=1)
    not_started = kpl.AsyncProducer(CONFIG)
    for args, error, match in BAD_INPUT:
        with pytest.raises(error, match=match):
            not_started.put_record(*_args(args, stream))  # no await: the call itself raises
        with pytest.raises(error, match=match):
            not_started.put_record_nowait(*_args(args, stream))
    with pytest.raises(kpl.ProducerNotStartedError):
        not_started.put_record(stream, b"d", "k")
    async with kpl.AsyncProducer(CONFIG) as producer:
        for args, error, match in BAD_INPUT:
            with pytest.raises(error, match=match):
                producer.put_record(*_args(args, stream))
        assert producer.outstanding_records == 0
    with kpl.Producer(CONFIG) as sync_producer:
        for args, error, match in BAD_INPUT:
            with pytest.raises(error, match=match):
                sync_producer.put_record(*_args(args, stream))
        assert sync_producer.outstanding_records == 0


async def test_a_record_over_any_limit_is_refused_naming_the_stream_limit(make_stream: Callable[..., str]) -> None:
    stream = make_stream(shards=1)
    eleven_mib = b"x" * (11 * 1024 * 1024)
    async with kpl.AsyncProducer(CONFIG) as producer:
        with pytest.raises(ValueError, match=f"1048576-byte maximum record size of stream {stream}"):
            await producer.put_record(stream, eleven_mib, "k")
    with kpl.Producer(CONFIG) as sync_producer, pytest.raises(
            ValueError, match=f"1048576-byte maximum record size of stream {stream}"):
        sync_producer.put_record(stream, eleven_mib, "k")
    with kpl.Producer(CONFIG, max_user_record_size=1000) as capped, pytest.raises(
            ValueError, match="1000-byte maximum record size set by the producer's MaxUserRecordSize"):
        capped.put_record(stream, b"x" * 1000, "k")


async def test_flush_after_close_raises_the_closed_error_in_both_faces(make_stream: Callable[..., str]) -> None:
    stream = make_stream(shards=1)
    async with kpl.AsyncProducer(CONFIG) as producer:
        await producer.put_record(stream, b"d", "k")
    with pytest.raises(kpl.ProducerClosedError):
        await producer.flush_all()
    with pytest.raises(kpl.ProducerClosedError):
        producer.flush()
    with kpl.Producer(CONFIG) as sync_producer:
        sync_producer.put_record(stream, b"d", "k")
    with pytest.raises(kpl.ProducerClosedError):
        sync_producer.flush_all(timeout=1)
    with pytest.raises(kpl.ProducerClosedError):
        sync_producer.flush()


def test_settings_are_typed_keywords_and_an_unknown_name_is_a_type_error() -> None:
    assert kpl.AsyncProducer(CONFIG, record_ttl_ms=5000).config == CONFIG.with_(record_ttl_ms=5000)
    assert set(kpl.ProducerSettings.__annotations__) == {
        f.name for f in dataclasses.fields(kpl.ProducerConfig)} - {"ignored_settings"}
    with pytest.raises(TypeError, match="unknown setting 'record_ttl': did you mean 'record_ttl_ms'"):
        kpl.AsyncProducer(record_ttl=5000)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="KPL's RecordTtl is 'record_ttl_ms'"):
        kpl.Producer(RecordTtl=5000)  # type: ignore[call-arg]
    threads = sum(t.name == "kpl-producer" for t in threading.enumerate())
    with pytest.raises(TypeError, match=r"takes a kpl\.ProducerConfig"):
        kpl.Producer({"record_ttl_ms": 5000})  # type: ignore[arg-type]
    with pytest.raises(kpl.ConfigurationError, match="record_ttl_ms"):
        kpl.AsyncProducer(record_ttl_ms=5)
    assert sum(t.name == "kpl-producer" for t in threading.enumerate()) == threads, "no thread for bad settings"


async def test_a_dropped_producer_with_unresolved_records_warns_and_still_delivers(
    make_stream: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    stream = make_stream(shards=1)
    producer = kpl.AsyncProducer(CONFIG.with_(record_max_buffered_time_ms=60_000))
    await producer.start()
    futures = [await producer.put_record(stream, f"r{i}".encode(), "k") for i in range(5)]
    with pytest.warns(ResourceWarning, match="AsyncProducer garbage-collected with 5 records unresolved"):
        del producer
        gc.collect()
    assert any("unresolved=5" in r.getMessage() and "how=garbage-collected" in r.getMessage()
               and r.levelno == logging.WARNING and r.name.startswith("kpl") for r in caplog.records)
    results = await asyncio.wait_for(asyncio.gather(*futures), timeout=60)
    assert all(r.success for r in results), "closed in the background: delivered"


def test_a_dropped_sync_producer_warns_and_still_delivers(
    make_stream: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    stream = make_stream(shards=1)
    producer = kpl.Producer(CONFIG.with_(record_max_buffered_time_ms=60_000))
    futures = [producer.put_record(stream, f"r{i}".encode(), "k") for i in range(3)]
    assert producer.oldest_record_age > 0  # a round trip through the loop: the records were handed over
    thread = next(t for t in threading.enumerate() if t.name == "kpl-producer")
    with pytest.warns(ResourceWarning, match="Producer garbage-collected with 3 records unresolved"):
        del producer
        gc.collect()
    assert all(f.result(timeout=60).success for f in futures)
    thread.join(timeout=30)
    assert not thread.is_alive(), "its loop thread stopped after the background close"


def test_a_producer_open_at_interpreter_exit_says_how_many_records_are_unresolved(
    make_stream: Callable[..., str]
) -> None:
    stream = make_stream(shards=1)
    script = (
        "import logging, kpl\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "producer = kpl.Producer(metrics_level='none', record_max_buffered_time_ms=60_000)\n"
        f"futures = [producer.put_record({stream!r}, b'd', 'k') for _ in range(4)]\n"
    )
    completed = subprocess.run([sys.executable, "-W", "always::ResourceWarning", "-c", script],
                               capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "ResourceWarning: kpl.Producer still open at interpreter exit with 4 records unresolved" in completed.stderr
    assert "WARNING:kpl.producer:producer not closed while records are unresolved" in completed.stderr
    assert "how='still open at interpreter exit' unresolved=4" in completed.stderr
    assert completed.stdout == ""


async def test_put_records_queues_a_batch_in_order_and_validates_it_whole(
    make_stream: Callable[..., str], kinesis: Any
) -> None:
    stream = make_stream(shards=2)
    async with kpl.AsyncProducer(CONFIG.with_(max_outstanding_records=50)) as producer:
        with pytest.raises(TypeError, match=r"records\[2\]: data must be bytes-like"):
            producer.put_records(stream, [(b"a", "k"), (b"b", "k"), ("text", "k")])  # the call raises
        with pytest.raises(ValueError, match=r"records\[1\]: partition_key"):
            producer.put_records(stream, [(b"a", "k"), (b"b", "")])
        with pytest.raises(TypeError, match=r"records\[0\]: each record must be"):
            producer.put_records(stream, [b"no key"])
        assert producer.outstanding_records == 0, "nothing of a bad batch was queued"
        # 120 records against a bound of 50: the batch waits for room, record by record.
        batch: list[tuple[Any, ...]] = [(f"r{i}".encode(), f"k{i % 7}") for i in range(100)]
        batch += [(f"e{i}".encode(), "k", str(2**127 + i)) for i in range(20)]
        futures = await producer.put_records(stream, batch)
        assert len(futures) == 120
        assert all([(await f).success for f in futures])
        assert await producer.put_records(stream, []) == []
    landed, _ = read_back(kinesis, stream)
    assert sorted(r.data for r in landed) == sorted(data for data, *_ in batch)


def test_sync_put_records_blocks_for_room_and_says_what_was_queued_on_timeout(
    make_stream: Callable[..., str]
) -> None:
    stream = make_stream(shards=1)
    with kpl.Producer(CONFIG.with_(max_outstanding_records=30, record_max_buffered_time_ms=60_000)) as producer:
        with pytest.raises(kpl.BackpressureTimeoutError) as raised:
            producer.put_records(stream, [(f"r{i}".encode(), "k") for i in range(50)], timeout=0.3)
        assert len(raised.value.queued) == 30 and producer.outstanding_records == 30
        producer.flush_all(timeout=60)
        assert all(f.result().success for f in raised.value.queued)  # type: ignore[attr-defined]
    with kpl.Producer(CONFIG.with_(max_outstanding_records=30)) as producer:
        futures = producer.put_records(stream, [(f"s{i}".encode(), "k") for i in range(50)], timeout=60)
        producer.flush_all(timeout=60)
        assert len(futures) == 50 and all(f.result().success for f in futures)
