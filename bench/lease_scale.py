"""The lease table at scale (issue 14): what coordination costs in DynamoDB, and how fast it moves.

    .venv/bin/python -m bench.lease_scale [--quick] [--scenarios 32x4:3000,256x8:10000,1000x20:60000]

For each scenario (leases x workers, failover time in ms), against real DynamoDB in LocalStack (port
``LOCALSTACK_PORT``, default 4566), every request counted by :mod:`bench.ddb_counting_proxy`:

1. one worker starts and takes every lease;
2. the other workers join at once: **seconds to balance** from their start (after their first shard
   sync) until every worker holds floor or ceil(leases / workers);
3. **steady state**: DynamoDB items read and write requests per minute over a whole number of taker
   intervals, with nothing moving;
4. one worker's process is killed with SIGKILL: **seconds to take over** until all its leases are held
   by others;
5. **takes within one cycle**: leases taken twice less than one taker interval apart, from the join
   to the end of the takeover (target: none).

The workers are the real :class:`kcl.coordinator.LeaseCoordinator` (taker, renewer, handoffs, shard
sync) in worker-host processes; the shard list is synthetic (a stub ListShards), so 1,000 leases need
no 1,000 Kinesis shards, and a handoff is answered at once (no record processor).  Beside each figure:
the Java KCL 2.x's, computed from its intervals (every worker scans the table every taker interval
T = 2 x (failover + epsilon); it steals one lease per run; a dead worker's lease is taken at the second
scan after its last renewal, at worst 2 T).  Failover times are short so that a run takes minutes; the
renewals they imply (leases / (failover / 3) per second) must stay within what LocalStack serves on
the machine, and a worker renews with up to 100 threads (maxLeaseRenewalThreads = 100): the first worker
holds all 1,000 leases while 950 of them are handed over, and LocalStack answers in hundreds of
milliseconds then, where DynamoDB answers in a few.

``LEASE_SCALE_DEBUG=1`` runs the worker hosts at debug level, keeps their logs, and prints which worker
took each of the dead worker's leases when, and every lease taken twice within one taker interval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import T, wait_until

ROOT = Path(__file__).resolve().parents[1]
EPSILON = 0.025
DEFAULT_SCENARIOS = "32x4:3000,256x8:10000,1000x20:60000"


# --- inside a worker-host process ---------------------------------------------------------------------


class _SyntheticKinesis:
    """ListShards for ``count`` open shards splitting the hash space evenly; nothing else is called."""

    def __init__(self, count: int) -> None:
        step = 2**128 // count
        self.shards = [{
            "ShardId": f"shardId-{index:012d}",
            "HashKeyRange": {"StartingHashKey": str(index * step),
                             "EndingHashKey": str(2**128 - 1 if index == count - 1 else (index + 1) * step - 1)},
            "SequenceNumberRange": {"StartingSequenceNumber": "0"},
        } for index in range(count)]

    async def list_shards(self, **_: Any) -> dict[str, Any]:
        return {"Shards": self.shards}


def _emit(event: str, worker: str, shard: str | None = None) -> None:
    line = json.dumps({"e": event, "w": worker, "s": shard, "t": time.monotonic()})
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _host(table_name: str, leases: int, workers: list[str], failover_ms: int, endpoint: str) -> None:
    from kcl.config import InitialPosition, MetricsLevel, WorkerConfig
    from kcl.coordinator import LeaseCoordinator
    from kcl.leases import LeaseTable, TableSettings
    from kcl.metrics import KclMetrics
    from kcl.renewer import HeldLease
    from kpl.cloudwatch import MetricsRegistry
    from kpl.logs import configure_logging

    configure_logging("debug" if os.environ.get("LEASE_SCALE_DEBUG") else "info")  # to the host's log file
    coordinators: list[LeaseCoordinator] = []

    class Listener:
        def __init__(self, name: str) -> None:
            self.name = name
            self.coordinator: LeaseCoordinator | None = None

        def lease_acquired(self, held: HeldLease) -> None:
            _emit("acquired", self.name, held.shard_id)

        def lease_lost(self, shard_id: str) -> None:
            assert self.coordinator is not None
            held = self.coordinator.held.get(shard_id)
            if held is not None and held.lost:
                self.coordinator.held.remove(shard_id, held.token)
            _emit("lost", self.name, shard_id)

        def handoff_requested(self, shard_id: str) -> None:
            coordinator = self.coordinator
            assert coordinator is not None
            held = coordinator.held.get(shard_id)
            if held is not None:  # no processor to shut down: hand over at once
                asyncio.get_running_loop().create_task(self._hand_over(coordinator, shard_id, held.token))

        async def _hand_over(self, coordinator: LeaseCoordinator, shard_id: str, token: str) -> None:
            await coordinator.relinquish(shard_id, token)
            _emit("released", self.name, shard_id)

    kinesis = _SyntheticKinesis(leases)
    tables: list[LeaseTable] = []
    for name in workers:
        config = WorkerConfig(
            worker_id=name, failover_time_ms=failover_ms, initial_position_in_stream=InitialPosition.TRIM_HORIZON,
            metrics_level=MetricsLevel.NONE, cleanup_leases_upon_shard_completion=False, max_lease_renewal_threads=100,
            graceful_lease_handoff_timeout_ms=10_000,
        )
        table = LeaseTable(TableSettings(table_name=table_name, endpoint_url=endpoint,
                                         read_timeout=max(2.0, min(10.0, failover_ms / 2000)),
                                         max_pool_connections=config.max_lease_renewal_threads + 16))
        listener = Listener(name)
        coordinator = LeaseCoordinator(table=table, kinesis=kinesis, stream_name="bench-synthetic", config=config,
                                       metrics=KclMetrics(MetricsRegistry(), name, MetricsLevel.NONE),
                                       listener=listener)
        listener.coordinator = coordinator
        coordinators.append(coordinator)
        tables.append(table)

    async def start(coordinator: LeaseCoordinator) -> None:
        await coordinator.start()
        _emit("started", coordinator.worker_id)

    await asyncio.gather(*(start(coordinator) for coordinator in coordinators))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for coordinator in coordinators:
        await coordinator.stop_taking()
    for coordinator in coordinators:
        for held in coordinator.held.all():
            await coordinator.relinquish(held.shard_id, held.token)
        coordinator.stop_renewing()
    for table in tables:
        table.close()


# --- the benchmark process ------------------------------------------------------------------------------


@dataclass
class Host:
    process: subprocess.Popen[bytes]
    workers: list[str]
    events: list[dict[str, Any]]
    lock: threading.Lock

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


@dataclass
class Scenario:
    leases: int
    workers: int
    failover_ms: int

    @property
    def failover(self) -> float:
        return self.failover_ms / 1000

    @property
    def cycle(self) -> float:
        return 2 * (self.failover + EPSILON)

    @property
    def renewal(self) -> float:
        return self.failover / 3 - EPSILON

    @property
    def label(self) -> str:
        return f"{self.leases} x {self.workers}"


@dataclass
class Result:
    scenario: Scenario
    balance_seconds: float
    steady_minutes: float
    steady: Any
    takeover_seconds: float
    takeover_first: float
    double_takes: int
    steady_takes: int
    lost: int
    notes: list[str] = field(default_factory=list)


class Run:
    def __init__(self, scenario: Scenario, proxy_url: str, scratch: Path) -> None:
        self.scenario = scenario
        self.proxy_url = proxy_url
        self.scratch = scratch
        self.table = f"bench-leases-{uuid.uuid4().hex[:8]}"
        self.hosts: list[Host] = []
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def host(self, workers: list[str]) -> Host:
        env = {**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": self.proxy_url, "PYTHONPATH": str(ROOT)}
        log = (self.scratch / f"{self.table}-{workers[0]}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.lease_scale", "--host", "--table", self.table, "--leases",
             str(self.scenario.leases), "--failover-ms", str(self.scenario.failover_ms), "--endpoint", self.proxy_url,
             "--workers", ",".join(workers)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
        )
        log.close()
        host = Host(process, workers, self.events, self.lock)
        threading.Thread(target=self._read, args=(process,), daemon=True).start()
        self.hosts.append(host)
        return host

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                with self.lock:
                    self.events.append(event)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def owners(self) -> dict[str, str | None]:
        owner: dict[str, str | None] = {}
        for event in self.snapshot():
            if event["e"] == "acquired":
                owner[event["s"]] = event["w"]
            elif event["e"] in ("lost", "released") and owner.get(event["s"]) == event["w"]:
                owner[event["s"]] = None
        return owner

    def wait(self, condition: Callable[[], T | None], timeout: float, what: str) -> T:
        """Until ``condition`` holds; a worker host that exits (other than the victim's kill -9) ends the wait."""

        def met_while_hosts_run() -> T | None:
            value = condition()
            for host in self.hosts if not value else ():
                if host.process.poll() not in (None, -signal.SIGKILL):
                    raise RuntimeError(f"worker host {host.workers[0]}... exited with {host.process.returncode}; "
                                       f"see {self.scratch}")
            return value

        def leases_by_owner() -> str:
            return f"leases by owner {dict(Counter(self.owners().values()))}; host logs in {self.scratch}"

        return wait_until(met_while_hosts_run, timeout, what, explain=leases_by_owner)

    def balanced(self, workers: list[str]) -> bool:
        counts = Counter(owner for owner in self.owners().values() if owner is not None)
        low = self.scenario.leases // len(workers)
        return (sum(counts.values()) == self.scenario.leases and set(counts) == set(workers)
                and all(low <= count <= low + 1 for count in counts.values()))

    def started(self, workers: list[str]) -> float | None:
        marks = {e["w"]: e["t"] for e in self.snapshot() if e["e"] == "started"}
        return max(marks[w] for w in workers) if all(w in marks for w in workers) else None


def run_scenario(scenario: Scenario, proxy: Any, dynamodb: Any, scratch: Path) -> Result:
    run = Run(scenario, proxy.url, scratch)
    dynamodb.create_table(TableName=run.table, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}])
    names = [f"W{index:02d}" for index in range(1, scenario.workers + 1)]
    first, victim, others = names[0], names[-1], names[1:-1]
    cycle = scenario.cycle
    try:
        run.host([first])
        run.wait(lambda: list(run.owners().values()).count(first) == scenario.leases, 120 + 4 * cycle,
                 f"{first} holding all {scenario.leases} leases")
        joined = time.monotonic()
        joiners = [run.host(others)] if others else []
        victim_host = run.host([victim])
        joiners.append(victim_host)
        started = run.wait(lambda: run.started(names[1:]), 120, "joining workers started")
        run.wait(lambda: run.balanced(names), 10 * cycle + 60, "balanced")
        balanced_at = max(e["t"] for e in run.snapshot() if e["e"] in ("acquired", "released"))
        balance_seconds = balanced_at - started

        time.sleep(scenario.renewal)  # let the last handoff's follow-up reads finish: not part of the window
        windows = max(1, math.ceil(60 / cycle))
        before, events_before, t0 = proxy.counts(), len(run.snapshot()), time.monotonic()
        time.sleep(windows * cycle)  # the measured window: nothing to wait for, only time passing
        steady = proxy.counts().minus(before)
        steady_minutes = (time.monotonic() - t0) / 60
        steady_takes = sum(1 for e in run.snapshot()[events_before:] if e["e"] == "acquired")

        doomed = {shard for shard, owner in run.owners().items() if owner == victim}
        killed = time.monotonic()
        victim_host.kill()

        def taken_over() -> list[float] | None:
            times = {e["s"]: e["t"] for e in run.snapshot()
                     if e["e"] == "acquired" and e["s"] in doomed and e["t"] > killed}
            return sorted(times.values()) if len(times) == len(doomed) else None

        takeovers = run.wait(taken_over, 3 * cycle + 60, "takeover")
        if os.environ.get("LEASE_SCALE_DEBUG"):
            by_worker: dict[str, list[float]] = {}
            for event in run.snapshot():
                if event["e"] == "acquired" and event["s"] in doomed and event["t"] > killed:
                    by_worker.setdefault(event["w"], []).append(round(event["t"] - killed, 1))
            print(f"  killed {victim} at monotonic {killed:.1f}; its leases taken (s after): {by_worker}")
        acquisitions: dict[str, list[tuple[float, str]]] = {}
        for event in run.snapshot():
            if event["e"] == "acquired" and event["t"] >= joined:  # moves, not the first worker's initial takes
                acquisitions.setdefault(event["s"], []).append((event["t"], event["w"]))
        doubles = [(shard, a, b) for shard, times in acquisitions.items() for a, b in itertools.pairwise(times)
                   if b[0] - a[0] < cycle]
        double = len(doubles)
        if os.environ.get("LEASE_SCALE_DEBUG"):
            for shard, a, b in doubles:
                print(f"  {shard}: {a[1]} at {a[0] - killed:+.2f} then {b[1]} at {b[0] - killed:+.2f} (s from kill)")
        lost = sum(1 for e in run.snapshot() if e["e"] == "lost" and e["w"] != victim)
        return Result(scenario, balance_seconds, steady_minutes, steady, takeovers[-1] - killed,
                      takeovers[0] - killed, double, steady_takes, lost)
    finally:
        for host in run.hosts:
            host.terminate()
        for host in run.hosts:
            with contextlib.suppress(subprocess.TimeoutExpired):
                host.process.wait(timeout=60)
        with contextlib.suppress(Exception):
            dynamodb.delete_table(TableName=run.table)


def java_figures(scenario: Scenario) -> dict[str, float]:
    """The Java KCL 2.x at the same settings, from its intervals (research/kcl.md section 2)."""
    cycle, renewal = scenario.cycle, scenario.renewal
    share = math.ceil(scenario.leases / scenario.workers)
    return {
        # every worker's taker scans the whole table once per taker interval
        "reads": scenario.workers * scenario.leases * 60 / cycle,
        "writes": scenario.leases * 60 / renewal,
        # each new worker steals one lease per taker run (maxLeasesToStealAtOneTime = 1), the first at once
        "balance": (share - 1) * cycle,
        # the second scan after the last renewal finds the counter unchanged for more than failover
        "takeover": 2 * cycle,
    }


def print_table(results: list[Result]) -> None:
    header = ("leases x workers", "failover", "items read/min", "Java 2.x", "writes/min", "Java 2.x",
              "balance s", "target 2T", "Java 2.x", "takeover s", "target F+T", "Java 2.x", "double takes")
    rows = [header]
    for result in results:
        s, java = result.scenario, java_figures(result.scenario)
        minutes = result.steady_minutes
        rows.append((
            s.label, f"{s.failover:g} s", f"{result.steady.reads / minutes:,.0f}", f"{java['reads']:,.0f}",
            f"{result.steady.writes / minutes:,.0f}", f"{java['writes']:,.0f}",
            f"{result.balance_seconds:.1f}", f"{2 * s.cycle:.1f}", f"~{java['balance']:.0f}",
            f"{result.takeover_seconds:.1f}", f"{s.failover + s.cycle:.1f}", f"<= {java['takeover']:.0f}",
            str(result.double_takes),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print("| " + " | ".join(cell.ljust(width) for cell, width in zip(rows[0], widths, strict=True)) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows[1:]:
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")
    print()
    for result in results:
        s = result.scenario
        ops = dict(sorted(result.steady.requests.items()))
        print(f"{s.label}: steady window {result.steady_minutes:.2f} min ({ops}), reads {result.steady.reads}, "
              f"takes in the window {result.steady_takes}; takeover first/last {result.takeover_first:.1f}/"
              f"{result.takeover_seconds:.1f} s; leases lost by live workers {result.lost}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS, help="LEASESxWORKERS:FAILOVER_MS,...")
    parser.add_argument("--quick", action="store_true", help="only 32 x 4")
    parser.add_argument("--host", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--leases", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--failover-ms", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--workers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.host:
        asyncio.run(_host(args.table, args.leases, args.workers.split(","), args.failover_ms, args.endpoint))
        return 0
    return _bench(args.scenarios.split(",")[:1] if args.quick else args.scenarios.split(","))


def _bench(specs: list[str]) -> int:
    from bench.ddb_counting_proxy import CountingProxy
    from kpl.aws import ClientConfig, sync_client

    port = os.environ.get("LOCALSTACK_PORT", "4566")
    endpoint = f"http://127.0.0.1:{port}"
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")] + ["AWS_PROFILE"]:
        os.environ.pop(name, None)
    os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test",
                       "AWS_SECRET_ACCESS_KEY": "test", "AWS_EC2_METADATA_DISABLED": "true"})
    dynamodb = sync_client("dynamodb", ClientConfig(endpoint_url=endpoint, region="us-east-1"))
    scenarios = []
    for spec in specs:
        shape, _, failover = spec.partition(":")
        leases, _, workers = shape.partition("x")
        scenarios.append(Scenario(int(leases), int(workers), int(failover or 10_000)))
    results = []
    failed = []
    scratch = tempfile.mkdtemp(prefix="bench-leases-")
    with CountingProxy(endpoint) as proxy:
        for scenario in scenarios:
            print(f"[lease_scale] {scenario.label}, failover {scenario.failover:g} s ...", flush=True)
            try:
                results.append(run_scenario(scenario, proxy, dynamodb, Path(scratch)))
            except RuntimeError as exc:
                print(f"[lease_scale] {scenario.label} failed: {exc}", flush=True)
                failed.append(scenario.label)
            else:
                print_table(results[-1:])
    print(f"\nlease table at scale on LocalStack ({' '.join(sys.argv[1:]) or 'defaults'}); "
          "T = taker interval 2 x (failover + 25 ms)")
    print_table(results)
    if failed:
        print(f"failed: {', '.join(failed)}; worker-host logs kept in {scratch}")
        return 1
    if os.environ.get("LEASE_SCALE_DEBUG"):
        print(f"worker-host logs kept in {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
