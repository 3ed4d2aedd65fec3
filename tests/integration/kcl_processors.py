"""The record processor the kcl integration tests run inside ``kcl-worker`` processes, and the helpers
the tests use to drive those processes and read what they did.

``RecordingProcessor`` appends one JSON line per event to ``$KCL_TEST_OUTPUT_DIR/<worker id>.jsonl``:
every record delivered (worker, shard, sequence/sub-sequence, partition key, data, monotonic and wall
time), every checkpoint, and the lifecycle calls.  Tests then assert from the outside, over all
workers' files: at-least-once delivery, per-key order, takeover times, and that no two workers
processed a shard at the same time.  ``CLOCK_MONOTONIC`` is system-wide, so monotonic times from
different processes on this machine compare directly.

Test data records are JSON ``{"k": key, "n": counter}`` with a per-key counter starting at 0, so
order and gaps are visible per key.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kcl import Checkpointer, CheckpointError, LeaseLostError, Record, RecordProcessor
from kpl.aggregation import AggregateBuilder
from kpl.aws import list_shards_blocking
from kpl.hashing import HashRange, ShardRanges, partition_key_hash

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# --- inside the worker processes ------------------------------------------------------------------


class RecordingProcessor(RecordProcessor):
    """Logs every event; checkpoints every ``$KCL_TEST_CHECKPOINT_EVERY`` batches (default 1).

    ``$KCL_TEST_BATCH_DELAY`` (seconds) stands in for per-batch work, so that a stream is still being
    processed when a test kills or stops a worker.  ``$KCL_TEST_PREPARE_ON_SHUTDOWN`` makes
    ``shutdown_requested`` leave a prepared checkpoint carrying that text as application state.
    """

    def __init__(self) -> None:
        directory = Path(os.environ["KCL_TEST_OUTPUT_DIR"])
        self.worker = os.environ.get("KCL_TEST_WORKER_ID", str(os.getpid()))
        self.out = (directory / f"{self.worker}.jsonl").open("a", encoding="utf-8")
        self.checkpoint_every = int(os.environ.get("KCL_TEST_CHECKPOINT_EVERY", "1"))
        self.batch_delay = float(os.environ.get("KCL_TEST_BATCH_DELAY", "0"))
        self.batches = 0
        self.shard = "?"

    def _event(self, kind: str, **fields: Any) -> str:
        return json.dumps({"e": kind, "w": self.worker, "s": self.shard, "m": time.monotonic(), "t": time.time(),
                           **fields})

    def _write(self, lines: Iterable[str]) -> None:
        self.out.write("".join(line + "\n" for line in lines))
        self.out.flush()

    def initialize(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> None:
        self.shard = shard_id
        self._write([self._event("init", q=sequence_number, u=sub_sequence_number)])

    def process_records(self, records: list[Record], checkpointer: Checkpointer, millis_behind_latest: int) -> None:
        now_m, now_t = time.monotonic(), time.time()
        base = {"e": "rec", "w": self.worker, "s": self.shard, "m": now_m, "t": now_t}
        self._write(json.dumps({**base, "q": r.sequence_number, "u": r.sub_sequence_number, "k": r.partition_key,
                                "d": r.data.decode(errors="replace"), "a": r.aggregated}) for r in records)
        if self.batch_delay:
            time.sleep(self.batch_delay)
        self.batches += 1
        if self.batches % self.checkpoint_every == 0 and records:
            self._checkpoint(checkpointer, records[-1])

    def _checkpoint(self, checkpointer: Checkpointer, last: Record | None) -> None:
        try:
            checkpointer.checkpoint()
        except LeaseLostError as exc:
            self._write([self._event("ckpt-lost", error=str(exc))])
            return
        except CheckpointError as exc:
            # The batch is processed; a later checkpoint covers it.  Raising would re-deliver it.
            self._write([self._event("ckpt-failed", error=str(exc))])
            return
        fields = {"q": last.sequence_number, "u": last.sub_sequence_number} if last else {}
        self._write([self._event("ckpt", **fields)])

    def lease_lost(self) -> None:
        self._write([self._event("lost")])

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        # Timed before the SHARD_END checkpoint, which lets the children start (on any worker) at once.
        end = self._event("end")
        checkpointer.checkpoint()
        self._write([end])

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        self._write([self._event("shutdown")])
        self._checkpoint(checkpointer, None)
        state = os.environ.get("KCL_TEST_PREPARE_ON_SHUTDOWN")
        if state:
            checkpointer.prepare_checkpoint(state=state.encode())
            self._write([self._event("prepared")])


class FailingProcessor(RecordingProcessor):
    """Raises in ``process_records`` for every batch holding a record whose data contains
    ``$KCL_TEST_FAIL_ON`` (every batch when it is unset), after logging a ``fail`` event; checkpoints in
    ``shutdown_requested`` as the docs' examples do.  What the next worker must still see."""

    def process_records(self, records: list[Record], checkpointer: Checkpointer, millis_behind_latest: int) -> None:
        marker = os.environ.get("KCL_TEST_FAIL_ON", "").encode()
        if any(marker in record.data for record in records):
            self._write([self._event("fail", first=records[0].sequence_number, n=len(records))])
            raise RuntimeError("cannot process this batch")
        super().process_records(records, checkpointer, millis_behind_latest)


class KclpyStyleProcessor:
    """A processor ported carelessly from amazon-kclpy v3: one input object per method."""

    def initialize(self, initialize_input: Any) -> None: ...

    def process_records(self, process_records_input: Any) -> None: ...

    def lease_lost(self, lease_lost_input: Any) -> None: ...

    def shard_ended(self, shard_ended_input: Any) -> None: ...

    def shutdown_requested(self, shutdown_requested_input: Any) -> None: ...


def make_kclpy_style_processor() -> Any:
    """A factory: its product can only be checked once the worker makes one, for its first lease."""
    return KclpyStyleProcessor()


# --- producing test data --------------------------------------------------------------------------


def data_of(key: str, counter: int) -> bytes:
    return json.dumps({"k": key, "n": counter}, separators=(",", ":")).encode()


def open_shard_ranges(kinesis: Any, stream: str) -> ShardRanges:
    shards = list_shards_blocking(kinesis, stream, shard_filter="AT_LATEST")
    return ShardRanges((s["ShardId"], HashRange.from_shard(s)) for s in shards)


def put_user_records(kinesis: Any, stream: str, records: list[tuple[str, bytes]], *, aggregate: bool = True) -> None:
    """Put (partition key, data) pairs: KPL-aggregated per shard (the fast path on kinesis-mock) or plain.

    Records of one key keep their order: each key maps to one shard and one aggregate sequence.
    """
    if not aggregate:
        entries = [{"Data": data, "PartitionKey": key} for key, data in records]
    else:
        ranges = open_shard_ranges(kinesis, stream)
        per_shard: dict[str, list[AggregateBuilder]] = defaultdict(list)
        for key, data in records:
            shard = ranges.shard_for(partition_key_hash(key)) or "?"
            builders = per_shard[shard]
            if not builders or not builders[-1].add(key, None, data):
                builders.append(AggregateBuilder(max_size=200_000))
                builders[-1].add(key, None, data)
        entries = []
        for shard, builders in per_shard.items():
            hash_range = ranges.range_of(shard)
            for builder in builders:
                entry: dict[str, Any] = {"Data": builder.build(), "PartitionKey": "aggregate"}
                if hash_range is not None:
                    entry["ExplicitHashKey"] = str(hash_range.start)
                entries.append(entry)
    for chunk in _chunks(entries, 200):
        _put_with_retries(kinesis, stream, chunk)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _put_with_retries(kinesis: Any, stream: str, entries: list[dict[str, Any]]) -> None:
    pending = entries
    for _ in range(50):
        result = kinesis.put_records(StreamName=stream, Records=pending)
        if not result["FailedRecordCount"]:
            return
        pending = [entry for entry, outcome in zip(pending, result["Records"], strict=True) if "ErrorCode" in outcome]
        time.sleep(0.2)  # pacing a retry against the service, not synchronising the test
    raise AssertionError(f"{len(pending)} records could not be put")


@dataclass
class Producer:
    """Puts records for ``keys`` in rounds (one record per key per round) until stopped or ``rounds`` done.

    Runs in a thread so that production overlaps with the workers' consumption.  ``produced`` counts
    per key what has been acknowledged by Kinesis.
    """

    kinesis: Any
    stream: str
    keys: list[str]
    rounds: int
    per_round: int = 1
    aggregate: bool = True
    pause: float = 0.0
    produced: dict[str, int] = field(default_factory=dict)
    error: BaseException | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Producer:
        self._thread = threading.Thread(target=self._run, name="test-producer", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for _ in range(self.rounds):
                if self._stop.is_set():
                    return
                batch = []
                for key in self.keys:
                    start = self.produced.get(key, 0)
                    batch.extend((key, data_of(key, n)) for n in range(start, start + self.per_round))
                put_user_records(self.kinesis, self.stream, batch, aggregate=self.aggregate)
                for key in self.keys:
                    self.produced[key] = self.produced.get(key, 0) + self.per_round
                if self.pause:
                    self._stop.wait(self.pause)
        except BaseException as exc:
            self.error = exc

    @property
    def total(self) -> int:
        return sum(self.produced.values())

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        if self.error is not None:
            raise AssertionError(f"producer failed: {self.error!r}") from self.error


# --- running workers ------------------------------------------------------------------------------


def write_properties(path: Path, **settings: object) -> Path:
    path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()), encoding="utf-8")
    return path


FAST_TIMINGS = {
    "failoverTimeMillis": 3000,
    "shardSyncIntervalMillis": 3000,
    "parentShardPollIntervalMillis": 500,
    "idleTimeBetweenReadsInMillis": 200,
    "completedLeaseCleanupIntervalMillis": 2000,
    "metricsBufferTimeMillis": 2000,
    "gracefulLeaseHandoffTimeoutMillis": 10000,
    "gracefulShutdownTimeoutMillis": 10000,
    "taskBackoffTimeMillis": 100,
}


def kcl_worker_command() -> list[str]:
    script = Path(sys.executable).parent / "kcl-worker"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kcl.cli"]


@dataclass
class WorkerProcess:
    worker_id: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_worker(
    out_dir: Path, worker_id: str, *args: str, env: dict[str, str] | None = None,
    processor: str = "tests.integration.kcl_processors:RecordingProcessor",
) -> WorkerProcess:
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / f"{worker_id}.log"
    environment = {**os.environ, "KCL_TEST_OUTPUT_DIR": str(out_dir), "KCL_TEST_WORKER_ID": worker_id,
                   **(env or {})}
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [*kcl_worker_command(), "--processor", processor, "--worker-id", worker_id, *args],
            cwd=REPO, env=environment, stdout=log_file, stderr=subprocess.STDOUT,
        )
    return WorkerProcess(worker_id, process, log_path)


def watched(condition: Callable[[], T], *workers: WorkerProcess) -> Callable[[], T]:
    """``condition``, failing at once (with the log) if one of ``workers`` has exited meanwhile."""
    def check() -> T:
        for worker in workers:
            if not worker.alive:
                raise AssertionError(f"worker {worker.worker_id} exited with {worker.process.returncode}:\n"
                                     f"{worker.log_text()[-3000:]}")
        return condition()
    return check


# --- reading what the workers did -----------------------------------------------------------------


def read_events(out_dir: Path) -> list[dict[str, Any]]:
    """Every processor event of every worker, in monotonic-time order (stable within a worker)."""
    events = []
    for path in sorted(out_dir.glob("*.jsonl")):
        # A worker may be writing while this reads: a last line without its newline is not written yet.
        text = path.read_text()
        complete = text[:text.rfind("\n") + 1]
        for index, line in enumerate(complete.splitlines()):
            if line.strip():
                event = json.loads(line)
                event["i"] = index
                events.append(event)
    events.sort(key=lambda e: (e["m"], e["w"], e["i"]))
    return events


def delivered_counters(events: list[dict[str, Any]]) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = defaultdict(set)
    for event in events:
        if event["e"] == "rec":
            seen[event["k"]].add(json.loads(event["d"])["n"])
    return seen


def missing_records(events: list[dict[str, Any]], produced: dict[str, int]) -> dict[str, list[int]]:
    """Per key, the counters produced but never delivered (empty when delivery was at-least-once)."""
    seen = delivered_counters(events)
    missing = {}
    for key, count in produced.items():
        lost = sorted(set(range(count)) - seen.get(key, set()))
        if lost:
            missing[key] = lost[:20]
    return missing


def order_violations(events: list[dict[str, Any]]) -> list[str]:
    """Per key, deliveries must continue in order: the next counter, or a replay (at most the last
    counter) when a new tenure starts.  A jump forward is a gap; a step back within one tenure is
    reordering."""
    last: dict[str, tuple[int, tuple[str, str]]] = {}
    tenure_of: dict[tuple[str, str], int] = {}
    violations = []
    for event in events:
        if event["e"] == "init":
            tenure_of[(event["w"], event["s"])] = tenure_of.get((event["w"], event["s"]), 0) + 1
            continue
        if event["e"] != "rec":
            continue
        key, counter = event["k"], json.loads(event["d"])["n"]
        tenure = (event["w"], f"{event['s']}#{tenure_of.get((event['w'], event['s']), 0)}")
        previous = last.get(key)
        if previous is None:
            if counter != 0:
                violations.append(f"{key}: first delivery is {counter}, not 0")
        else:
            previous_counter, previous_tenure = previous
            if counter > previous_counter + 1:
                violations.append(f"{key}: {previous_counter} then {counter} (gap)")
            elif counter <= previous_counter and tenure == previous_tenure:
                violations.append(f"{key}: {previous_counter} then {counter} within one tenure of {tenure}")
        last[key] = (counter, tenure)
    return violations[:20]


@dataclass
class Tenure:
    """One worker's hold on one shard, from ``initialize`` to its last event."""

    worker: str
    shard: str
    start: float
    end: float
    first_record: float | None = None
    last_record: float | None = None
    records: int = 0


def tenures(events: list[dict[str, Any]]) -> list[Tenure]:
    current: dict[tuple[str, str], Tenure] = {}
    done: list[Tenure] = []
    for event in events:
        key = (event["w"], event["s"])
        if event["e"] == "init":
            if key in current:
                done.append(current.pop(key))
            current[key] = Tenure(event["w"], event["s"], event["m"], event["m"])
            continue
        tenure = current.get(key)
        if tenure is None:
            continue
        tenure.end = event["m"]
        if event["e"] == "rec":
            tenure.records += 1
            tenure.last_record = event["m"]
            if tenure.first_record is None:
                tenure.first_record = event["m"]
        if event["e"] in ("lost", "end"):
            done.append(current.pop(key))
    return done + list(current.values())


def concurrent_processing(events: list[dict[str, Any]]) -> list[str]:
    """Tenures of different workers on one shard whose record deliveries interleave in time."""
    by_shard: dict[str, list[Tenure]] = defaultdict(list)
    for tenure in tenures(events):
        if tenure.records:
            by_shard[tenure.shard].append(tenure)
    overlaps = []
    for shard, items in by_shard.items():
        items.sort(key=lambda t: t.first_record or 0.0)
        for first, second in itertools.combinations(items, 2):
            assert first.last_record is not None and second.first_record is not None
            if first.worker != second.worker and second.first_record < first.last_record:
                overlaps.append(f"{shard}: {first.worker} until {first.last_record:.3f}, "
                                f"{second.worker} from {second.first_record:.3f}")
    return overlaps
