"""Producer latency: put -> result at a steady arrival rate, for RecordMaxBufferedTime 100 ms and 10 ms.

    .venv/bin/python -m bench.latency_bench [--quick] [--repeat 3] [--rate 5000] [--seconds 10] [--sink mini]

Records arrive paced at ``--rate`` per second (the runner puts every record that is due, then sleeps
until the next one is: arrivals come in bursts of at most about a millisecond, the event loop's
timer resolution), 100 bytes each, keys spread over the stream's 16 shards.  At 5,000 records/s
each shard gets ~310 records/s, far from filling a 51,200-byte aggregate in 100 ms, so every record
waits for RecordMaxBufferedTime: what is measured is that deadline plus the PutRecords round trip
and the time to resolve the futures.

A record's latency is from just before its ``put_record`` call to the moment its result is seen by
the application (a done-callback on its future).  The first second of arrivals is warm-up (the
first records also wait for ListShards and the clients' first connections) and is left out of the
percentiles; its worst latency is shown in the note.  The rate limiter is lifted as in
``bench.producer_bench``; everything else is the default.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from bench.harness import Measurement, Result, Stopwatch, Variant, machine_summary, parse_options, run_once
from bench.minisink_process import MiniSinkProcess
from bench.peers import UNBOUNDED_RATE
from bench.workload import Workload
from tests.support.sink import SinkBase, SinkProcess

SHARDS = 16
RATE = 5000
SECONDS = 10.0
WARM_UP_S = 1.0
BUFFERED_TIMES_MS = (100, 10)


def _config(record_max_buffered_time_ms: int) -> Any:
    import kpl

    return kpl.ProducerConfig(record_max_buffered_time_ms=record_max_buffered_time_ms, rate_limit=UNBOUNDED_RATE)


def latency_summary(put_at: Sequence[float], done_at: Sequence[float], start: float,
                    warm_up_s: float = WARM_UP_S) -> dict[str, Any]:
    """Percentiles (ms) of done - put over the records put after the warm-up; the warm-up's worst."""
    steady = [(d - p) * 1000 for p, d in zip(put_at, done_at, strict=True) if p - start >= warm_up_s]
    warm = [(d - p) * 1000 for p, d in zip(put_at, done_at, strict=True) if p - start < warm_up_s]
    if not steady:
        raise RuntimeError("no record was put after the warm-up: run longer")
    steady.sort()

    def percentile(q: float) -> float:
        return steady[min(len(steady) - 1, int(q * len(steady)))]

    return {"p50_ms": round(percentile(0.50), 1), "p90_ms": round(percentile(0.90), 1),
            "p99_ms": round(percentile(0.99), 1), "p99.9_ms": round(percentile(0.999), 1),
            "max_ms": round(steady[-1], 1), "mean_ms": round(statistics.fmean(steady), 1),
            "measured": len(steady), "warm_up_max_ms": round(max(warm), 1) if warm else 0.0,
            "arrivals_per_s": round(len(put_at) / (put_at[-1] - put_at[0]) if len(put_at) > 1 else 0.0)}


class Arrivals:
    """``records`` records paced at ``rate`` per second, and when each was put and its result seen.

    Both runners drive it the same way: put every record :meth:`due` yields, sleep :meth:`pause`, until
    :attr:`finished`; a record's future gets ``partial(arrivals.resolved, index)`` as done-callback.
    """

    def __init__(self, records: int, rate: float) -> None:
        self.records = records
        self.rate = rate
        self.items = Workload(records=records, record_size=100).items()
        self.put_at = [0.0] * records
        self.done_at = [0.0] * records
        self.failed = 0
        self.index = 0
        self._lock = threading.Lock()  # the sync face resolves futures on its loop's thread
        self.start = time.perf_counter()

    @property
    def finished(self) -> bool:
        return self.index >= self.records

    def due(self) -> Iterator[tuple[int, str, bytes]]:
        """(index, key, data) of every record due by now, its put time taken just before it is yielded."""
        perf = time.perf_counter
        due = min(self.records, int((perf() - self.start) * self.rate) + 1)
        while self.index < due:
            key, data = next(self.items)
            index = self.index
            self.put_at[index] = perf()
            yield index, key, data
            self.index = index + 1

    def pause(self) -> float:
        """Seconds until the next record is due."""
        return max(0.0, self.start + self.index / self.rate - time.perf_counter())

    def resolved(self, index: int, future: Any) -> None:
        self.done_at[index] = time.perf_counter()
        if not future.result().success:
            with self._lock:
                self.failed += 1

    def summary(self) -> dict[str, Any]:
        return latency_summary(self.put_at, self.done_at, self.start)


async def kpl_async_latency(records: int, rate: float = RATE, record_max_buffered_time_ms: int = 100,
                            stream: str = "bench") -> Measurement:
    """kpl.AsyncProducer, ``await put_record`` per record at ``rate`` records/s."""
    import kpl
    from kpl.logs import configure_logging

    configure_logging("warning")
    with Stopwatch() as watch:
        async with kpl.AsyncProducer(_config(record_max_buffered_time_ms)) as producer:
            watch.phase("setup")
            arrivals = Arrivals(records, rate)
            while not arrivals.finished:
                for index, key, data in arrivals.due():
                    future = await producer.put_record(stream, data, key)
                    future.add_done_callback(partial(arrivals.resolved, index))
                await asyncio.sleep(arrivals.pause())
            await producer.flush_all()
            await asyncio.sleep(0)  # the last done-callbacks
    return watch.result(records, failed=arrivals.failed, **arrivals.summary())


def kpl_sync_latency(records: int, rate: float = RATE, record_max_buffered_time_ms: int = 100,
                     stream: str = "bench") -> Measurement:
    """kpl.Producer (background event loop), ``put_record`` per record at ``rate`` records/s from this thread."""
    import kpl
    from kpl.logs import configure_logging

    configure_logging("warning")
    with Stopwatch() as watch, kpl.Producer(_config(record_max_buffered_time_ms)) as producer:
        watch.phase("setup")
        arrivals = Arrivals(records, rate)
        while not arrivals.finished:
            for index, key, data in arrivals.due():
                producer.put_record(stream, data, key).add_done_callback(partial(arrivals.resolved, index))
            time.sleep(arrivals.pause())
        producer.flush_all()
    return watch.result(records, failed=arrivals.failed, **arrivals.summary())


def latency_variants(rate: float, seconds: float) -> list[Variant]:
    records = int(rate * seconds)
    here = "bench.latency_bench:"
    variants = []
    for target, face in (("kpl_async_latency", "AsyncProducer"), ("kpl_sync_latency", "Producer (sync)")):
        for buffered in BUFFERED_TIMES_MS:
            variants.append(Variant(f"kpl {face}, RecordMaxBufferedTime {buffered} ms", here + target,
                                    {"records": records, "rate": rate, "record_max_buffered_time_ms": buffered},
                                    timeout_s=seconds * 4 + 120))
    return variants


LATENCY_COLUMNS = ("variant", "records", "arrivals/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
                   "CPU µs/rec", "RSS peak", "note")


def format_latency_table(results: Sequence[Result], title: str) -> str:
    rows = [list(LATENCY_COLUMNS)]
    for result in results:
        m = result.measurement
        if not result.ok or m is None:
            rows.append([result.variant.name, *["-"] * 8, result.error])
            continue
        e = m.extra
        note = f"warm-up (first {WARM_UP_S:.0f} s) max {e['warm_up_max_ms']} ms; failed={e['failed']}"
        if result.runs > 1:
            note += f"; median of {result.runs} by p99"
        rows.append([result.variant.name, f"{m.records:,}", f"{e['arrivals_per_s']:,.0f}", f"{e['p50_ms']:.1f}",
                     f"{e['p90_ms']:.1f}", f"{e['p99_ms']:.1f}", f"{e['p99.9_ms']:.1f}", f"{e['max_ms']:.1f}",
                     f"{result.cpu_us_per_record:.1f}", f"{m.peak_rss_mib:.0f}", note])
    widths = [max(len(row[i]) for row in rows) for i in range(len(LATENCY_COLUMNS) - 1)]
    lines = [title, "=" * len(title)]
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:-1], widths[1:], strict=True))]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    lines.append(f"({machine_summary()}; latency = put_record call to the result seen by a done-callback; "
                 f"percentiles over the records put after the first {WARM_UP_S:.0f} s)")
    return "\n".join(lines)


def median_by_p99(runs: list[Result]) -> Result:
    good = [r for r in runs if r.ok and r.measurement is not None]
    if not good:
        return runs[-1]
    chosen = sorted(good, key=lambda r: r.measurement.extra["p99_ms"] if r.measurement else 0.0)[len(good) // 2]
    chosen.runs = len(good)
    return chosen


def main() -> int:
    options = parse_options(__doc__.split("\n\n")[0], sink_choice=True, extra=_extra_arguments)
    rate = float(options.extra["rate"])
    seconds = float(options.extra["seconds"]) * (0.3 if options.quick else 1.0)
    variants = [v for v in latency_variants(rate, max(seconds, WARM_UP_S + 1))
                if not options.only or any(text in v.name for text in options.only)]
    sink: SinkBase = (MiniSinkProcess(streams={"bench": SHARDS}) if options.sink == "mini"
                      else SinkProcess(streams={"bench": SHARDS}, verify="count"))
    results = []
    with sink:
        for variant in variants:
            results.append(median_by_p99([run_once(variant, sink) for _ in range(options.repeat)]))
    title = f"producer latency at {rate:,.0f} records/s, 100-byte records, {SHARDS}-shard stream, {sink.label}"
    print(format_latency_table(results, title))
    print(f"measured with: {options.command('bench.latency_bench')}")
    return 0


def _extra_arguments(parser: Any) -> None:
    parser.add_argument("--rate", type=float, default=RATE, help="records per second")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="length of each run")


if __name__ == "__main__":
    sys.exit(main())
