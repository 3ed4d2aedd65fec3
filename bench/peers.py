"""Runners for the Python peers the issues compare against, called the way their docs intend.

Every runner takes the same :class:`bench.workload.Workload` (as a dict, since it crosses a process
boundary), reaches the sink through standard AWS configuration only (the harness sets
``AWS_ENDPOINT_URL``; no runner names an endpoint), and returns a :class:`bench.harness.Measurement`
whose window covers the client's whole life: set-up, every record, and the final flush.

What each peer calls, read from the installed packages:

* aws-kinesis-agg 1.2.3 is a codec, not a producer: ``RecordAggregator.add_user_record`` returns a
  full ``AggRecord`` (deep-copied) once the next record would not fit; ``get_contents()`` gives the
  outer (partition key, explicit hash key, bytes).  Sending is the user's loop: here boto3
  ``put_records`` batches of up to 500 entries / 5 MiB, re-sending failed entries, and
  ``list_shards`` (paginated) when aggregating per shard as its README asks.
* async-kinesis 3.0.1 ``Producer``: ``DescribeStream`` at start, then ``PutRecords`` of at most 500
  items and 1 MiB, one request in flight, flushed every ``buffer_time`` (0.5 s) or when 500 items are
  queued.  Its ``Consumer``: ``DescribeStream``, ``GetShardIterator`` (TRIM_HORIZON) per shard, then
  ``GetRecords`` (``Limit=record_limit``) per shard at most ``shard_fetch_rate`` times a second.
* aiokpl 0.2.0 ``Producer``: ``ListShards`` (``ShardFilter=AT_LATEST``, paged by ``NextToken``), then
  ``PutRecords`` of per-shard KPL aggregates with a per-record ``Outcome``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bench.harness import Measurement, PeerUnavailable, Stopwatch, Variant
from bench.workload import Workload

if TYPE_CHECKING:
    from tests.support.sink import PrefillSpec

# Heavy modules (boto3, aiobotocore, protobuf) are imported by the runners that use them, so that each
# variant's process pays only for its own imports.

INSTALL_HINT = "install the peers with: .venv/bin/pip install -e '.[dev,bench]'"
#: PutRecords limits the aws-kinesis-agg loop batches by (the KPL's CollectionMaxSize default).
PUT_RECORDS_MAX_ENTRIES = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024
MAX_SEND_ATTEMPTS = 30
#: Client-side rate limits set so high they never bind: the sink does not throttle, and a limiter
#: tuned for a stream of a given size would measure that stream, not the client.
UNBOUNDED_RATE = 10**9


def baseline_workload(workload: dict[str, Any]) -> Measurement:
    """Only generating the workload's records: the floor every other variant includes."""
    items = Workload.from_dict(workload)
    count = 0
    with Stopwatch() as watch:
        for _key, _data in items.items():
            count += 1
    return watch.result(count)


# --- aws-kinesis-agg + boto3 ----------------------------------------------------------------------


class _PutRecordsLoop:
    """The send loop aws-kinesis-agg leaves to its users: batch aggregates into PutRecords, re-send failures."""

    def __init__(self, client: Any, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.entries: list[dict[str, Any]] = []
        self.size = 0
        self.requests = 0
        self.resent = 0

    def add(self, aggregate: Any) -> None:
        partition_key, explicit_hash_key, data = aggregate.get_contents()
        entry: dict[str, Any] = {"Data": data, "PartitionKey": _text(partition_key)}
        if explicit_hash_key:
            entry["ExplicitHashKey"] = _text(explicit_hash_key)
        size = len(data) + len(entry["PartitionKey"])
        if len(self.entries) == PUT_RECORDS_MAX_ENTRIES or self.size + size > PUT_RECORDS_MAX_BYTES:
            self.flush()
        self.entries.append(entry)
        self.size += size

    def flush(self) -> None:
        pending, self.entries, self.size = self.entries, [], 0
        for _ in range(MAX_SEND_ATTEMPTS):
            if not pending:
                return
            self.requests += 1
            response = self.client.put_records(StreamName=self.stream, Records=pending)
            pending = [entry for entry, result in zip(pending, response["Records"], strict=True)
                       if "ErrorCode" in result]
            self.resent += len(pending)
        raise RuntimeError(f"{len(pending)} aggregates still failing after {MAX_SEND_ATTEMPTS} attempts")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def agg_boto3_producer(workload: dict[str, Any], stream: str = "bench", shard_aware: bool = True) -> Measurement:
    """aws-kinesis-agg's ``RecordAggregator`` (iterative use, as its README shows) and a boto3 send loop.

    ``shard_aware``: one aggregator per shard, each record routed by MD5 of its key (the README's
    advice; kpl.hashing does the routing, so its cost counts here).  Without it, one aggregator for
    the stream, which is what the README's example does and what puts sub-records in shards whose
    range excludes them (the sink's ``verify=route`` counts them).

    Two of the library's defects are worked around as a user would (research/kpl.md §13.1): partition
    keys are passed as bytes (with str keys it over-counts sizes and under-fills aggregates), and
    ``max_size`` leaves room for the outer partition key (its 1 MiB cap counts the data only, so a
    full aggregate plus its key is rejected by the service).
    """
    try:
        import boto3
        from aws_kinesis_agg.aggregator import RecordAggregator
    except ImportError as error:
        raise PeerUnavailable(f"aws-kinesis-agg is not importable ({error}); {INSTALL_HINT}") from error
    from kpl.hashing import HashRange, ShardRanges, partition_key_hash

    items = Workload.from_dict(workload)
    max_size = 1024 * 1024 - 256
    with Stopwatch() as watch:
        client = boto3.client("kinesis")
        sender = _PutRecordsLoop(client, stream)
        if shard_aware:
            shards = [shard for page in client.get_paginator("list_shards").paginate(StreamName=stream)
                      for shard in page["Shards"]]
            ranges = ShardRanges((shard["ShardId"], HashRange.from_shard(shard)) for shard in shards)
            aggregators: dict[str | None, Any] = {s["ShardId"]: RecordAggregator(max_size=max_size) for s in shards}
            watch.phase("setup")
            shard_for = ranges.shard_for
            for key, data in items.items_bytes_keys():
                full = aggregators[shard_for(partition_key_hash(key))].add_user_record(key, data)
                if full is not None:
                    sender.add(full)
            remaining = [aggregator.clear_and_get() for aggregator in aggregators.values()]
        else:
            aggregator = RecordAggregator(max_size=max_size)
            watch.phase("setup")
            for key, data in items.items_bytes_keys():
                full = aggregator.add_user_record(key, data)
                if full is not None:
                    sender.add(full)
            remaining = [aggregator.clear_and_get()]
        for aggregate in remaining:
            if aggregate is not None:
                sender.add(aggregate)
        sender.flush()
    return watch.result(items.records, requests=sender.requests, resent=sender.resent)


# --- async-kinesis ---------------------------------------------------------------------------------


def _async_kinesis() -> Any:
    try:
        import kinesis
    except ImportError as error:
        raise PeerUnavailable(f"async-kinesis is not installed; {INSTALL_HINT}") from error
    return kinesis


def _async_kinesis_processor(kpl_aggregation: bool) -> Any:
    """A processor that passes bytes through: the README's recipe (an Aggregator plus a Serializer class).

    Its own processors serialize JSON or ``str(item)``; bytes in and bytes out keeps the comparison
    about the client, not about a serializer.
    """
    _async_kinesis()
    from kinesis.aggregators import KPLAggregator, SimpleAggregator
    from kinesis.processors import Processor

    class BytesSerializer:
        def serialize(self, item: bytes) -> bytes:
            return item

        def deserialize(self, data: bytes) -> bytes:
            return data

    aggregator = KPLAggregator if kpl_aggregation else SimpleAggregator
    processor_class = type("BytesProcessor", (Processor, aggregator, BytesSerializer), {})
    return processor_class()


async def async_kinesis_producer(workload: dict[str, Any], stream: str = "bench", kpl_aggregation: bool = False,
                                 lift_rate_limits: bool = True) -> Measurement:
    """async-kinesis ``Producer.put`` for every record, then ``close()`` (which flushes).

    Its KPL aggregator refuses custom partition keys: records go in without one, every sub-record gets
    key "a" and each aggregate a random outer key (not shard-aware).  Its limiter is built before the
    shard count is known, so it allows 1000 records/s and 1 MiB/s for the whole stream; with
    ``lift_rate_limits`` both are set out of reach.  Its byte limiter still sums its one-second log on
    every item, which is part of its cost per record.
    """
    kinesis = _async_kinesis()
    items = Workload.from_dict(workload)
    confirmed = 0

    async def count_flushed(flushed: list[Any]) -> None:
        nonlocal confirmed
        confirmed += sum(item.n for item in flushed)

    limits = ({"put_rate_limit_per_shard": UNBOUNDED_RATE, "put_bandwidth_limit_per_shard": UNBOUNDED_RATE}
              if lift_rate_limits else {})
    with Stopwatch() as watch:
        producer = kinesis.Producer(stream_name=stream, processor=_async_kinesis_processor(kpl_aggregation),
                                    after_flush_fun=count_flushed, **limits)
        async with producer:
            watch.phase("setup")
            if kpl_aggregation:
                for _key, data in items.items():
                    await producer.put(data)
            else:
                for key, data in items.items():
                    await producer.put(data, partition_key=key)
    return watch.result(items.records, confirmed=confirmed)


async def async_kinesis_consumer(expected_records: int, stream: str, kpl_aggregation: bool = False,
                                 shard_fetch_rate: int = 5, deadline_s: float = 600.0) -> Measurement:
    """async-kinesis ``Consumer`` iterated until ``expected_records`` user records have come out.

    ``shard_fetch_rate=5`` is its documented maximum (GetRecords calls per shard per second); its
    default of 1 would pace the run rather than measure the client.
    """
    kinesis = _async_kinesis()
    count = 0
    with Stopwatch() as watch:
        consumer = kinesis.Consumer(stream_name=stream, processor=_async_kinesis_processor(kpl_aggregation),
                                    shard_fetch_rate=shard_fetch_rate, iterator_type="TRIM_HORIZON")
        async with consumer:
            deadline = time.monotonic() + deadline_s
            while count < expected_records:
                async for _item in consumer:  # ends after idle_timeout without records; go round again
                    count += 1
                    if count >= expected_records:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"consumed {count} of {expected_records} records within {deadline_s:.0f}s")
            watch.stop()  # the window ends with the last record; closing the consumer is not reading
            # Its fetch task ignores cancellation while it waits (up to 30 s a record) to put into a full
            # queue, so the queue is kept empty until the fetch task has ended.
            fetch_task = consumer.fetch_task
            draining = asyncio.create_task(_discard_forever(consumer.queue))
        if fetch_task is not None:
            await asyncio.wait({fetch_task}, timeout=60)
        draining.cancel()
    return watch.result(count)


async def _discard_forever(queue: asyncio.Queue[Any]) -> None:
    while True:
        await queue.get()


# --- aiokpl ------------------------------------------------------------------------------------------


async def aiokpl_producer(workload: dict[str, Any], stream: str = "bench", aggregation: bool = True,
                          lift_rate_limits: bool = True) -> Measurement:
    """aiokpl ``Producer.put_record`` for every record, every ``Outcome`` awaited (per-record results).

    Outcomes are awaited oldest first once ``max_outstanding_records`` are pending, which is when its
    own backpressure would block ``put_record`` anyway, so memory stays what aiokpl itself allows.
    """
    try:
        from aiokpl import Config, Producer
    except ImportError as error:
        raise PeerUnavailable(f"aiokpl is not installed; {INSTALL_HINT}") from error
    from kpl.aws import resolve_region

    items = Workload.from_dict(workload)
    limits = ({"rate_limit_records_per_sec_per_shard": float(UNBOUNDED_RATE),
               "rate_limit_bytes_per_sec_per_shard": float(UNBOUNDED_RATE)} if lift_rate_limits else {})
    config = Config(region=resolve_region(), aggregation_enabled=aggregation, **limits)
    succeeded = failed = 0
    pending: deque[Any] = deque()

    async def settle_oldest() -> None:
        nonlocal succeeded, failed
        result = await pending.popleft().wait()
        if result.success:
            succeeded += 1
        else:
            failed += 1

    with Stopwatch() as watch:
        async with Producer(config) as producer:
            watch.phase("setup")
            for key, data in items.items():
                pending.append(await producer.put_record(stream=stream, partition_key=key, data=data))
                if len(pending) >= config.max_outstanding_records:
                    await settle_oldest()
            await producer.flush()
            while pending:
                await settle_oldest()
    return watch.result(items.records, succeeded=succeeded, failed=failed)


# --- aws-kinesis-agg deaggregation (read side, in process) -------------------------------------------


def _aggregated_get_records_output(items: Workload, aggregation_max_size: int = 51_200) -> list[dict[str, Any]]:
    """The workload as boto3 GetRecords records holding KPL aggregates, as a consumer would receive them."""
    from kpl.aggregation import AggregateBuilder

    records: list[dict[str, Any]] = []
    arrival = datetime.now(UTC)

    def emit(builder: Any, key: str) -> None:
        sequence = f"{49 * 10**54 + len(records):056d}"
        records.append({"SequenceNumber": sequence, "ApproximateArrivalTimestamp": arrival,
                        "Data": builder.build(), "PartitionKey": key})

    builder = AggregateBuilder(max_size=aggregation_max_size)
    first_key = ""
    for key, data in items.items():
        if builder.add(key, None, data):
            first_key = first_key or key
            continue
        emit(builder, first_key)
        builder, first_key = AggregateBuilder(max_size=aggregation_max_size), key
        builder.add(key, None, data)
    if len(builder):
        emit(builder, first_key)
    return records


def agg_deaggregator(workload: dict[str, Any], decode_payloads: bool = True) -> Measurement:
    """aws-kinesis-agg ``iter_deaggregate_records(records, data_format="Boto3")`` over pre-built aggregates.

    In process, no sink: the aggregates (KPL format, 50 KB, built with kpl.aggregation before the
    window) are what GetRecords would return.  Its output is Lambda-shaped, with each payload
    base64-encoded again; ``decode_payloads`` includes the ``b64decode`` a user needs to get the bytes.
    """
    try:
        from aws_kinesis_agg.deaggregator import iter_deaggregate_records
    except ImportError as error:
        raise PeerUnavailable(f"aws-kinesis-agg is not importable ({error}); {INSTALL_HINT}") from error
    items = Workload.from_dict(workload)
    records = _aggregated_get_records_output(items)
    count = 0
    b64decode = base64.b64decode
    with Stopwatch() as watch:
        user_records: Iterator[dict[str, Any]] = iter_deaggregate_records(records, data_format="Boto3")
        if decode_payloads:
            for record in user_records:
                b64decode(record["kinesis"]["data"])
                count += 1
        else:
            for _record in user_records:
                count += 1
    if count != items.records:
        raise RuntimeError(f"deaggregated {count} user records, expected {items.records}")
    return watch.result(count, aggregates=len(records))



# --- the peer rows every benchmark script shows ----------------------------------------------------

#: Records given to peers that manage only a few thousand records/s, so a run stays within seconds.
SLOW_PEER_RECORDS = 30_000
#: async-kinesis with its default limiter sends 1000 records/s whatever the client could do.
RATE_BOUND_PEER_RECORDS = 5_000


def producer_peer_variants(workload: Workload, stream: str = "bench") -> list[Variant]:
    """The producer-side peers of issue 3, all given ``workload`` (slow peers a slice of it)."""
    full = workload.to_dict()
    slow = replace(workload, records=min(workload.records, SLOW_PEER_RECORDS)).to_dict()
    bound = replace(workload, records=min(workload.records, RATE_BOUND_PEER_RECORDS)).to_dict()
    target = "bench.peers:"
    return [
        Variant("aws-kinesis-agg + boto3, aggregator per shard", target + "agg_boto3_producer",
                {"workload": full, "stream": stream}, note="1 MiB aggregates, no per-record results"),
        Variant("aws-kinesis-agg + boto3, one aggregator", target + "agg_boto3_producer",
                {"workload": full, "stream": stream, "shard_aware": False}, note="as its README's example",
                misroutes=True),
        Variant("async-kinesis Producer, KPL aggregator", target + "async_kinesis_producer",
                {"workload": full, "stream": stream, "kpl_aggregation": True},
                note="limits lifted; inner keys all 'a', random outer key", misroutes=True),
        Variant("async-kinesis Producer", target + "async_kinesis_producer",
                {"workload": slow, "stream": stream}, note="limits lifted"),
        Variant("async-kinesis Producer, default limits", target + "async_kinesis_producer",
                {"workload": bound, "stream": stream, "lift_rate_limits": False},
                note="its limiter: 1000 records/s per stream after a first burst", scale_in_quick=False),
        Variant("aiokpl Producer, aggregation", target + "aiokpl_producer",
                {"workload": slow, "stream": stream}, note="limits lifted; every Outcome awaited"),
        Variant("aiokpl Producer, no aggregation", target + "aiokpl_producer",
                {"workload": slow, "stream": stream, "aggregation": False},
                note="limits lifted; every Outcome awaited"),
    ]


def consumer_peer_variants(workload: Workload, plain_stream: PrefillSpec, aggregated_stream: PrefillSpec
                           ) -> list[Variant]:
    """The consumer-side peers of issue 4: async-kinesis reading pre-filled streams, aws-kinesis-agg in process."""
    target = "bench.peers:"
    slow = min(plain_stream.user_records, SLOW_PEER_RECORDS * 3)
    return [
        Variant("aws-kinesis-agg deaggregator (in process)", target + "agg_deaggregator",
                {"workload": workload.to_dict()}, note="50 KB aggregates; includes b64decode of its output"),
        Variant("async-kinesis Consumer, plain records", target + "async_kinesis_consumer",
                {"expected_records": slow, "stream": plain_stream.stream}, note="shard_fetch_rate=5"),
        Variant("async-kinesis Consumer, KPL aggregates", target + "async_kinesis_consumer",
                {"expected_records": aggregated_stream.user_records, "stream": aggregated_stream.stream,
                 "kpl_aggregation": True}, note="shard_fetch_rate=5"),
    ]


def prefilled_streams(workload: Workload, shards: int = 4) -> tuple[PrefillSpec, PrefillSpec]:
    """Plain and aggregated streams holding ``workload.records`` records of its size, for the read side."""
    from tests.support.sink import PrefillSpec

    per_shard = max(1, workload.records // shards)
    plain = PrefillSpec(stream=f"read-plain-{workload.record_size}", shards=shards, records_per_shard=per_shard,
                        record_size=workload.record_size, users=workload.users)
    return plain, replace(plain, stream=f"read-kpl-{workload.record_size}", aggregate=True)
