"""Where the kpl row's CPU goes: the producer benchmark's ``await put_record`` row, sampled with py-spy.

    .venv/bin/python -m bench.where [--size 100] [--runs 2]

Each run is a fresh process running :func:`bench.producer_bench.kpl_async_producer` once against
``bench.minisink``, sampled by ``py-spy record --nonblocking`` (1000 Hz; py-spy is in the bench
extras).  Samples are put in stages by the deepest frame of the stack that belongs to one (imports
before the measured window are left out).  py-spy sees Python frames only, so garbage collection
shows up inside the frame whose allocation triggered it (almost always the put call): the table takes
the GC time the run measured itself (``gc.callbacks``, the collecting thread's CPU time) out of the
put call's share and shows it as a stage of its own.  µs per record are each stage's share of the
run's measured CPU per record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.harness import ROOT, machine_summary
from bench.minisink_process import MiniSinkProcess
from bench.producer_bench import RECORDS, SHARDS
from bench.workload import Workload

#: Stages, each with the frame names (substrings) that mark it; the deepest match wins.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("start: clients, ListShards", ("AsyncProducer.start",)),
    ("close: last flush, metrics upload", ("AsyncProducer.close",)),
    ("aggregation encode (kpl.aggregation)", ("AggregateBuilder.",)),
    ("PutRecords request: botocore, signing, aiohttp", ("_make_api_call", "aiohttp/", "selector_events.py")),
    ("responses, futures resolved, metrics", ("ResponseClassifier", "ResultRouter", "Resolver.", "resolve_all",
                                              "kpl/metrics.py", "kpl/cloudwatch.py", "Sender._finished")),
    ("intake, accumulator, limiter, collector", ("Intake.", "Aggregator.", "seal (kpl", "Collector.", "Limiter.",
                                                 "Sender.submit", "Sender._start")),
    ("put call: put_record, future, coroutine", ("AsyncProducer.put_record", "ProducerCore.put", "_ready (kpl",
                                                 "_after_a_loop_turn")),
    ("the application: workload, reading results", ("Workload.items", "_Results.", "kpl_async_producer")),
    ("event loop", ("_run_once", "Handle._run")),
]
PUT_CALL = "put call: put_record, future, coroutine"
GC = "garbage collection (measured)"


def stage_of(stack: str) -> str | None:
    """The stage of one sampled stack (frames joined by ';', outermost first); None: not counted."""
    if "_find_and_load" in stack or "concurrent/futures/thread.py" in stack:
        return None
    frames = stack.split(";")
    for special in ("AsyncProducer.start", "AsyncProducer.close"):
        if any(special in frame for frame in frames):
            return next(name for name, marks in STAGES if special in marks)
    for frame in reversed(frames):
        for name, marks in STAGES:
            if any(mark in frame for mark in marks):
                return name
    return None


def child(size: int, report: str) -> None:
    from bench.producer_bench import kpl_async_producer

    workload = Workload(records=RECORDS[size], record_size=size).to_dict()
    measurement = asyncio.run(kpl_async_producer(workload))
    Path(report).write_text(json.dumps({"cpu_s": measurement.cpu_s, "gc_s": measurement.gc_s,
                                        "records": measurement.records}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.where", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, choices=sorted(RECORDS), default=100)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--child", metavar="REPORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.size, args.child)
        return 0
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    samples: Counter[str] = Counter()
    cpu = gc_time = 0.0
    records = 0
    with MiniSinkProcess(streams={"bench": SHARDS}) as sink, tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, **sink.aws_env()}
        for run in range(args.runs):
            raw, report = Path(scratch) / f"run{run}.txt", Path(scratch) / f"run{run}.json"
            subprocess.run([py_spy, "record", "--nonblocking", "-r", "1000", "--format", "raw", "-o", str(raw),
                            "--", sys.executable, "-m", "bench.where", "--size", str(args.size),
                            "--child", str(report)], cwd=ROOT, env=env, check=True, capture_output=True)
            measured = json.loads(report.read_text())
            cpu += measured["cpu_s"]
            gc_time += measured["gc_s"]
            records += measured["records"]
            for line in raw.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                stage = stage_of(stack)
                if stage is not None:
                    samples[stage] += int(count)
    per_record = cpu * 1e6 / records
    gc_per_record = gc_time * 1e6 / records
    total = sum(samples.values())
    shares = {name: per_record * count / total for name, count in samples.items()}
    shares[PUT_CALL] = max(0.0, shares.get(PUT_CALL, 0.0) - gc_per_record)
    shares[GC] = gc_per_record
    print(f"kpl AsyncProducer, aggregation, {args.size}-byte records: {per_record:.2f} µs CPU per record "
          f"(mean of {args.runs} sampled runs, {total:,} samples)")
    for name, value in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"  {value:5.2f} µs  {100 * value / per_record:4.1f} %  {name}")
    print(f"({machine_summary()})")
    print(f"measured with: .venv/bin/python -m bench.where --size {args.size} --runs {args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
