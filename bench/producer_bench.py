"""The producer benchmark (issue 3): kpl beside the Python peers, 100-byte and 1 KiB records.

    .venv/bin/python -m bench.producer_bench [--quick] [--repeat 3] [--only kpl] [--json bench/results/producer.json]

Every variant runs in its own process against the same fast local sink (``bench/sink.py``, a second
process with real shard routing; ``verify=route`` checks that every aggregate's sub-records belong to
the shard that received it), with the same workload: per record a new payload and one of 1000 users'
partition keys.  The kpl rows go through the whole producer — validation, MD5 and shard prediction,
aggregation, collection, PutRecords through aiobotocore, response checks, metrics (default level
``detailed``, granularity ``shard``) — and every record's result is read, the oldest first once
``max_outstanding_records`` are pending (the pattern the aiokpl peer row uses).  Rate limits are lifted
for every client (the sink does not throttle, and a limiter tuned for the stream would measure the
stream).

The closing note prints the numbers the issue's targets are about.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import Any

from bench.harness import (
    Measurement,
    Result,
    SinkProcess,
    Stopwatch,
    Variant,
    format_table,
    parse_options,
    run_variants,
)
from bench.peers import UNBOUNDED_RATE, producer_peer_variants
from bench.workload import Workload

SHARDS = 16
RECORDS = {100: 300_000, 1024: 100_000}
TARGET_RECORDS_PER_S = 150_000
TARGET_CPU_US = 7.0


def _config(aggregation: bool) -> Any:
    import kpl

    return kpl.ProducerConfig(aggregation_enabled=aggregation, rate_limit=UNBOUNDED_RATE)


async def kpl_async_producer(workload: dict[str, Any], stream: str = "bench", aggregation: bool = True,
                             nowait: bool = False) -> Measurement:
    """kpl.AsyncProducer: ``put_record`` (awaited) or ``put_record_nowait`` per record, every result read."""
    import kpl
    from kpl.logs import configure_logging

    configure_logging("warning")
    items = Workload.from_dict(workload)
    config = _config(aggregation)
    limit = config.max_outstanding_records
    succeeded = failed = 0
    pending: deque[asyncio.Future[kpl.RecordResult]] = deque()
    with Stopwatch() as watch:
        async with kpl.AsyncProducer(config) as producer:
            put = producer.put_record_nowait
            for key, data in items.items():
                if nowait:
                    try:
                        future = put(stream, data, key)
                    except kpl.BufferFullError:
                        future = await producer.put_record(stream, data, key)
                else:
                    future = await producer.put_record(stream, data, key)
                pending.append(future)
                if len(pending) >= limit:
                    if (await pending.popleft()).success:
                        succeeded += 1
                    else:
                        failed += 1
            await producer.flush_all()
            while pending:
                if pending.popleft().result().success:
                    succeeded += 1
                else:
                    failed += 1
    return watch.result(items.records, succeeded=succeeded, failed=failed)


def kpl_sync_producer(workload: dict[str, Any], stream: str = "bench", aggregation: bool = True) -> Measurement:
    """kpl.Producer (background event loop) from the calling thread, every result read."""
    import concurrent.futures

    import kpl
    from kpl.logs import configure_logging

    configure_logging("warning")
    items = Workload.from_dict(workload)
    config = _config(aggregation)
    limit = config.max_outstanding_records
    succeeded = failed = 0
    pending: deque[concurrent.futures.Future[kpl.RecordResult]] = deque()
    with Stopwatch() as watch, kpl.Producer(config) as producer:
        put = producer.put_record
        for key, data in items.items():
            pending.append(put(stream, data, key))
            if len(pending) >= limit:
                if pending.popleft().result().success:
                    succeeded += 1
                else:
                    failed += 1
        producer.flush_all()
        while pending:
            if pending.popleft().result().success:
                succeeded += 1
            else:
                failed += 1
    return watch.result(items.records, succeeded=succeeded, failed=failed)


def kpl_variants(workload: Workload, stream: str = "bench") -> list[Variant]:
    full = workload.to_dict()
    here = "bench.producer_bench:"
    return [
        Variant("kpl AsyncProducer, aggregation", here + "kpl_async_producer", {"workload": full, "stream": stream},
                note="await put_record; every result read"),
        Variant("kpl AsyncProducer, aggregation, nowait", here + "kpl_async_producer",
                {"workload": full, "stream": stream, "nowait": True}, note="put_record_nowait; every result read"),
        Variant("kpl Producer (sync), aggregation", here + "kpl_sync_producer", {"workload": full, "stream": stream},
                note="concurrent.futures per record"),
        Variant("kpl AsyncProducer, no aggregation", here + "kpl_async_producer",
                {"workload": full, "stream": stream, "aggregation": False}, note="one Kinesis record per record"),
    ]


def closing_note(record_size: int, results: list[Result]) -> str:
    ok = {r.variant.name: r for r in results if r.ok and r.measurement is not None}
    ours = ok.get("kpl AsyncProducer, aggregation")
    peers = [r for name, r in ok.items() if not name.startswith(("kpl", "workload"))]
    if ours is None:
        return f"{record_size}-byte records: the kpl row did not run"
    lines = [f"{record_size}-byte records: kpl AsyncProducer with aggregation and per-record results "
             f"{ours.records_per_s:,.0f} records/s, {ours.cpu_us_per_record:.2f} µs CPU per record"]
    if record_size == 100:
        lines.append(f"  target >= {TARGET_RECORDS_PER_S:,} records/s and <= {TARGET_CPU_US} µs/record: "
                     f"{'met' if ours.records_per_s >= TARGET_RECORDS_PER_S else 'NOT met'} / "
                     f"{'met' if ours.cpu_us_per_record <= TARGET_CPU_US else 'NOT met'}")
    if peers:
        best = max(peers, key=lambda r: r.records_per_s)
        ratio = ours.records_per_s / best.records_per_s if best.records_per_s else float("inf")
        lines.append(f"  best peer: {best.variant.name} {best.records_per_s:,.0f} records/s -> kpl is "
                     f"{ratio:.1f}x (target >= 2x)")
    return "\n".join(lines)


def main() -> int:
    options = parse_options(__doc__.split("\n\n")[0])
    notes = []
    for record_size, records in RECORDS.items():
        workload = Workload(records=records, record_size=record_size)
        variants = [Variant("workload generation only", "bench.peers:baseline_workload",
                            {"workload": workload.to_dict()}, note="the floor every row includes")]
        variants += kpl_variants(workload)
        variants += producer_peer_variants(workload)
        with SinkProcess(streams={"bench": SHARDS}, verify="route") as sink:
            results = run_variants(variants, sink=sink, options=options)
        print(format_table(results, title=f"producer, {record_size}-byte records, {SHARDS}-shard sink stream"))
        print(flush=True)
        notes.append(closing_note(record_size, results))
    print("\n".join(notes))
    print("measured with: .venv/bin/python -m bench.producer_bench" + (" --quick" if options.quick else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
