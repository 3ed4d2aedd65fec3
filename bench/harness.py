"""Run benchmark variants side by side, each in a fresh process, and print one table.

A *variant* is a Python callable named by path (``"bench.peers:aiokpl_producer"``) plus keyword
arguments.  The harness runs it in a new interpreter, so imports, caches and peak RSS belong to that
variant alone, and reads back a JSON report: wall time and CPU time (user + system, from
``resource.getrusage`` in the child) of the measured window, peak RSS (``ru_maxrss``), and the
record count.  The callable marks its measured window with :class:`Stopwatch` and returns
:meth:`Stopwatch.result`; a callable that returns a plain record count is timed as a whole.
Coroutine functions are run with ``asyncio.run``.

A benchmark script is then short::

    options = parse_options("producer benchmark")
    with SinkProcess(streams={"bench": 16}) as sink:          # tests.support.sink
        results = run_variants(variants, sink=sink, options=options)
    print(format_table(results, title="producer, 100-byte records"))

Clients inside a variant reach the sink through standard AWS configuration only: the harness sets
``AWS_ENDPOINT_URL``, a region and dummy credentials in the child's environment.  With ``sink`` given,
the harness resets the sink's counters before each run and attaches its counters afterwards (records
it accepted, user records when it verifies aggregates, and its own CPU time, to show it was not the
bottleneck).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

# The sinks as processes (the project's sink lives with the tests, which use it too).
from tests.support.sink.process import SinkBase, child_python_env

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

RESULTS_DIR = ROOT / "bench" / "results"
#: A sink using more than this share of one core during a run may have slowed the client down.
SINK_BUSY_WARNING = 0.8


class PeerUnavailable(RuntimeError):
    """A variant cannot run here (a peer is not installed, or cannot talk to the sink); the message says why."""


# --- measuring inside the child -------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass(slots=True)
class Measurement:
    """What a variant reports: its records and the cost of its measured window.

    ``cpu_s`` is the whole process's CPU time (every thread: a background event loop, botocore's
    DNS threads); ``thread_cpu_s`` the calling thread's alone and ``gc_s`` the time spent in garbage
    collection, so a table can say where a difference comes from.  ``phases`` holds the process CPU
    seconds of named parts of the window (:meth:`Stopwatch.phase`), e.g. the client's set-up.
    """

    records: int
    wall_s: float
    cpu_s: float
    rss_start_mib: float = 0.0
    peak_rss_mib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    thread_cpu_s: float = 0.0
    gc_s: float = 0.0
    gc_collections: int = 0
    phases: dict[str, float] = field(default_factory=dict)


class Stopwatch:
    """Marks a variant's measured window: wall clock, the whole process's CPU time (all threads), the
    calling thread's CPU time, and the time garbage collection took inside the window."""

    def __init__(self) -> None:
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.thread_cpu_s = 0.0
        self.gc_s = 0.0
        self.gc_collections = 0
        self.rss_start_mib = 0.0
        self.phases: dict[str, float] = {}
        self._wall0 = 0.0
        self._cpu0 = 0.0
        self._thread0 = 0.0
        self._gc_started = 0.0
        self._running = False

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.thread_time()
        elif self._gc_started:
            self.gc_s += time.thread_time() - self._gc_started
            self.gc_collections += 1
            self._gc_started = 0.0

    def start(self) -> Stopwatch:
        self.rss_start_mib = current_rss_mib()
        gc.callbacks.append(self._on_gc)
        self._thread0 = time.thread_time()
        self._cpu0 = cpu_seconds()
        self._wall0 = time.perf_counter()
        self._running = True
        return self

    def phase(self, name: str, since: str | None = None) -> None:
        """Record the process CPU seconds from the window's start (or phase ``since``) until now as ``name``."""
        elapsed = cpu_seconds() - self._cpu0
        self.phases[name] = elapsed - (self.phases.get(since, 0.0) if since else 0.0)

    def stop(self) -> None:
        """Ends the window; later calls (such as leaving the ``with`` block) change nothing."""
        if self._running:
            self.wall_s = time.perf_counter() - self._wall0
            self.cpu_s = cpu_seconds() - self._cpu0
            self.thread_cpu_s = time.thread_time() - self._thread0
            self._running = False
            if self._on_gc in gc.callbacks:
                gc.callbacks.remove(self._on_gc)

    def __enter__(self) -> Stopwatch:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def result(self, records: int, **extra: Any) -> Measurement:
        return Measurement(records, self.wall_s, self.cpu_s, self.rss_start_mib, extra=extra,
                           thread_cpu_s=self.thread_cpu_s, gc_s=self.gc_s, gc_collections=self.gc_collections,
                           phases=dict(self.phases))


def _resolve(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    if not attribute:
        raise ValueError(f"variant target {target!r} must look like 'package.module:callable'")
    return getattr(importlib.import_module(module_name), attribute)


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one variant in this process and return its JSON-able report."""
    try:
        function = _resolve(spec["target"])
        watch = Stopwatch()
        with watch:
            if inspect.iscoroutinefunction(function):
                outcome = asyncio.run(function(**spec["kwargs"]))
            else:
                outcome = function(**spec["kwargs"])
        if isinstance(outcome, Measurement):
            measurement = outcome
        elif isinstance(outcome, int):
            measurement = watch.result(outcome)
        else:
            raise TypeError(f"{spec['target']} returned {type(outcome).__name__}; expected Measurement or int")
        measurement.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"ok": True, **asdict(measurement)}
    except PeerUnavailable as error:
        return {"ok": False, "unavailable": True, "error": str(error)}
    except Exception as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}


def child_main() -> int:
    """The variant process (``python -m bench.child``): spec on stdin, report to the file it names."""
    spec = json.loads(sys.stdin.read())
    report = run_child(spec)
    Path(spec["report_path"]).write_text(json.dumps(report))
    return 0 if report["ok"] else 1


# --- running variants -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    timeout_s: float = 900.0
    env: dict[str, str] = field(default_factory=dict)
    #: False keeps the record count in ``--quick`` runs (a rate-bound variant needs its full count)
    scale_in_quick: bool = True
    #: a peer known to put sub-records in shards whose range excludes them: never "the best peer"
    misroutes: bool = False


@dataclass(slots=True)
class Result:
    variant: Variant
    ok: bool
    measurement: Measurement | None = None
    error: str = ""
    sink: dict[str, Any] = field(default_factory=dict)
    runs: int = 1

    @property
    def records_per_s(self) -> float:
        m = self.measurement
        return m.records / m.wall_s if m and m.wall_s > 0 else 0.0

    @property
    def cpu_us_per_record(self) -> float:
        m = self.measurement
        return m.cpu_s * 1e6 / m.records if m and m.records else 0.0


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool = False
    #: quick mode multiplies every ``workload["records"]`` (and ``records``) by this factor
    quick_factor: float = 0.1
    repeat: int = 1
    only: tuple[str, ...] = ()
    json_path: Path | None = None
    verbose: bool = False
    #: which sink a script that offers the choice runs against: "bench" (tests.support.sink) or "mini"
    sink: str = "bench"
    #: the arguments the script was given, to print the command that repeats the run
    argv: tuple[str, ...] = ()
    #: values of the script's own arguments (``parse_options(extra=...)``)
    extra: dict[str, Any] = field(default_factory=dict)

    def command(self, module: str) -> str:
        """The exact command that repeats this run."""
        return shlex.join([".venv/bin/python", "-m", module, *self.argv])


def parse_options(description: str, argv: Sequence[str] | None = None, *, sink_choice: bool = False,
                  extra: Callable[[argparse.ArgumentParser], None] | None = None) -> Options:
    """The command line every benchmark script shares (``--sink`` too when ``sink_choice``).

    ``extra`` adds a script's own arguments; their values land in ``Options.extra``.
    """
    parser = argparse.ArgumentParser(description=description)
    common = {action.dest for action in parser._actions}
    if sink_choice:
        parser.add_argument("--sink", choices=("bench", "mini"), default="bench",
                            help="bench: tests.support.sink, which verifies every aggregate (default); "
                                 "mini: bench.minisink, the independent minimal sink (no verification)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a tenth of the records")
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; the median run is reported")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only variants whose name contains TEXT (repeatable)")
    parser.add_argument("--json", type=Path, help=f"also write results as JSON (e.g. under {RESULTS_DIR})")
    parser.add_argument("--verbose", action="store_true", help="print each run as it finishes")
    common |= {action.dest for action in parser._actions}
    if extra is not None:
        extra(parser)
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(given)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return Options(quick=args.quick, repeat=args.repeat, only=tuple(args.only), json_path=args.json,
                   verbose=args.verbose, sink=getattr(args, "sink", "bench"), argv=tuple(given),
                   extra={k: v for k, v in vars(args).items() if k not in common})


def quick_kwargs(kwargs: dict[str, Any], factor: float) -> dict[str, Any]:
    """``kwargs`` for a ``--quick`` run: record counts scaled by ``factor``, to no fewer than 1000."""

    def scale(records: int) -> int:
        return min(records, max(1000, int(records * factor)))

    scaled = dict(kwargs)
    workload = scaled.get("workload")
    if isinstance(workload, dict) and "records" in workload:
        scaled["workload"] = {**workload, "records": scale(workload["records"])}
    for key in ("records", "expected_records"):
        if isinstance(scaled.get(key), int):
            scaled[key] = scale(scaled[key])
    return scaled


def run_once(variant: Variant, sink: SinkBase | None = None) -> Result:
    """One run of ``variant`` in a fresh interpreter."""
    env = child_python_env({**(sink.aws_env() if sink else {}), **variant.env})
    if sink is not None:
        sink.reset()
    sink_before = sink.stats() if sink is not None else {}
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        report_path = Path(scratch) / "report.json"
        spec = {"target": variant.target, "kwargs": variant.kwargs, "report_path": str(report_path)}
        try:
            completed = subprocess.run(
                [sys.executable, "-m", "bench.child"], input=json.dumps(spec), cwd=ROOT, env=env,
                capture_output=True, text=True, timeout=variant.timeout_s, check=False,
            )
        except subprocess.TimeoutExpired:
            return Result(variant, ok=False, error=f"timed out after {variant.timeout_s:.0f}s")
        if not report_path.exists():
            tail = (completed.stderr or completed.stdout)[-2000:]
            return Result(variant, ok=False, error=f"exited {completed.returncode} without a report: {tail}")
        report = json.loads(report_path.read_text())
    if not report.pop("ok"):
        prefix = "" if report.get("unavailable") else "FAILED: "
        if "traceback" in report:
            print(f"[{variant.name}] {report['traceback']}\n{completed.stderr[-3000:]}", file=sys.stderr)
        return Result(variant, ok=False, error=prefix + report["error"])
    measurement = Measurement(**report)
    result = Result(variant, ok=True, measurement=measurement)
    if sink is not None:
        result.sink = sink.delta(sink_before, sink.stats())
    return result


def median_run(runs: Sequence[Result]) -> Result:
    """The run with the median CPU time per record among the successful ones (the last run if none was).

    CPU per record is the number the tables compare; records/s follows the machine's load more.
    """
    good = [run for run in runs if run.ok]
    if not good:
        return runs[-1]
    chosen = sorted(good, key=lambda r: r.cpu_us_per_record)[len(good) // 2]
    chosen.runs = len(good)
    return chosen


def run_variants(variants: Sequence[Variant], *, sink: SinkBase | None = None,
                 options: Options | None = None) -> list[Result]:
    """Every variant (``options.repeat`` times each, the median run kept), in order.

    Repeats go round-robin (every variant once, then every variant again...), so that the runs of each
    row sample the same stretches of a shared machine's changing load, and rows of one table compare.
    """
    options = options or Options()
    chosen_variants = []
    for listed in variants:
        if options.only and not any(text in listed.name for text in options.only):
            continue
        variant = listed
        if options.quick and listed.scale_in_quick:
            variant = replace(listed, kwargs=quick_kwargs(listed.kwargs, options.quick_factor))
        chosen_variants.append(variant)
    runs: list[list[Result]] = [[] for _ in chosen_variants]
    for _ in range(options.repeat):
        for variant, variant_runs in zip(chosen_variants, runs, strict=True):
            variant_runs.append(run_once(variant, sink))
            if options.verbose:
                print(format_row(variant_runs[-1]), file=sys.stderr, flush=True)
    results = [median_run(variant_runs) for variant_runs in runs]
    if options.json_path is not None:
        write_json(results, options.json_path)
    return results


# --- reporting ------------------------------------------------------------------------------------

COLUMNS = ("variant", "records", "wall s", "records/s", "CPU s", "CPU µs/rec", "CPU %", "set-up ms", "RSS start",
           "RSS peak", "sink CPU %", "note")
#: the column :func:`format_table` adds after "CPU µs/rec" when given a reference row
RATIO_COLUMN = "vs best peer"


def _sink_summary(result: Result) -> tuple[str, list[str]]:
    """The sink's CPU share during the run (over the measured window: an upper bound) and its warnings."""
    sink = result.sink
    m = result.measurement
    if not sink or m is None:
        return "", []
    if not sink["requests"]:
        return "", []
    notes = []
    busy = sink["cpu_s"] / m.wall_s if m.wall_s > 0 else 0.0
    if busy > SINK_BUSY_WARNING:
        notes.append("sink was busy: the client may have been slowed")
    if sink["verify"] != "none" and sink["records"] and sink["user_records"] != m.records:
        notes.append(f"sink received {sink['user_records']:,} user records, not {m.records:,}")
    if sink["misrouted_user_records"]:
        notes.append(f"{sink['misrouted_user_records']} user records in the wrong shard")
    if sink["invalid_aggregates"]:
        notes.append(f"{sink['invalid_aggregates']} invalid aggregates")
    return f"{busy * 100:.0f}", notes


def delivered_correctly(result: Result) -> bool:
    """The run delivered every record, each in a shard whose range holds it, as far as the sink could tell.

    A sink without verification cannot tell; then the variant's own ``misroutes`` flag decides.
    """
    if not result.ok or result.measurement is None or result.variant.misroutes:
        return False
    sink = result.sink
    if not sink or sink.get("verify", "none") == "none":
        return True
    return (not sink["misrouted_user_records"] and not sink["invalid_aggregates"]
            and (not sink["records"] or sink["user_records"] == result.measurement.records))


def format_row(result: Result) -> str:
    return "  ".join(_row_cells(result))


def _row_cells(result: Result, reference: Result | None = None) -> list[str]:
    variant = result.variant
    m = result.measurement
    ratio = [] if reference is None else ["-"]
    if not result.ok or m is None:
        return [variant.name, "-", "-", "-", "-", "-", *ratio, "-", "-", "-", "-", "-", result.error]
    if reference is not None and reference.cpu_us_per_record:
        ratio = [f"{result.cpu_us_per_record / reference.cpu_us_per_record:.2f}"]
    sink_busy, sink_notes = _sink_summary(result)
    notes = [variant.note] if variant.note else []
    notes += sink_notes
    notes += [f"{k}={v}" for k, v in m.extra.items()]
    if result.runs > 1:
        notes.append(f"median of {result.runs}")
    cpu_share = m.cpu_s / m.wall_s * 100 if m.wall_s > 0 else 0.0
    setup = f"{m.phases['setup'] * 1000:.0f}" if "setup" in m.phases else ""
    return [
        variant.name, f"{m.records:,}", f"{m.wall_s:.2f}", f"{result.records_per_s:,.0f}", f"{m.cpu_s:.2f}",
        f"{result.cpu_us_per_record:.2f}", *ratio, f"{cpu_share:.0f}", setup, f"{m.rss_start_mib:.0f}",
        f"{m.peak_rss_mib:.0f}", sink_busy, "; ".join(notes),
    ]


def machine_summary() -> str:
    load = os.getloadavg()
    return (f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}, "
            f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def format_table(results: Sequence[Result], *, title: str = "", reference: Result | None = None) -> str:
    """A plain-text table; RSS in MiB, CPU % of one core, the note column last and unpadded.

    With ``reference`` (the best peer), a column gives each row's CPU per record over the reference's.
    """
    header = list(COLUMNS)
    if reference is not None:
        header.insert(header.index("CPU µs/rec") + 1, RATIO_COLUMN)
    rows = [header] + [_row_cells(r, reference) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    if title:
        lines += [title, "=" * len(title)]
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:], strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    notes = ["RSS in MiB", "CPU % is of one core", "set-up: the client's construction and first calls, in CPU",
             "sink CPU % is the sink process's"]
    if reference is not None:
        notes.append(f"{RATIO_COLUMN}: CPU µs/rec over {reference.variant.name}'s")
    lines.append(f"({machine_summary()}; {'; '.join(notes)})")
    return "\n".join(lines)


def write_json(results: Sequence[Result], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for result in results:
        row: dict[str, Any] = {"variant": result.variant.name, "target": result.variant.target,
                               "kwargs": result.variant.kwargs, "ok": result.ok, "error": result.error,
                               "sink": result.sink, "runs": result.runs}
        if result.measurement is not None:
            row.update(asdict(result.measurement), records_per_s=result.records_per_s,
                       cpu_us_per_record=result.cpu_us_per_record)
        rows.append(row)
    path.write_text(json.dumps({"machine": machine_summary(), "time": time.time(), "results": rows}, indent=2))


def wait_until(condition: Callable[[], T | None], timeout: float, what: str, *, interval: float = 0.05,
               explain: Callable[[], str] | None = None) -> T:
    """Poll ``condition`` until it returns something truthy; after ``timeout`` seconds, RuntimeError.

    tests.support.waiting.wait_for for scripts: a RuntimeError (which a script reports as a failed run,
    not a failed assertion), naming ``what`` was awaited and, from ``explain()``, the state at the
    deadline.  ``condition`` may raise to give up early (a process it waits on has died).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"; {explain()}" if explain is not None else ""
            raise RuntimeError(f"{what} not reached within {timeout:.0f}s{detail}")
        time.sleep(interval)
