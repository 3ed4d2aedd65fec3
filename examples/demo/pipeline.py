"""The whole pipeline, end to end, with a self-check: the README's demo.

    make demo                                   # installs everything, starts LocalStack, runs this
    python -m examples.demo.pipeline --quick    # a shorter run (what the test suite does)

1. A generator writes an Apache combined-format access log of page views from many users, and rotates
   it once (rename and create) halfway through.
2. ``kinesis-agent`` tails it with LOGTOJSON into a Kinesis stream of 4 shards (KPL aggregation on).
3. Two ``kcl-worker`` processes share the stream through one lease table and run both real-time queries
   (page views per page per 1-minute window; users with more than 100 events in 5 minutes),
   checkpointing as they go.  Halfway, one of them is stopped gracefully; the other takes its shards.
4. A third ``kcl-worker`` (its own application, so its own lease table) archives every record to S3 in
   gzip batches under ``year=YYYY/month=MM/day=DD/``, as Firehose does.

It prints progress while it runs, then the page counts and the anomalies, then checks itself: every
line written must have been consumed at least once and archived.  Exit status 0 means verified.

Everything reaches AWS through standard configuration (the Makefile points AWS_ENDPOINT_URL at
LocalStack); nothing here knows it is talking to an emulator.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.demo.loggen import LogGenerator, request_id
from kpl.aws import sync_client
from kpl.errors import KinesisToolkitError

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class Service:
    """A child process of the demo, with its log in the work directory."""

    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                        env={**os.environ, **self.env}, start_new_session=True)
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL after ``timeout``; the exit status."""
        if self.process is None:
            return None
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                say(f"  {self.name} did not stop within {timeout:.0f}s: killing it")
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Demo:
    duration: float
    rate: float
    shards: int
    workdir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    services: dict[str, Service] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stream = f"demo-pageviews-{self.run_id}"
        self.analytics_app = f"demo-analytics-{self.run_id}"
        self.archive_app = f"demo-archive-{self.run_id}"
        self.bucket = f"demo-archive-{self.run_id}"
        self.logs = self.workdir / "logs"
        self.out = self.workdir / "out"
        self.kinesis = sync_client("kinesis")
        self.dynamodb = sync_client("dynamodb")
        self.s3 = sync_client("s3")
        self.generator = LogGenerator(self.logs / "access.log", rate=self.rate, duration=self.duration)

    # --- set-up -----------------------------------------------------------------------------------

    def create_resources(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=self.shards)
        deadline = time.monotonic() + 60
        while self.kinesis.describe_stream_summary(StreamName=self.stream)[
                "StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
            if time.monotonic() > deadline:
                raise RuntimeError(f"stream {self.stream} did not become ACTIVE")
            time.sleep(0.2)
        self.s3.create_bucket(Bucket=self.bucket)
        say(f"created stream {self.stream} ({self.shards} shards) and bucket {self.bucket}; work dir {self.workdir}")

    def write_configs(self) -> tuple[Path, Path]:
        agent_json = self.workdir / "agent.json"
        agent_json.write_text(f"""// kinesis-agent configuration for the demo, in the Java agent's own format.
{{
  "checkpointFile": "{self.workdir / 'agent-checkpoints.sqlite'}",
  "cloudwatch.emitMetrics": "false",
  "log.statusReportingPeriodSeconds": "10",
  "flows": [
    {{
      "filePattern": "{self.logs}/access.log*",      // the live log and its rotation
      "kinesisStream": "{self.stream}",
      "initialPosition": "START_OF_FILE",
      "aggregationEnabled": "true",
      "maxBufferAgeMillis": "1000",
      "maxBufferSizeBytes": "524288",
      "dataProcessingOptions": [{{"optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG"}}]
    }}
  ]
}}
""")
        worker_properties = self.workdir / "worker.properties"
        worker_properties.write_text(
            "# KCL settings shared by the demo's workers (MultiLangDaemon property names).\n"
            "initialPositionInStream = TRIM_HORIZON\n"
            "failoverTimeMillis = 6000\n"
            "idleTimeBetweenReadsInMillis = 500\n"
            "callProcessRecordsEvenForEmptyRecordList = true\n"
        )
        return agent_json, worker_properties

    def start_services(self, agent_json: Path, worker_properties: Path) -> None:
        def worker(name: str, application: str, processor: str, env: dict[str, str]) -> Service:
            return Service(name, [str(BIN / "kcl-worker"), "--stream", self.stream, "--application", application,
                                  "--processor", processor, "--config", str(worker_properties),
                                  "--worker-id", name, "--log-level", "warning"],
                           self.workdir / f"{name}.log", env)

        analytics_env = {
            "PAGE_COUNTS_OUTPUT": str(self.out / "page-counts.jsonl"),
            "ANOMALIES_OUTPUT": str(self.out / "anomalies.jsonl"),
            "DEMO_CONSUMED_OUTPUT": str(self.out / "consumed.txt"),
        }
        archive_env = {"ARCHIVE_BUCKET": self.bucket, "ARCHIVE_BATCH_SECONDS": "2"}
        self.services = {
            "agent": Service("agent", [str(BIN / "kinesis-agent"), "-c", str(agent_json), "-L", "warning"],
                             self.workdir / "agent.log"),
            "worker-A": worker("worker-A", self.analytics_app, "examples.demo.analytics:AnalyticsProcessor",
                               analytics_env),
            "worker-B": worker("worker-B", self.analytics_app, "examples.demo.analytics:AnalyticsProcessor",
                               analytics_env),
            "archiver": worker("archiver", self.archive_app, "examples.demo.archiver:S3Archiver", archive_env),
        }
        for service in self.services.values():
            service.start()
        say("started kinesis-agent, kcl-worker worker-A and worker-B (analytics), kcl-worker archiver")

    # --- watching ---------------------------------------------------------------------------------

    def consumed_ids(self) -> Counter[int]:
        path = self.out / "consumed.txt"
        if not path.exists():
            return Counter()
        return Counter(int(line) for line in path.read_text().split())

    def lease_owners(self, application: str) -> dict[str, str]:
        try:
            items = self.dynamodb.scan(TableName=application, ConsistentRead=True)["Items"]
        except self.dynamodb.exceptions.ResourceNotFoundException:
            return {}
        return {item["leaseKey"]["S"]: item.get("leaseOwner", {}).get("S", "-") for item in items}

    def holdings(self) -> str:
        by_owner: dict[str, list[str]] = defaultdict(list)
        for shard, owner in sorted(self.lease_owners(self.analytics_app).items()):
            by_owner[owner].append(shard.rsplit("-", 1)[-1].lstrip("0") or "0")
        return "  ".join(f"{owner}: {','.join(shards)}" for owner, shards in sorted(by_owner.items())) or "-"

    def progress(self, started: float) -> None:
        consumed = len(self.consumed_ids())
        written = self.generator.written
        say(f"[{time.monotonic() - started:5.0f}s] written {written:>6,}  consumed {consumed:>6,} "
            f"(lag {max(0, written - consumed):>5,})  shards: {self.holdings()}")

    def check_alive(self, *names: str) -> None:
        for name in names:
            service = self.services[name]
            if not service.alive:
                raise RuntimeError(f"{name} exited with status {service.process.returncode if service.process else '?'}"
                                   f"; last lines of {service.log_path}:\n{service.tail()}")

    def run_pipeline(self) -> None:
        stop_generator = threading.Event()
        generator = threading.Thread(target=self.generator.run, args=(stop_generator.is_set,), name="loggen")
        started = time.monotonic()
        generator.start()
        stopped_a = False
        try:
            while generator.is_alive():
                generator.join(2.0)
                self.progress(started)
                self.check_alive("agent", "worker-B", "archiver", *(() if stopped_a else ("worker-A",)))
                if not stopped_a and time.monotonic() - started >= self.duration / 2:
                    owned = sum(1 for owner in self.lease_owners(self.analytics_app).values() if owner == "worker-A")
                    say(f"stopping worker-A gracefully (SIGTERM) while it holds {owned} shard(s)")
                    stop_at = time.monotonic()
                    status = self.services["worker-A"].stop()
                    stopped_a = True
                    say(f"worker-A exited with status {status} after {time.monotonic() - stop_at:.1f}s")
                    self.wait_for_takeover(stop_at)
        finally:
            stop_generator.set()
            generator.join()
        say(f"generator finished: {self.generator.written:,} lines written, log rotated once")
        self.wait_until_consumed(started)

    def wait_for_takeover(self, stop_at: float, timeout: float = 60.0) -> None:
        deadline = stop_at + timeout
        while time.monotonic() < deadline:
            owners = self.lease_owners(self.analytics_app)
            if owners and set(owners.values()) == {"worker-B"}:
                say(f"worker-B holds all {len(owners)} shards, {time.monotonic() - stop_at:.1f}s after the stop")
                return
            time.sleep(0.3)
        say(f"worker-B did not take every shard within {timeout:.0f}s: {self.holdings()}")

    def wait_until_consumed(self, started: float, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        wanted = self.generator.written
        while time.monotonic() < deadline:
            consumed = self.consumed_ids()
            if all(rid in consumed for rid in range(wanted)):
                self.progress(started)
                say("every line written has been consumed")
                return
            self.check_alive("agent", "worker-B", "archiver")
            time.sleep(2.0)
            self.progress(started)
        say(f"gave up waiting after {timeout:.0f}s")

    def stop_services(self) -> None:
        # The analytics worker emits its open windows and checkpoints; the archiver uploads its last batch.
        for name in ("agent", "worker-B", "archiver", "worker-A"):
            service = self.services.get(name)
            if service is not None and service.alive:
                status = service.stop()
                say(f"stopped {name} (exit status {status})")

    # --- results ----------------------------------------------------------------------------------

    def archived(self) -> tuple[Counter[int], list[str], list[bytes]]:
        """Request ids in the archive, its object keys, and a few of its records."""
        ids: Counter[int] = Counter()
        keys: list[str] = []
        samples: list[bytes] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                keys.append(obj["Key"])
                lines = gzip.decompress(self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read())
                records = lines.splitlines()
                samples.extend(records[: 3 - len(samples)])
                ids.update(rid for rid in map(request_id, records) if rid is not None)
        return ids, keys, samples

    def report(self) -> bool:
        say("\n== page views per page per 1-minute window (summed over shards) ==")
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for line in _read_jsonl(self.out / "page-counts.jsonl"):
            counts[(line["window_start"], line["page"])] += line["event_count"]
        windows = sorted({window for window, _ in counts})
        pages = sorted({page for _, page in counts})
        say(f"{'page':<14}" + "".join(f"{w[11:16]:>8}" for w in windows) + f"{'total':>9}")
        for page in pages:
            row = [counts.get((w, page), 0) for w in windows]
            say(f"{page:<14}" + "".join(f"{n:>8,}" for n in row) + f"{sum(row):>9,}")

        say("\n== users with more than 100 events in 5 minutes (the per-shard counts the query reported, summed) ==")
        anomalies: dict[tuple[str, str], int] = defaultdict(int)
        for line in _read_jsonl(self.out / "anomalies.jsonl"):
            anomalies[(line["window_start"], line["user"])] += line["event_count"]
        for (window, user), count in sorted(anomalies.items()):
            say(f"  window {window[11:16]}  {user:<12} {count:>6,} events")
        if not anomalies:
            say("  none")

        written = self.generator.written
        consumed = self.consumed_ids()
        archived, keys, samples = self.archived()
        say("\n== records as they round-tripped: log line -> agent (LOGTOJSON) -> Kinesis -> kcl-worker -> S3 ==")
        for sample in samples:
            say(f"  {sample.decode(errors='replace')}")
        missing_consumed = [rid for rid in range(written) if rid not in consumed]
        missing_archived = [rid for rid in range(written) if rid not in archived]
        bad_keys = [k for k in keys if "/year=" not in k or "/month=" not in k or "/day=" not in k]
        say("\n== verification ==")
        say(f"lines written:   {written:,}")
        say(f"consumed:        {len(consumed):,} distinct ({sum(consumed.values()) - len(consumed):,} re-deliveries)")
        say(f"archived:        {len(archived):,} distinct in {len(keys)} gzip objects "
            f"(e.g. s3://{self.bucket}/{keys[0] if keys else '-'})")
        ok = written > 0 and not missing_consumed and not missing_archived and not bad_keys
        if missing_consumed:
            say(f"MISSING from consumption: {len(missing_consumed)} lines, e.g. request ids {missing_consumed[:10]}")
        if missing_archived:
            say(f"MISSING from the archive: {len(missing_archived)} lines, e.g. request ids {missing_archived[:10]}")
        if bad_keys:
            say(f"archive objects outside year=/month=/day= partitions: {bad_keys[:5]}")
        if ok:
            say(f"VERIFIED: every one of the {written:,} lines written was consumed at least once and archived")
        return ok

    def cleanup(self) -> None:
        for service in self.services.values():
            with contextlib.suppress(Exception):
                if service.alive and service.process is not None:
                    service.process.kill()
                    service.process.wait(10)
        with contextlib.suppress(Exception):
            self.kinesis.delete_stream(StreamName=self.stream, EnforceConsumerDeletion=True)
        for table in (self.analytics_app, self.archive_app):
            with contextlib.suppress(Exception):
                self.dynamodb.delete_table(TableName=table)
        with contextlib.suppress(Exception):
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                for obj in page.get("Contents", []):
                    self.s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
            self.s3.delete_bucket(Bucket=self.bucket)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of log writing (default 60)")
    parser.add_argument("--rate", type=float, default=200.0, help="log lines per second (default 200)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="a short run: 16 s at 150 lines/s")
    parser.add_argument("--workdir", type=Path, help="keep logs, configs and outputs here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rate = 16.0, 150.0
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kinesis-demo-")))
        try:
            demo = Demo(duration=args.duration, rate=args.rate, shards=args.shards, workdir=workdir)
        except KinesisToolkitError as exc:
            say(f"demo cannot start: {exc}")
            return 2
        try:
            demo.create_resources()
            demo.start_services(*demo.write_configs())
            demo.run_pipeline()
            demo.stop_services()
            ok = demo.report()
        except (RuntimeError, KeyboardInterrupt) as exc:
            say(f"demo FAILED: {exc}")
            ok = False
        finally:
            demo.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
