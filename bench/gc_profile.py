"""Where a producer row's garbage-collection time goes: collections per generation, their time, and what
each record leaves in the old generation.

    .venv/bin/python -m bench.gc_profile [--size 100] [--runner kpl|kpl-json|agg] [--promotions]

One run in this process (not a fresh child per run as in the benchmark; the numbers are for
explaining the benchmark's ``gc`` share, not for comparing rows), against ``tests.support.sink`` with the
benchmark's workload.  With ``--promotions`` every young-generation collection also records which
objects it moves to the oldest generation (slow: the run itself is then not timed meaningfully).
Finally it times a full collection of the heap as it is after the run (the AWS clients' loaded
models included) and of a heap holding only the interpreter and the imports.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from bench.harness import Measurement
from bench.producer_bench import RECORDS, SHARDS
from bench.workload import Workload
from tests.support.sink import SinkProcess


def _run(runner: str, workload: dict[str, Any]) -> Measurement:
    if runner == "agg":
        from bench.peers import agg_boto3_producer

        return agg_boto3_producer(workload, shard_aware=True)
    from bench.producer_bench import kpl_async_producer

    return asyncio.run(kpl_async_producer(workload, cbor=runner != "kpl-json"))


def _full_collection_ms(repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        started = time.thread_time()
        gc.collect()
        times.append(time.thread_time() - started)
    return min(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gc_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, choices=sorted(RECORDS), default=100)
    parser.add_argument("--runner", choices=("kpl", "kpl-json", "agg"), default="kpl")
    parser.add_argument("--promotions", action="store_true")
    args = parser.parse_args(argv)
    records = RECORDS[args.size]
    per_generation = {generation: [0, 0.0] for generation in range(3)}
    promoted: Counter[str] = Counter()
    state: dict[str, Any] = {"start": 0.0, "young": set()}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        generation = info["generation"]
        if phase == "start":
            if args.promotions and generation == 1:
                state["young"] = set(map(id, gc.get_objects(1)))
            state["start"] = time.thread_time()
            return
        per_generation[generation][0] += 1
        per_generation[generation][1] += time.thread_time() - state["start"]
        if args.promotions and generation == 1:
            young = state["young"]
            promoted.update(type(o).__name__ for o in gc.get_objects(2) if id(o) in young)

    with SinkProcess(streams={"bench": SHARDS}) as sink:
        os.environ.update(sink.aws_env())
        workload = Workload(records=records, record_size=args.size).to_dict()
        gc.callbacks.append(on_gc)
        try:
            measurement = _run(args.runner, workload)
        finally:
            gc.callbacks.remove(on_gc)
        print(f"{args.runner}, {records:,} records of {args.size} bytes: {measurement.cpu_s * 1e6 / records:.2f} µs "
              f"CPU per record, of which garbage collection {measurement.gc_s * 1e6 / records:.2f}")
        for generation, (count, seconds) in per_generation.items():
            print(f"  generation {generation}: {count} collections, {seconds * 1000:.1f} ms, "
                  f"{seconds * 1e6 / records:.2f} µs per record")
        if args.promotions:
            top = ", ".join(f"{name} {count / records:.2f}" for name, count in promoted.most_common(5))
            print(f"  moved to the oldest generation, per record: {top}")
        heap = len(gc.get_objects())
        print(f"  a full collection now: {_full_collection_ms():.1f} ms ({heap:,} objects tracked)")
    imports = ("import gc, time, kpl, bench.peers, boto3, aiobotocore.session\nt = []\nfor _ in range(7):\n"
               "    s = time.thread_time(); gc.collect(); t.append(time.thread_time() - s)\n"
               "print(f'{min(t) * 1000:.1f} ms ({len(gc.get_objects()):,} objects tracked)')")
    after_imports = subprocess.run([sys.executable, "-c", imports], capture_output=True, text=True, check=True).stdout
    print(f"  a full collection with the imports only, no client built: {after_imports.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
