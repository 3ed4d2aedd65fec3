"""The same producer workloads against two independent sinks in one run: the numbers must agree.

    .venv/bin/python -m bench.crosscheck [--repeat 3] [--records 200000] [--sizes 100 1024] [--only TEXT]
    .venv/bin/python -m bench.crosscheck --suspects [--repeat 3]

A benchmark number should describe the client, not the sink.  This script runs the kpl rows and the
fast peer rows of ``bench.producer_bench`` against ``tests.support.sink`` (the project's sink, as the producer
benchmark starts it) and against ``bench.minisink`` (a minimal Kinesis sink that shares no code with
it), alternating the two run by run so that a change in the machine's load hits both columns alike,
and prints both columns side by side with their difference: the median over the pairs of runs made
one after the other, and the range of those paired differences.  A row agrees (``yes``) when both
medians are within ``--tolerance`` (10 %); ``noise`` when a median is outside it but the pairs
disagree in sign (no systematic difference: the machine's load moved more than the sinks differ);
``NO`` when every pair leans the same way.

``--suspects`` measures, one at a time, the things that could make a sink distort a client's numbers
(docs/bench.md, "Why the peers ran slower against the sink"): against the minisink, each way of
answering (keep-alive, ``Connection: close``, HTTP/1.0, chunked responses, Nagle with split writes,
1 ms of latency), and against the project's sink, each verification mode; with what the runner measures
beside it (process vs thread CPU, GC time, the client's set-up).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.harness import Options, Result, Variant, machine_summary, median_run, run_once
from bench.minisink_process import MiniSinkProcess
from bench.producer_bench import kpl_variants, start_sink
from bench.workload import Workload
from tests.support.sink import SinkBase, SinkProcess

SHARDS = 16


def crosscheck_variants(workload: Workload, slow_peers: bool = False) -> list[Variant]:
    """The kpl rows and the peer rows of the producer benchmark, for one workload."""
    from bench.peers import producer_peer_variants

    peers = producer_peer_variants(workload)
    if not slow_peers:
        peers = [v for v in peers if v.kwargs.get("workload", {}).get("records") == workload.records]
    return kpl_variants(workload) + peers


@dataclass(slots=True)
class Pair:
    """One variant's runs against each of two sinks, run alternately (A B A B ...)."""

    variant: Variant
    first_runs: list[Result]
    second_runs: list[Result]

    @property
    def first(self) -> Result:
        return median_run(self.first_runs)

    @property
    def second(self) -> Result:
        return median_run(self.second_runs)

    def ratios(self, metric: Callable[[Result], float]) -> list[float]:
        """A / B - 1 for each pair of runs (each A run with the B run made right after it)."""
        return [metric(a) / metric(b) - 1 for a, b in zip(self.first_runs, self.second_runs, strict=True)
                if a.ok and b.ok and metric(a) and metric(b)]

    def difference(self, metric: Callable[[Result], float]) -> float | None:
        """The median of the paired ratios.

        Runs next to each other in time see the same machine load, so their ratio varies less than
        the ratio of two medians does on a shared machine.
        """
        ratios = self.ratios(metric)
        return statistics.median(ratios) if ratios else None

    def verdict(self, metric: Callable[[Result], float], tolerance: float) -> str:
        """``yes`` within ``tolerance``; ``noise`` when outside it but the pairs disagree in sign (one
        sink was faster in some pairs, the other in others: no systematic difference, the machine's
        load moved more than the sinks differ); ``NO`` when every pair leans the same way."""
        ratios = self.ratios(metric)
        if not ratios:
            return "-"
        if abs(statistics.median(ratios)) <= tolerance:
            return "yes"
        if min(ratios) < 0 < max(ratios):
            return "noise"
        return "NO"


def run_pairs(variants: Sequence[Variant], first: SinkBase, second: SinkBase, repeat: int,
              verbose: bool = False) -> list[Pair]:
    """Every variant ``repeat`` times against each sink, alternating (A B A B ...)."""
    pairs = []
    for variant in variants:
        pair = Pair(variant, [], [])
        for _ in range(repeat):
            for sink, collected in ((first, pair.first_runs), (second, pair.second_runs)):
                result = run_once(variant, sink)
                collected.append(result)
                if verbose:
                    print(f"  {variant.name} @ {sink.label}: {_brief(result)}", file=sys.stderr, flush=True)
        pairs.append(pair)
    return pairs


def _brief(result: Result) -> str:
    if not result.ok:
        return result.error
    return f"{result.records_per_s:,.0f} rec/s, {result.cpu_us_per_record:.2f} µs/rec"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.0f}%"


def format_pairs(pairs: Sequence[Pair], first: str, second: str, tolerance: float, title: str) -> str:
    header = ["variant", f"{first} rec/s", "CPU µs/rec", f"{second} rec/s", "CPU µs/rec", "Δ rec/s",
              "pairs", "Δ CPU", "pairs", "agree"]
    rows = [header]
    for pair in pairs:
        cells = [pair.variant.name]
        for result in (pair.first, pair.second):
            cells += ([f"{result.records_per_s:,.0f}", f"{result.cpu_us_per_record:.2f}"] if result.ok
                      else ["-", "-"])
        verdicts = []
        for metric in (_records_per_s, _cpu_per_record):
            cells += [_percent(pair.difference(metric)), _span(pair.ratios(metric))]
            verdicts.append(pair.verdict(metric, tolerance))
        errors = "; ".join(r.error for r in (*pair.first_runs, *pair.second_runs) if not r.ok)
        if errors:
            verdict = errors
        elif "NO" in verdicts:
            verdict = "NO"
        elif "noise" in verdicts:
            verdict = "noise: " + ", ".join(name for name, v in zip(("rec/s", "CPU"), verdicts, strict=True)
                                            if v == "noise")
        else:
            verdict = "yes"
        rows.append([*cells, verdict])
    return _table(rows, title)


def _records_per_s(result: Result) -> float:
    return result.records_per_s


def _cpu_per_record(result: Result) -> float:
    return result.cpu_us_per_record


def _span(ratios: Sequence[float]) -> str:
    return f"{min(ratios) * 100:+.0f}..{max(ratios) * 100:+.0f}%" if ratios else "-"


def _table(rows: list[list[str]], title: str) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [title, "=" * len(title)]
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:-1], widths[1:], strict=True))]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -----")
    return "\n".join(lines)


# --- suspects --------------------------------------------------------------------------------------

#: (label, sink factory): each changes one thing about how the sink answers.
SUSPECT_SINKS: list[tuple[str, Callable[[], SinkBase]]] = [
    ("minisink, keep-alive (reference)", lambda: MiniSinkProcess(streams={"bench": SHARDS})),
    ("minisink, Connection: close", lambda: MiniSinkProcess(streams={"bench": SHARDS}, behaviour="connection-close")),
    ("minisink, HTTP/1.0", lambda: MiniSinkProcess(streams={"bench": SHARDS}, behaviour="http10")),
    ("minisink, chunked responses", lambda: MiniSinkProcess(streams={"bench": SHARDS}, behaviour="chunked")),
    ("minisink, split writes + Nagle", lambda: MiniSinkProcess(streams={"bench": SHARDS}, behaviour="split-nagle")),
    ("minisink, 1 ms latency", lambda: MiniSinkProcess(streams={"bench": SHARDS}, latency_ms=1.0)),
    ("sink, verify=none", lambda: SinkProcess(streams={"bench": SHARDS}, verify="none")),
    ("sink, verify=count", lambda: SinkProcess(streams={"bench": SHARDS}, verify="count")),
    ("sink, verify=route", lambda: SinkProcess(streams={"bench": SHARDS}, verify="route")),
    ("sink, verify=route before answering (old)",
     lambda: SinkProcess(streams={"bench": SHARDS}, verify="route", verify_inline=True)),
]


def suspect_variants(workload: Workload) -> list[Variant]:
    """The kpl row as the benchmark runs it and as the earlier runner did (every future held until
    100,000 were pending), and the two fastest peers."""
    rows = {"kpl AsyncProducer, aggregation", "aws-kinesis-agg + boto3, aggregator per shard",
            "async-kinesis Producer, KPL aggregator"}
    rows.add("kpl AsyncProducer, aggregation, results held")
    return [v for v in crosscheck_variants(workload) if v.name in rows]


def run_suspects(workload: Workload, repeat: int, only: Sequence[str], verbose: bool) -> str:
    """Each suspect sink in turn, each variant ``repeat`` times; one row per (sink, variant)."""
    variants = suspect_variants(workload)
    header = ["sink", "variant", "rec/s", "CPU µs/rec", "thread µs/rec", "GC µs/rec", "set-up ms", "requests",
              "sink CPU %", "note"]
    rows = [header]
    for label, factory in SUSPECT_SINKS:
        if only and not any(text in label for text in only):
            continue
        with factory() as sink:
            for variant in variants:
                runs = [run_once(variant, sink) for _ in range(repeat)]
                result = median_run(runs)
                if verbose:
                    print(f"  {label} / {variant.name}: {_brief(result)}", file=sys.stderr, flush=True)
                rows.append([label, variant.name, *_suspect_cells(result)])
    return _table(rows, f"suspects, {workload.record_size}-byte records, {workload.records:,} records, "
                        f"medians of {repeat}")


def _suspect_cells(result: Result) -> list[str]:
    m = result.measurement
    if not result.ok or m is None:
        return ["-"] * 7 + [result.error]
    per_record = 1e6 / m.records
    busy = result.sink.get("cpu_s", 0.0) / m.wall_s * 100 if m.wall_s else 0.0
    return [f"{result.records_per_s:,.0f}", f"{result.cpu_us_per_record:.2f}", f"{m.thread_cpu_s * per_record:.2f}",
            f"{m.gc_s * per_record:.2f}", f"{m.phases.get('setup', 0.0) * 1000:.0f}",
            str(result.sink.get("requests", "")), f"{busy:.0f}", ""]


# --- command line ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.crosscheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant and sink (medians reported)")
    parser.add_argument("--records", type=int, default=200_000, help="records per run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1024], help="record sizes in bytes")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="only variants (or, with --suspects, sinks) whose name contains TEXT")
    parser.add_argument("--tolerance", type=float, default=0.10, help="largest difference that still agrees")
    parser.add_argument("--slow-peers", action="store_true", help="also the slow peers (aiokpl, async-kinesis)")
    parser.add_argument("--suspects", action="store_true", help="measure each suspect instead")
    parser.add_argument("--verbose", action="store_true", help="print every run as it finishes")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.records < 1000:
        parser.error("--repeat must be at least 1 and --records at least 1000")
    return args


def command_line(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python -m bench.crosscheck"]
    if args.suspects:
        parts.append("--suspects")
    parts += [f"--repeat {args.repeat}", f"--records {args.records}", "--sizes " + " ".join(map(str, args.sizes))]
    parts += [f"--only '{text}'" for text in args.only]
    if args.slow_peers:
        parts.append("--slow-peers")
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    disagreements = noisy = 0
    for size in args.sizes:
        workload = Workload(records=args.records, record_size=size)
        if args.suspects:
            print(run_suspects(workload, args.repeat, args.only, args.verbose))
            print(flush=True)
            continue
        variants = [v for v in crosscheck_variants(workload, args.slow_peers)
                    if not args.only or any(text in v.name for text in args.only)]
        with start_sink(Options()) as ours, MiniSinkProcess(streams={"bench": SHARDS}) as mini:
            pairs = run_pairs(variants, ours, mini, args.repeat, args.verbose)
        title = (f"cross-check, {size}-byte records, {SHARDS}-shard stream, medians of {args.repeat}, "
                 "Δ = median of paired runs' ratios "
                 "(the sink as bench.producer_bench starts it)")
        print(format_pairs(pairs, ours.label, mini.label, args.tolerance, title))
        print(flush=True)
        verdicts = [p.verdict(metric, args.tolerance) for p in pairs for metric in (_records_per_s, _cpu_per_record)]
        disagreements += verdicts.count("NO")
        noisy += verdicts.count("noise")
    print(f"({machine_summary()})")
    print(f"measured with: {command_line(args)}")
    if not args.suspects:
        print(f"{disagreements} measurement(s) differ systematically by more than {args.tolerance:.0%}; "
              f"{noisy} differ by more but not systematically (the pairs disagree in sign: machine noise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
