"""MultiLang mode's cost per record beside the native processor API, on the same stream (issue 15).

    .venv/bin/python -m bench.multilang_bench [--quick] [--records N] [--shards N] [--only TEXT]

One stream on LocalStack (``LOCALSTACK_PORT``, default 4566), filled once by ``kpl`` with 100-byte user
records in 50 KB KPL aggregates (so that LocalStack's slow Kinesis serves many user records per read).
Then each variant reads all of it from TRIM_HORIZON, in a fresh ``kcl-worker`` process with an
application (lease table) of its own, doing the same work (bench/multilang_apps.py: decode every
record's data, count, ``checkpoint()`` after every batch):

* ``native``: a processor class (``processor = bench.multilang_apps:CountingProcessor``);
* ``multilang``: ``executableName`` = a child written with the standard library only;
* ``multilang, amazon-kclpy``: ``executableName`` = the same consumer as an amazon-kclpy ``KCLProcess``
  app; needs the amazon-kclpy 3.2.0 sdist that the test suite caches in ``.venv/test-downloads``
  (run tests/integration/test_kcl_multilang_kclpy.py once), skipped otherwise.

Measured between the first and the last batch reported done (each consumer writes its running count
after every batch; polled every 20 ms), so that start-up and lease taking are left out: user records/s,
CPU time per record (``kcl-worker`` and its children, user + system) and peak RSS (the same processes,
summed).  Batches are ``maxRecords`` aggregates (about 4,000 user records at the default of 10), read
every ``idleTimeBetweenReadsInMillis`` = 200 ms at most: records/s is mostly LocalStack's GetRecords pace,
the same for every variant; CPU per record is what the API costs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
KCLPY_SDIST = ROOT / ".venv" / "test-downloads" / "amazon_kclpy-3.2.0.tar.gz"
RECORD_SIZE = 100


@dataclass
class Result:
    variant: str
    records: int
    seconds: float
    cpu: float
    peak_rss: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_per_record_us(self) -> float:
        return self.cpu / self.records * 1e6


def aws_environment() -> dict[str, str]:
    """Standard AWS configuration pointing at LocalStack (nothing LocalStack-specific in the code run)."""
    port = os.environ.get("LOCALSTACK_PORT", "4566")
    return {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true"}


def fill_stream(stream: str, shards: int, records: int) -> float:
    """Create ``stream`` and put ``records`` user records through kpl (aggregated); seconds taken."""
    import boto3

    import kpl

    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})
    started = time.monotonic()
    # LocalStack's Kinesis takes seconds per 5 MB PutRecords on a loaded machine: wait for it.
    with kpl.Producer(metrics_level="none", record_max_buffered_time_ms=500, record_ttl_ms=600_000,
                      request_timeout_ms=60_000) as producer:
        futures = [producer.put_record(stream, f"{n:012d}".encode().ljust(RECORD_SIZE, b"."), f"key-{n % 997}")
                   for n in range(records)]
        producer.flush_all()
        failed = [future.result() for future in futures if not future.result().success]
    if failed:
        raise SystemExit(f"{len(failed)} records could not be put: {failed[0].error}")
    return time.monotonic() - started


def tree(process: psutil.Process) -> Iterator[psutil.Process]:
    yield process
    with contextlib.suppress(psutil.Error):
        yield from process.children(recursive=True)


def usage(process: psutil.Process) -> tuple[float, int]:
    """CPU seconds (user + system, the exited children the worker reaped included) and RSS of the tree."""
    cpu, rss = 0.0, 0
    for member in tree(process):
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            rss += member.memory_info().rss
    return cpu, rss


def progress(directory: Path) -> int:
    total = 0
    for path in directory.iterdir():
        with contextlib.suppress(OSError, ValueError):
            total += int(path.read_text() or 0)
    return total


def run_variant(name: str, stream: str, records: int, *, settings: dict[str, str], env: dict[str, str],
                work: Path, max_records: int) -> Result:
    application = f"bench-multilang-{uuid.uuid4().hex[:8]}"
    directory = work / application
    (directory / "progress").mkdir(parents=True)
    properties = directory / "app.properties"
    lines = {"streamName": stream, "applicationName": application, "initialPositionInStream": "TRIM_HORIZON",
             "metricsLevel": "NONE", "maxRecords": str(max_records), "idleTimeBetweenReadsInMillis": "200",
             "failoverTimeMillis": "10000", **settings}
    properties.write_text("".join(f"{key} = {value}\n" for key, value in lines.items()))
    log = (directory / "worker.log").open("wb")
    command = [str(Path(sys.executable).parent / "kcl-worker"), "--config", str(properties), "--log-level", "warning"]
    worker = subprocess.Popen(command, cwd=ROOT, env={**env, "BENCH_PROGRESS": str(directory / "progress")},
                              stdout=log, stderr=subprocess.STDOUT)
    handle = psutil.Process(worker.pid)
    first: tuple[float, int, float] | None = None
    peak = 0
    deadline = time.monotonic() + 900
    try:
        while True:
            done = progress(directory / "progress")
            now = time.monotonic()
            cpu, rss = usage(handle)
            peak = max(peak, rss)
            if first is None and done:
                first = (now, done, cpu)
            if done >= records:
                break
            if worker.poll() is not None or now > deadline:
                raise SystemExit(f"{name}: {done} of {records} records after {now - deadline + 900:.0f} s; worker "
                                 f"exit {worker.poll()}; log: {directory / 'worker.log'}")
            time.sleep(0.02)
        assert first is not None
        if done - first[1] < records // 4:
            raise SystemExit(f"{name}: the first report already had {first[1]} of {records} records: lower "
                             "maxRecords so that the measured window spans several batches")
        return Result(name, done - first[1], now - first[0], cpu - first[2], peak)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        import boto3
        with contextlib.suppress(Exception):
            boto3.client("dynamodb").delete_table(TableName=application)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40,000 records instead of 200,000")
    parser.add_argument("--records", type=int, help="user records in the stream")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--max-records", type=int, default=10, help="maxRecords (aggregates per GetRecords)")
    parser.add_argument("--only", help="run only the variants whose name contains this")
    args = parser.parse_args(argv)
    records = args.records or (40_000 if args.quick else 200_000)
    env = aws_environment()
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    python = sys.executable
    variants: dict[str, dict[str, str]] = {
        "native": {"processor": "bench.multilang_apps:CountingProcessor"},
        "multilang": {"executableName": f"{python} -m bench.multilang_apps protocol"},
        "multilang, amazon-kclpy": {"executableName": f"{python} -m bench.multilang_apps kclpy"},
    }
    if args.only:
        variants = {name: value for name, value in variants.items() if args.only in name}
    stream = f"bench-multilang-{uuid.uuid4().hex[:8]}"
    results: list[Result] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="multilang-bench-") as temporary:
        work = Path(temporary)
        kclpy_path = work / "kclpy"
        if KCLPY_SDIST.exists():
            with tarfile.open(KCLPY_SDIST) as archive:
                members = [m for m in archive.getmembers() if m.name.startswith("amazon_kclpy-3.2.0/amazon_kclpy/")]
                archive.extractall(work, members=members, filter="data")
            (work / "amazon_kclpy-3.2.0").rename(kclpy_path)
        elif "multilang, amazon-kclpy" in variants:
            del variants["multilang, amazon-kclpy"]
            skipped.append(f"multilang, amazon-kclpy: {KCLPY_SDIST} is missing (run "
                           "tests/integration/test_kcl_multilang_kclpy.py once to fetch it)")
        filled = fill_stream(stream, args.shards, records)
        print(f"stream {stream}: {records:,} user records of {RECORD_SIZE} bytes on {args.shards} shards, put by kpl "
              f"in {filled:.1f} s", flush=True)
        try:
            for name, settings in variants.items():
                variant_env = {**env, "PYTHONPATH": os.pathsep.join([str(kclpy_path), str(ROOT)])}
                results.append(run_variant(name, stream, records, settings=settings, env=variant_env, work=work,
                                           max_records=args.max_records))
                print(f"  {name}: done", flush=True)
        finally:
            import boto3
            with contextlib.suppress(Exception):
                boto3.client("kinesis").delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", "bench.multilang_bench", *(argv or
                                                                                                     sys.argv[1:])])
    print()
    print(f"# {command}   (LOCALSTACK_PORT={os.environ.get('LOCALSTACK_PORT', '4566')}, {os.cpu_count()} CPUs)")
    print(f"{'variant':<26} {'records':>9} {'records/s':>10} {'CPU µs/record':>14} {'vs native':>10} "
          f"{'peak RSS MB':>12}")
    native = next((r for r in results if r.variant == "native"), None)
    for result in results:
        extra = "" if native is None or result is native else \
            f"{result.cpu_per_record_us - native.cpu_per_record_us:+.1f} µs"
        print(f"{result.variant:<26} {result.records:>9,} {result.rate:>10,.0f} {result.cpu_per_record_us:>14.1f} "
              f"{extra:>10} {result.peak_rss / 2**20:>12.0f}")
    for reason in skipped:
        print(f"skipped: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
