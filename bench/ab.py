"""Paired A/B runs of one kpl benchmark row: two kpl trees (git revisions) or two settings, alternated.

    .venv/bin/python -m bench.ab --a REV --b REV [--size 100] [-n 6] [--sink mini]
    .venv/bin/python -m bench.ab --kwa '{"cbor": false}' --kwb '{"cbor": true}' [--size 1024]

CPU time per record of the same code moves by ±10-20 % between runs on a shared machine, more than
most levers change it.  Runs made one right after the other see about the same load, so this runs A
and B alternately (ABBA order, fresh process each, one sink for all) and reports the median over the
pairs of B's CPU per record over A's, with the range: a lever is worth keeping when the pairs agree
on its sign.  ``--a``/``--b`` name git revisions whose ``kpl/`` is exported to a temporary directory
and imported by the child instead of this tree's (``BENCH_KPL_ROOT``, see :mod:`bench.child`; the
benchmark code itself is this tree's); without them
both sides run this tree's kpl, with ``--kwa``/``--kwb`` (JSON) added to the runner's keyword arguments.
``--target-a`` pits another runner against kpl's, e.g. the best peer::

    .venv/bin/python -m bench.ab --target-a bench.peers:agg_boto3_producer --size 1024 -n 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Variant, run_once
from bench.minisink_process import MiniSinkProcess
from bench.producer_bench import RECORDS, SHARDS
from bench.workload import Workload
from tests.support.sink import SinkBase, SinkProcess


def export_kpl(revision: str, into: Path) -> Path:
    """``kpl/`` as it is at ``revision``, unpacked under ``into``; the directory to put on PYTHONPATH."""
    archive = subprocess.run(["git", "archive", revision, "kpl"], cwd=ROOT, capture_output=True, check=True).stdout
    target = into / revision.replace("/", "_")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", help="git revision of kpl for side A (default: this tree)")
    parser.add_argument("--b", help="git revision of kpl for side B (default: this tree)")
    parser.add_argument("--kwa", default="{}", help="JSON keyword arguments added to side A's runner")
    parser.add_argument("--kwb", default="{}", help="JSON keyword arguments added to side B's runner")
    parser.add_argument("--size", type=int, choices=sorted(RECORDS), default=100, help="record size in bytes")
    parser.add_argument("-n", type=int, default=6, help="runs of each side")
    parser.add_argument("--target", default="bench.producer_bench:kpl_async_producer",
                        help="the runner of both sides (module:function)")
    parser.add_argument("--target-a", help="side A's runner instead, e.g. bench.peers:agg_boto3_producer")
    parser.add_argument("--sink", choices=("bench", "mini"), default="bench")
    args = parser.parse_args(argv)
    workload = Workload(records=RECORDS[args.size], record_size=args.size).to_dict()
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as scratch:
        sides = []
        for revision, extra, target in ((args.a, args.kwa, args.target_a or args.target),
                                        (args.b, args.kwb, args.target)):
            env = {} if revision is None else {"BENCH_KPL_ROOT": str(export_kpl(revision, Path(scratch)))}
            name = f"{target.rpartition(':')[2]} ({revision or 'this tree'})"
            sides.append(Variant(name, target, {"workload": workload, **json.loads(extra)}, env=env))
        sink: SinkBase = (MiniSinkProcess(streams={"bench": SHARDS}) if args.sink == "mini"
                          else SinkProcess(streams={"bench": SHARDS}, verify="route"))
        runs: list[list[float]] = [[], []]
        with sink:
            for round_ in range(args.n):
                for side in (0, 1) if round_ % 2 == 0 else (1, 0):
                    result = run_once(sides[side], sink)
                    m = result.measurement
                    if not result.ok or m is None:
                        print(f"{'AB'[side]} FAILED: {result.error}", flush=True)
                        return 1
                    runs[side].append(result.cpu_us_per_record)
                    seen: dict[str, Any] = {**m.extra, "sink user records": result.sink.get("user_records")}
                    print(f"{'AB'[side]} {result.cpu_us_per_record:6.2f} µs/rec  gc {m.gc_s * 1e6 / m.records:5.2f}"
                          f"  {seen}", flush=True)
    ratios = [b / a for a, b in zip(*runs, strict=True)]
    print(f"A ({sides[0].name} {args.kwa}) median {statistics.median(runs[0]):.2f} µs/rec; "
          f"B ({sides[1].name} {args.kwb}) median {statistics.median(runs[1]):.2f} µs/rec; "
          f"B/A over {len(ratios)} pairs: median {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
