"""The consumer (issue 4): deaggregation + dispatch throughput beside the peers, then lease coordination.

    .venv/bin/python -m bench.consumer_bench [--quick] [--repeat N] [--only TEXT] [--json FILE]
                                             [--skip-throughput] [--skip-coordination] [--failover-ms MS]

Table 1 (harness, each row a fresh process; the sink serves pre-filled streams):

* ``kcl dispatch``: the real :class:`kcl.shard_consumer.ShardConsumer` fed GetRecords-shaped batches of
  50 KB KPL aggregates (100-byte user records) from memory, with a processor that only counts: what
  the consumer itself costs per user record (deaggregation, position filtering, checkpoint
  bookkeeping, metrics, the call into the processor).  Lease-table writes are answered in memory;
  none is on this path except the final SHARD_END checkpoint.
* ``kcl Worker``: a whole worker (lease table on LocalStack, Kinesis on the sink) reading a
  pre-filled 4-shard stream until every user record has been delivered; start-up included.
* the peers: aws-kinesis-agg's deaggregator in process, and async-kinesis's Consumer on the same
  streams.

Table 2 (LocalStack, ``kcl-worker`` processes, the KCL's default timings unless ``--failover-ms``):
takeover after ``kill -9``, time to balance 32 shards from 1 to 4 workers, and DynamoDB requests per
lease per minute.  Needs LocalStack on ``LOCALSTACK_PORT`` (default 4566).  The lease table at larger
scale, with reads counted by a proxy: ``python -m bench.lease_scale``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import (
    ROOT,
    Measurement,
    PeerUnavailable,
    Stopwatch,
    Variant,
    format_table,
    parse_options,
    run_variants,
    wait_until,
)
from bench.peers import _aggregated_get_records_output, consumer_peer_variants, prefilled_streams
from bench.workload import Workload
from tests.support.sink import SinkProcess

RECORDS = 1_000_000
SHARDS = 4
#: how often the coordination measurements read the lease table (a consistent Scan each time)
POLL_S = 0.1
#: GetRecords returns at most 10 MiB: about 200 aggregates of 50 KB.
AGGREGATES_PER_BATCH = 200


# --- table 1: the dispatch path, in process ----------------------------------------------------------


class _InMemoryLeaseWrites:
    """Answers the consumer's few lease writes (the SHARD_END checkpoint) without a network."""

    def checkpoint(self, lease: Any, value: Any) -> Any:
        return lease.with_(lease_counter=lease.lease_counter + 1, checkpoint=value)

    async def call(self, method: Any, *args: Any) -> Any:
        return await asyncio.to_thread(method, *args)


class _Coordination:
    """What a shard consumer asks of its coordinator, for a lease that needs no coordination."""

    def __init__(self) -> None:
        self.table = _InMemoryLeaseWrites()
        self._signal = asyncio.Event()

    async def unfinished_parents(self, parents: Any) -> set[str]:
        return set()

    def shard_end_signal(self) -> asyncio.Event:
        return self._signal

    async def create_children(self, shard_id: str, child_shards: Any) -> None:
        return None

    async def shard_completed(self, shard_id: str, token: str) -> None:
        return None

    async def relinquish(self, shard_id: str, token: str) -> None:
        return None


async def kcl_dispatch(workload: dict[str, Any], sync_processor: bool = False) -> Measurement:
    """The real ShardConsumer over in-memory GetRecords batches; the processor only counts."""
    from kcl.config import WorkerConfig
    from kcl.deaggregation import Deaggregator
    from kcl.leases import Lease
    from kcl.metrics import KclMetrics
    from kcl.processor import RecordProcessor
    from kcl.renewer import HeldLeases
    from kcl.retrieval import BatchQueue, FetchedBatch, StartingPosition
    from kcl.sequence import ESN_TRIM_HORIZON
    from kcl.shard_consumer import ShardConsumer
    from kpl.cloudwatch import MetricsRegistry
    from kpl.hashing import MAX_HASH_KEY, HashRange

    items = Workload.from_dict(workload)
    records = _aggregated_get_records_output(items)
    batches = [records[i:i + AGGREGATES_PER_BATCH] for i in range(0, len(records), AGGREGATES_PER_BATCH)]
    delivered = 0

    class Counting(RecordProcessor):
        def process_records(self, records: Any, checkpointer: Any, millis_behind_latest: int) -> None:
            nonlocal delivered
            delivered += len(records)

    class AsyncCounting(RecordProcessor):
        async def process_records(self, records: Any, checkpointer: Any, millis_behind_latest: int) -> None:
            nonlocal delivered
            delivered += len(records)

        async def shard_ended(self, checkpointer: Any) -> None:
            await checkpointer.acheckpoint()

    class MemoryFetcher:
        def __init__(self, shard_id: str, position: StartingPosition, queue: BatchQueue) -> None:
            self.queue = queue

        async def run(self) -> None:
            for batch in batches:
                await self.queue.put(FetchedBatch(batch, 0, None, sum(len(r["Data"]) for r in batch)))
            await self.queue.put(FetchedBatch([], 0, [], 0))

    config = WorkerConfig(worker_id="bench", failover_time_ms=3_600_000)
    coordination = _Coordination()
    held_leases = HeldLeases(coordination.table, "bench", config.failover_time, 0.025)  # type: ignore[arg-type]
    held = held_leases.add(Lease("shardId-000000000000", lease_owner="bench", checkpoint=ESN_TRIM_HORIZON),
                           time.monotonic())
    consumer = ShardConsumer(
        held=held, held_leases=held_leases, processor=Counting() if sync_processor else AsyncCounting(),
        coordinator=coordination,  # type: ignore[arg-type]
        fetcher_factory=MemoryFetcher, deaggregator=Deaggregator(held.shard_id, HashRange(0, MAX_HASH_KEY)),
        config=config, metrics=KclMetrics(MetricsRegistry(), "bench"),
    )
    with Stopwatch() as watch:
        outcome = await consumer.run()
    if delivered != items.records:
        raise RuntimeError(f"dispatched {delivered} user records, expected {items.records} ({outcome})")
    return watch.result(delivered, aggregates=len(records))


def kcl_deaggregate_only(workload: dict[str, Any]) -> Measurement:
    """Deaggregator.deaggregate alone over the same batches (no dispatch), for reference."""
    from kcl.deaggregation import Deaggregator
    from kpl.hashing import MAX_HASH_KEY, HashRange

    items = Workload.from_dict(workload)
    records = _aggregated_get_records_output(items)
    deaggregator = Deaggregator("shardId-000000000000", HashRange(0, MAX_HASH_KEY))
    count = 0
    with Stopwatch() as watch:
        for start in range(0, len(records), AGGREGATES_PER_BATCH):
            count += len(deaggregator.deaggregate(records[start:start + AGGREGATES_PER_BATCH]))
    return watch.result(count)


async def kcl_worker_consumer(expected_records: int, stream: str) -> Measurement:
    """A whole Worker: Kinesis from the sink (AWS_ENDPOINT_URL), leases on LocalStack (AWS_ENDPOINT_URL_DYNAMODB)."""
    if not os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
        raise PeerUnavailable("needs LocalStack for the lease table (AWS_ENDPOINT_URL_DYNAMODB)")
    from kcl import InitialPosition, RecordProcessor, Worker, WorkerConfig
    from kpl.aws import sync_client

    done = asyncio.Event()
    delivered = 0

    class Counting(RecordProcessor):
        async def process_records(self, records: Any, checkpointer: Any, millis_behind_latest: int) -> None:
            nonlocal delivered
            delivered += len(records)
            if delivered >= expected_records:
                done.set()

    application = f"bench-consumer-{uuid.uuid4().hex[:8]}"
    config = WorkerConfig(initial_position_in_stream=InitialPosition.TRIM_HORIZON)
    worker = Worker(stream, application, Counting, config)
    try:
        with Stopwatch() as watch:
            await worker.start()
            await asyncio.wait_for(done.wait(), 600)
        await worker.stop()
    finally:
        with contextlib.suppress(Exception):
            sync_client("dynamodb").delete_table(TableName=application)
    return watch.result(delivered)


def throughput(options: Any, localstack: str | None) -> None:
    workload = Workload(records=RECORDS, record_size=100)
    plain, aggregated = prefilled_streams(workload, shards=SHARDS)
    me = "bench.consumer_bench:"
    dynamodb_env = {"AWS_ENDPOINT_URL_DYNAMODB": localstack} if localstack else {}
    variants = [
        Variant("kcl dispatch, async processor", me + "kcl_dispatch", {"workload": workload.to_dict()},
                note="ShardConsumer + Deaggregator, 50 KB aggregates; processor counts only"),
        Variant("kcl dispatch, sync processor", me + "kcl_dispatch",
                {"workload": workload.to_dict(), "sync_processor": True}, note="as above; one thread hop per batch"),
        Variant("kcl deaggregation only", me + "kcl_deaggregate_only", {"workload": workload.to_dict()},
                note="Deaggregator.deaggregate with the hash-range check"),
        Variant("kcl Worker, KPL aggregates", me + "kcl_worker_consumer",
                {"expected_records": aggregated.user_records, "stream": aggregated.stream}, env=dynamodb_env,
                note="whole worker from the sink; leases on LocalStack; start-up included"),
        Variant("kcl Worker, plain records", me + "kcl_worker_consumer",
                {"expected_records": plain.user_records, "stream": plain.stream}, env=dynamodb_env,
                note="whole worker from the sink; botocore parses every record"),
        *consumer_peer_variants(workload, plain, aggregated),
    ]
    with SinkProcess(streams={"bench": SHARDS}, prefill=[plain, aggregated]) as sink:
        results = run_variants(variants, sink=sink, options=options)
    print(format_table(results, title=f"consumer: user records/s, 100-byte records, {SHARDS}-shard pre-filled streams"))
    print(flush=True)


# --- table 2: coordination on LocalStack ------------------------------------------------------------


class InitRecorder:
    """Processor for the coordination runs: appends (worker, shard, monotonic time) on each initialize."""

    def __init__(self) -> None:
        self.path = Path(os.environ["BENCH_KCL_EVENTS"])
        self.worker = os.environ["BENCH_KCL_WORKER"]

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps({"w": self.worker, "s": shard_id, "m": time.monotonic()}) + "\n")

    def process_records(self, records: Any, checkpointer: Any, millis_behind_latest: int) -> None:
        checkpointer.checkpoint()

    def lease_lost(self) -> None:
        return None

    def shard_ended(self, checkpointer: Any) -> None:
        checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: Any) -> None:
        checkpointer.checkpoint()


class Coordination:
    """kcl-worker processes on LocalStack, observed through the lease table and their initialize calls."""

    def __init__(self, endpoint: str, failover_ms: int, scratch: Path) -> None:
        from kpl.aws import ClientConfig, sync_client

        self.env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_EC2_METADATA_DISABLED": "true",
                    "PYTHONPATH": str(ROOT)}
        for name in ("AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
            self.env.pop(name, None)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("AWS_")})
        config = ClientConfig(endpoint_url=endpoint, region="us-east-1")
        self.kinesis = sync_client("kinesis", config)
        self.dynamodb = sync_client("dynamodb", config)
        self.failover_ms = failover_ms
        self.scratch = scratch
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def renewal(self) -> float:
        return self.failover_ms / 3000 - 0.025

    @property
    def cycle(self) -> float:
        return 2 * (self.failover_ms + 25) / 1000

    def stream(self, shards: int) -> str:
        name = f"bench-kcl-{uuid.uuid4().hex[:8]}"
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        wait_until(lambda: self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
            "StreamStatus"] == "ACTIVE", 120, f"stream {name} ACTIVE", interval=0.2)
        return name

    def start(self, name: str, stream: str) -> None:
        properties = self.scratch / f"{stream}.properties"
        properties.write_text(f"failoverTimeMillis = {self.failover_ms}\ninitialPositionInStream = TRIM_HORIZON\n"
                              "metricsLevel = NONE\n")
        env = {**self.env, "BENCH_KCL_EVENTS": str(self.scratch / f"{stream}.events"), "BENCH_KCL_WORKER": name}
        log = (self.scratch / f"{stream}-{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "kcl.cli", "--stream", stream, "--application", stream, "--processor",
             "bench.consumer_bench:InitRecorder", "--worker-id", name, "--config", str(properties)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()

    def owners(self, stream: str) -> dict[str, str | None]:
        try:
            items = self.dynamodb.scan(TableName=stream, ConsistentRead=True)["Items"]
        except self.dynamodb.exceptions.ResourceNotFoundException:
            return {}
        return {item["leaseKey"]["S"]: (item["leaseOwner"]["S"] if "leaseOwner" in item
                                        and "checkpointOwner" not in item else None) for item in items}

    def inits(self, stream: str) -> list[dict[str, Any]]:
        path = self.scratch / f"{stream}.events"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
        self.processes.clear()

    def request_counts(self, stream: str) -> Counter[str]:
        counts: Counter[str] = Counter()
        for log in self.scratch.glob(f"{stream}-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if '"lease table requests"' in line:
                    counts.update(json.loads(line)["requests"])
        return counts

    def cleanup(self, stream: str) -> None:
        with contextlib.suppress(Exception):
            self.kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        with contextlib.suppress(Exception):
            self.dynamodb.delete_table(TableName=stream)

    # --- the three measurements ---------------------------------------------------------------------

    def takeover(self) -> list[float]:
        stream = self.stream(4)
        try:
            self.start("A", stream)
            self.start("B", stream)
            wait_until(lambda: Counter(self.owners(stream).values()) == Counter({"A": 2, "B": 2}),
                       6 * self.cycle + 60, "2 + 2 leases", interval=POLL_S)
            victims = [shard for shard, owner in self.owners(stream).items() if owner == "A"]
            killed = time.monotonic()
            self.processes.pop("A").kill()

            def taken() -> list[float]:
                times = {e["s"]: e["m"] - killed for e in self.inits(stream)
                         if e["w"] == "B" and e["s"] in victims and e["m"] > killed}
                return sorted(times.values()) if len(times) == len(victims) else []

            return wait_until(taken, 3 * self.failover_ms / 1000 + 60, "takeover", interval=POLL_S)
        finally:
            self.stop_all()
            self.cleanup(stream)

    def balance(self) -> tuple[float, dict[str, int], float, Counter[str]]:
        stream = self.stream(32)
        try:
            self.start("W1", stream)
            wait_until(lambda: list(self.owners(stream).values()).count("W1") == 32, 120, "one worker with 32 leases",
                       interval=POLL_S)
            started = time.monotonic()
            for name in ("W2", "W3", "W4"):
                self.start(name, stream)

            def balanced() -> dict[str, int] | None:
                owners = self.owners(stream)
                counts = Counter(owner for owner in owners.values() if owner is not None)
                unowned = len(owners) - sum(counts.values())
                return dict(counts) if sorted(counts.values()) == [8, 8, 8, 8] and not unowned else None

            final = wait_until(balanced, 10 * self.cycle + 60, "8/8/8/8", interval=POLL_S)
            took = time.monotonic() - started
            steady_from = time.monotonic()
            time.sleep(60)  # the measured window for DynamoDB requests: nothing to wait for, only time
            minutes = (time.monotonic() - steady_from + took) / 60
            self.stop_all()
            return took, final, minutes, self.request_counts(stream)
        finally:
            self.stop_all()
            self.cleanup(stream)


def coordination(endpoint: str, failover_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-kcl-") as scratch:
        run = Coordination(endpoint, failover_ms, Path(scratch))
        takeovers = run.takeover()
        took, counts, minutes, requests = run.balance()
    failover = failover_ms / 1000
    total = sum(requests.values())
    per_lease_minute = total / 32 / minutes
    renewals = requests.get("UpdateItem:renew", 0) / 32 / minutes
    scans = requests.get("Scan", 0) / 32 / minutes
    rows = [
        ("takeover after kill -9 (2 shards)", f"{min(takeovers):.2f}-{max(takeovers):.2f} s",
         f"bound failover + taker cycle = {failover + run.cycle:.2f} s; KCL 2.x: up to 2 taker cycles "
         f"({2 * run.cycle:.0f} s)"),
        ("balance 32 shards, 1 -> 4 workers", f"{took:.1f} s = {took / run.cycle:.2f} taker cycles",
         f"cycle {run.cycle:.2f} s; final {dict(sorted(counts.items()))}"),
        ("DynamoDB requests per lease per minute", f"{per_lease_minute:.1f}",
         f"4 workers x 32 leases, {minutes:.1f} min incl. start-up and balancing; renewals {renewals:.1f}, "
         f"scans {scans:.2f}, by operation {dict(sorted(requests.items()))}"),
    ]
    width = max(len(row[0]) for row in rows)
    print(f"lease coordination on LocalStack (failover {failover:.0f} s, renewal {run.renewal:.3f} s, "
          f"taker cycle {run.cycle:.2f} s: one read of the lease table per worker)")
    for name, value, note in rows:
        print(f"  {name.ljust(width)}  {value:<32}  {note}")
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-coordination", action="store_true")
    parser.add_argument("--failover-ms", type=int, default=10_000)
    own, rest = parser.parse_known_args()
    options = parse_options(__doc__.split("\n\n")[0], rest)
    localstack = f"http://127.0.0.1:{os.environ.get('LOCALSTACK_PORT', '4566')}"
    reachable = _reachable(localstack)
    if not own.skip_throughput:
        throughput(options, localstack if reachable else None)
    if not own.skip_coordination:
        if not reachable:
            print(f"lease coordination: skipped, no LocalStack at {localstack} (python3 localstack/ctl.py start)")
        else:
            coordination(localstack, own.failover_ms)
    return 0


def _reachable(endpoint: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=5):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
