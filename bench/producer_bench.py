"""The producer benchmark (issues 3 and 13): kpl beside the Python peers, 100-byte and 1 KiB records.

    .venv/bin/python -m bench.producer_bench [--quick] [--repeat 3] [--only kpl] [--sink mini]
                                             [--json bench/results/producer.json]

Every run is a fresh process against the same fast local sink in a second process: ``tests.support.sink``
with ``verify=route`` (every aggregate is decoded after the run and each sub-record's shard checked,
so the table shows a producer that lost or misrouted records), or with ``--sink mini`` the
independent ``bench.minisink`` (no verification).  ``python -m bench.crosscheck`` shows that the two
give the same numbers.  Every variant sends the same workload: per record a new payload and one of
1000 users' partition keys.

The kpl rows go through the whole producer (validation, MD5 and shard prediction, aggregation,
collection, PutRecords through aiobotocore, response checks, metrics at the default level
``detailed``) with default settings except the rate limiter, which is lifted for every client (the
sink does not throttle, and a limiter tuned for the stream would measure the stream).  Each record's
result is read as soon as it is resolved, as an application that checks its results does; the
futures of records still in flight are the only ones alive.

The table's ``vs best peer`` column is each row's CPU per record over the best peer's: the peer row
with the lowest CPU per record among those that delivered every record to a shard whose range holds
it (so not the rows that misroute sub-records).  The exact command is printed under each table.
"""

from __future__ import annotations

import gc
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

from bench.harness import (
    Measurement,
    Options,
    Result,
    Stopwatch,
    Variant,
    delivered_correctly,
    format_table,
    parse_options,
    run_variants,
)
from bench.minisink_process import MiniSinkProcess
from bench.peers import UNBOUNDED_RATE, producer_peer_variants
from bench.workload import Workload
from tests.support.sink import SinkBase, SinkProcess

SHARDS = 16
RECORDS = {100: 200_000, 1024: 100_000}
#: Issue 13's targets: kpl's CPU per record over the best peer's, per record size.
TARGET_RATIO = {100: 1.0, 1024: 0.75}


def _config(aggregation: bool, **settings: Any) -> Any:
    import kpl

    return kpl.ProducerConfig(aggregation_enabled=aggregation, rate_limit=UNBOUNDED_RATE, **settings)


class _Results:
    """Reads results as they are resolved (oldest first), so only in-flight futures stay alive."""

    def __init__(self) -> None:
        self.pending: deque[Any] = deque()
        self.succeeded = 0
        self.failed = 0

    def add(self, future: Any) -> None:
        pending = self.pending
        pending.append(future)
        while pending[0].done():
            self.read(pending.popleft())
            if not pending:
                return

    def read(self, future: Any) -> None:
        if future.result().success:
            self.succeeded += 1
        else:
            self.failed += 1


async def kpl_async_producer(workload: dict[str, Any], stream: str = "bench", aggregation: bool = True,
                             nowait: bool = False, hold_results: bool = False, *, cbor: bool | None = None,
                             freeze_after_start: bool = False, batch: int = 0,
                             settings: dict[str, Any] | None = None, gc_threshold0: int = 0) -> Measurement:
    """kpl.AsyncProducer: ``await put_record`` (or ``put_record_nowait``) per record, every result read.

    ``hold_results`` keeps every future until ``max_outstanding_records`` are pending before reading
    the oldest (the earlier runner's pattern; the live futures cost garbage-collection time).
    ``cbor`` chooses the wire protocol of PutRecords (None: the default).  ``freeze_after_start``
    is what an application may choose to do (the library never does): ``gc.freeze()`` once the
    producer has started, so that collections no longer walk the AWS clients' loaded models.
    ``batch``: ``await put_records`` with this many records per call instead (one future per record).
    ``settings``: further ProducerConfig fields (for measuring a lever with ``bench.ab --kwb``).
    ``gc_threshold0`` (only with ``bench.ab``, never a table row): the young generation's threshold for the
    run, to estimate what fewer collector-tracked allocations per record would save (doubling it is what
    one allocation per record instead of two would do to the collection counts).
    """
    import kpl
    from kpl.logs import configure_logging

    configure_logging("warning")
    items = Workload.from_dict(workload)
    extra = dict(settings or {})
    if cbor is not None:
        extra["cbor_protocol"] = cbor
    config = _config(aggregation, **extra)
    limit = config.max_outstanding_records
    results = _Results()
    pending = results.pending
    if gc_threshold0:
        gc.set_threshold(gc_threshold0, *gc.get_threshold()[1:])
    with Stopwatch() as watch:
        async with kpl.AsyncProducer(config) as producer:
            watch.phase("setup")
            if freeze_after_start:
                gc.freeze()
            put = producer.put_record_nowait
            if batch:
                add = results.add
                chunk: list[tuple[bytes, str]] = []
                for key, data in items.items():
                    chunk.append((data, key))
                    if len(chunk) == batch:
                        for future in await producer.put_records(stream, chunk):
                            add(future)
                        chunk = []
                for future in await producer.put_records(stream, chunk):
                    add(future)
            for key, data in () if batch else items.items():
                if nowait:
                    try:
                        future = put(stream, data, key)
                    except kpl.BufferFullError:
                        future = await producer.put_record(stream, data, key)
                else:
                    future = await producer.put_record(stream, data, key)
                if hold_results:
                    pending.append(future)
                    if len(pending) >= limit:
                        oldest = pending.popleft()
                        await oldest
                        results.read(oldest)
                else:
                    results.add(future)
            await producer.flush_all()
            while pending:
                results.read(pending.popleft())
    return watch.result(items.records, succeeded=results.succeeded, failed=results.failed)


def kpl_sync_producer(workload: dict[str, Any], stream: str = "bench", aggregation: bool = True) -> Measurement:
    """kpl.Producer (background event loop) from the calling thread, every result read as it is resolved."""
    import kpl
    from kpl.logs import configure_logging

    configure_logging("warning")
    items = Workload.from_dict(workload)
    config = _config(aggregation)
    results = _Results()
    with Stopwatch() as watch, kpl.Producer(config) as producer:
        watch.phase("setup")
        put = producer.put_record
        for key, data in items.items():
            results.add(put(stream, data, key))
        producer.flush_all()
        while results.pending:
            results.read(results.pending.popleft())
    return watch.result(items.records, succeeded=results.succeeded, failed=results.failed)


def kpl_variants(workload: Workload, stream: str = "bench") -> list[Variant]:
    full = workload.to_dict()
    here = "bench.producer_bench:"
    return [
        Variant("kpl AsyncProducer, aggregation", here + "kpl_async_producer", {"workload": full, "stream": stream},
                note="await put_record; every result read"),
        Variant("kpl AsyncProducer, aggregation, CBOR", here + "kpl_async_producer",
                {"workload": full, "stream": stream, "cbor": True},
                note="await put_record; every result read; PutRecords in CBOR"),
        Variant("kpl AsyncProducer, aggregation, JSON", here + "kpl_async_producer",
                {"workload": full, "stream": stream, "cbor": False},
                note="await put_record; every result read; PutRecords in JSON"),
        Variant("kpl AsyncProducer, aggregation, app freezes GC", here + "kpl_async_producer",
                {"workload": full, "stream": stream, "freeze_after_start": True},
                note="as the first row, and the application calls gc.freeze() once the producer has started"),
        Variant("kpl AsyncProducer, aggregation, results held", here + "kpl_async_producer",
                {"workload": full, "stream": stream, "hold_results": True},
                note="await put_record; futures kept until 100,000 pending, then read oldest first"),
        Variant("kpl AsyncProducer, aggregation, put_records", here + "kpl_async_producer",
                {"workload": full, "stream": stream, "batch": 500},
                note="await put_records, 500 records per call, a future per record; every result read"),
        Variant("kpl AsyncProducer, aggregation, nowait", here + "kpl_async_producer",
                {"workload": full, "stream": stream, "nowait": True}, note="put_record_nowait; every result read"),
        Variant("kpl Producer (sync), aggregation", here + "kpl_sync_producer", {"workload": full, "stream": stream},
                note="concurrent.futures per record"),
        Variant("kpl AsyncProducer, no aggregation", here + "kpl_async_producer",
                {"workload": full, "stream": stream, "aggregation": False}, note="one Kinesis record per record"),
    ]


def best_peer(results: Sequence[Result]) -> Result | None:
    """The peer row with the lowest CPU per record among those that delivered correctly."""
    peers = [r for r in results if r.variant.target.startswith("bench.peers:")
             and r.variant.target != "bench.peers:baseline_workload" and delivered_correctly(r)]
    return min(peers, key=lambda r: r.cpu_us_per_record, default=None)


def closing_note(record_size: int, results: Sequence[Result]) -> str:
    ok = {r.variant.name: r for r in results if r.ok and r.measurement is not None}
    ours = ok.get("kpl AsyncProducer, aggregation")
    if ours is None:
        return f"{record_size}-byte records: the kpl row did not run"
    lines = [f"{record_size}-byte records: kpl AsyncProducer with aggregation and per-record results "
             f"{ours.records_per_s:,.0f} records/s, {ours.cpu_us_per_record:.2f} µs CPU per record"]
    best = best_peer(results)
    if best is not None:
        ratio = ours.cpu_us_per_record / best.cpu_us_per_record
        target = TARGET_RATIO.get(record_size)
        verdict = "" if target is None else f" (target <= {target:.2f}x: {'met' if ratio <= target else 'NOT met'})"
        lines.append(f"  best peer: {best.variant.name} {best.records_per_s:,.0f} records/s, "
                     f"{best.cpu_us_per_record:.2f} µs CPU per record -> kpl uses {ratio:.2f}x its CPU per "
                     f"record{verdict}")
    return "\n".join(lines)


def start_sink(options: Options) -> SinkBase:
    if options.sink == "mini":
        return MiniSinkProcess(streams={"bench": SHARDS})
    return SinkProcess(streams={"bench": SHARDS}, verify="route")


def main() -> int:
    options = parse_options(__doc__.split("\n\n")[0], sink_choice=True)
    command = options.command("bench.producer_bench")
    notes = []
    for record_size, records in RECORDS.items():
        workload = Workload(records=records, record_size=record_size)
        variants = [Variant("workload generation only", "bench.peers:baseline_workload",
                            {"workload": workload.to_dict()}, note="the floor every row includes")]
        variants += kpl_variants(workload)
        variants += producer_peer_variants(workload)
        with start_sink(options) as sink:
            results = run_variants(variants, sink=sink, options=options)
        title = f"producer, {record_size}-byte records, {SHARDS}-shard stream, {sink.label}"
        print(format_table(results, title=title, reference=best_peer(results)))
        print(f"measured with: {command}")
        print(flush=True)
        notes.append(closing_note(record_size, results))
    print("\n".join(notes))
    print(f"measured with: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
