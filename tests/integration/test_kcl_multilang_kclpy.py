"""amazon-kclpy's own sample app, run by ``kcl-worker`` in MultiLang mode: no port, no JVM.

The amazon-kclpy 3.2.0 sdist is fetched from the package index like any dependency (``pip download``,
pinned by hash, cached under ``.venv`` so that it is fetched once per environment).  Its pure-Python
package ``amazon_kclpy`` goes on PYTHONPATH as it is; its ``setup.py`` is never invoked to install
anything and no jar is downloaded.  ``samples/sample_kclpy_app.py`` and ``samples/sample.properties``
are used as shipped, with only the stream, the application and the region edited in the properties
file; the endpoint comes from standard AWS configuration (``AWS_ENDPOINT_URL``), as for every test.

The sample writes one ``Record (Partition Key: ..., Sequence Number: ..., Subsequence Number: ...,
Data Size: ...`` per record to its stderr (without a line end, so Python flushes it when the buffer
fills or the app exits), checkpoints at the largest record of its first batch and again in
``shutdown_requested``.  The test reads all of that from the worker's log and the lease table.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kcl.deaggregation import Deaggregator
from tests.integration.kcl_processors import REPO, WorkerProcess, kcl_worker_command, put_user_records, watched
from tests.support.kinesis import read_all
from tests.support.waiting import wait_for

KCLPY = "amazon-kclpy==3.2.0"
SDIST = "amazon_kclpy-3.2.0.tar.gz"
SDIST_SHA256 = "62e81cc84714c920fe6aa5d61837b298fe7e01f6326dcb564b12ab8e6c4aca4e"
CACHE = REPO / ".venv" / "test-downloads"
#: What pip says when it cannot reach the index at all (as opposed to the index not having the file).
UNREACHABLE = re.compile(r"NewConnectionError|Name or service not known|Temporary failure in name resolution|"
                         r"Network is unreachable|Connection refused|ConnectTimeoutError|Max retries exceeded")
RECORD = re.compile(r"Record \(Partition Key: (?P<key>.*?), Sequence Number: (?P<seq>\d+), "
                    r"Subsequence Number: (?P<sub>\d+), Data Size: (?P<size>\d+)")


@pytest.fixture(scope="session")
def kclpy_sdist() -> Path:
    """The amazon-kclpy 3.2.0 sdist, from the package index (once per environment), its hash checked."""
    target = CACHE / SDIST
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    requirements = CACHE / "amazon-kclpy.txt"
    requirements.write_text(f"{KCLPY} --hash=sha256:{SDIST_SHA256}\n")
    # pip prepares the sdist's metadata (an egg_info in an isolated build environment); that installs
    # nothing and fetches no jar.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps", "--no-binary", ":all:",
         "--require-hashes", "-r", str(requirements), "-d", str(CACHE)],
        capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if UNREACHABLE.search(output):
            pytest.skip(f"the package index is unreachable, so {KCLPY} cannot be fetched:\n{output[-2000:]}")
        raise AssertionError(f"pip download {KCLPY} failed:\n{output[-4000:]}")
    assert target.exists(), sorted(p.name for p in CACHE.iterdir())
    return target


def unpack(sdist: Path, into: Path) -> Path:
    """The sdist's ``amazon_kclpy`` package and ``samples`` directory under ``into``; returns ``into``."""
    prefix = "amazon_kclpy-3.2.0/"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers()
                   if m.name.startswith((prefix + "amazon_kclpy/", prefix + "samples/"))]
        for member in members:
            member.name = member.name.removeprefix(prefix)
        archive.extractall(into, members=members, filter="data")
    return into


def edit_properties(path: Path, stream: str, application: str, region: str) -> list[tuple[str, str]]:
    """Set the stream, the application and the region (and nothing else); the lines changed, before/after."""
    changed = []
    lines = path.read_text().splitlines(keepends=True)
    for index, line in enumerate(lines):
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if line.lstrip().startswith("#") or not _:
            continue
        new = {"streamName": stream, "applicationName": application, "regionName": region,
               "streamArn": re.sub(r"^arn:aws:kinesis:[^:]*:(\d+):stream/.*$",
                                   rf"arn:aws:kinesis:{region}:\1:stream/{stream}", value)}.get(key)
        if new is not None and new != value:
            lines[index] = f"{key} = {new}\n"
            changed.append((line.rstrip("\n"), lines[index].rstrip("\n")))
    path.write_text("".join(lines))
    return changed


def test_amazon_kclpy_sample_runs_unchanged(
    kclpy_sdist: Path, tmp_path: Path, make_stream: Callable[..., str], aws_clients: Callable[[str], Any],
) -> None:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    stream = make_stream(2, "kclpy")
    application = f"{stream}-app"
    kclpy = unpack(kclpy_sdist, tmp_path / "kclpy")
    samples = kclpy / "samples"
    properties = samples / "sample.properties"
    changed = edit_properties(properties, stream, application, "us-east-1")
    assert {before.split("=")[0].strip() for before, _ in changed} <= {"streamArn", "streamName", "applicationName",
                                                                      "regionName"}
    assert os.access(samples / "sample_kclpy_app.py", os.X_OK)  # as shipped: executableName names it directly

    put_user_records(kinesis, stream, [(f"agg-{n % 7}", f"aggregated {n}".encode()) for n in range(30)])
    put_user_records(kinesis, stream, [(f"plain-{n}", b"p" * n) for n in range(1, 11)], aggregate=False)
    expected: dict[str, set[tuple[str, int, int, int]]] = {}
    for shard, raw in read_all(kinesis, stream).items():
        records = Deaggregator(shard, None).deaggregate(raw)
        expected[shard] = {(r.partition_key, int(r.sequence_number), r.sub_sequence_number, len(r.data))
                           for r in records}
    assert sum(map(len, expected.values())) == 40 and all(expected.values())
    last = {shard: max((seq, sub) for _, seq, sub, _ in records) for shard, records in expected.items()}

    # The environment of a user who installed the toolkit in a venv and put amazon_kclpy on PYTHONPATH
    # (the sample's "#!/usr/bin/env python" finds the venv's interpreter).
    env = {**os.environ, "PYTHONPATH": str(kclpy), "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
           f"{os.environ.get('PATH', '')}"}
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen([*kcl_worker_command(), "--config", str(properties), "--worker-id", "W"],
                                   cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    worker = WorkerProcess("W", process, log_path)
    try:
        def lease(shard: str) -> dict[str, Any]:
            try:
                item: dict[str, Any] = dynamodb.get_item(TableName=application, Key={"leaseKey": {"S": shard}},
                                                         ConsistentRead=True).get("Item", {})
            except dynamodb.exceptions.ResourceNotFoundException:
                return {}
            return item

        def checkpoint(shard: str) -> tuple[int, int] | None:
            item = lease(shard)
            if not item.get("checkpoint", {}).get("S", "").isdigit():
                return None
            return int(item["checkpoint"]["S"]), int(item.get("checkpointSubSequenceNumber", {"N": "0"})["N"])

        # The sample checkpoints at the largest record of its first batch: every record was put before.
        wait_for(watched(lambda: all(checkpoint(shard) == last[shard] for shard in expected), worker), 90,
                 interval=0.2, message="the sample's checkpoints at the last record of each shard")
        assert worker.terminate(timeout=60) == 0, worker.log_text()[-4000:]
        for shard in expected:
            # shutdown_requested checkpointed again (everything processed: the same place); lease released.
            assert checkpoint(shard) == last[shard]
            assert "leaseOwner" not in lease(shard)
    finally:
        if worker.alive:
            worker.kill()
        with contextlib.suppress(Exception):
            dynamodb.delete_table(TableName=application)

    logged = []
    for line in log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            logged.append(json.loads(line))
    stderr: dict[str, str] = {}
    for event in logged:
        if event.get("event") == "child stderr":
            stderr[event["shard"]] = stderr.get(event["shard"], "") + event["line"]
    for shard, records in expected.items():
        seen = {(m["key"], int(m["seq"]), int(m["sub"]), int(m["size"])) for m in RECORD.finditer(stderr[shard])}
        assert seen == records, shard  # every record reached the app, on its shard, with its numbers
        assert "Shutdown has been requested, checkpointing." in stderr[shard]
    # The leases the first worker creates are taken at once, not a taker interval (20 s here) later.
    started = next(datetime.fromisoformat(e["timestamp"]) for e in logged if e.get("event") == "worker started")
    took = next(datetime.fromisoformat(e["timestamp"]) for e in logged if e.get("event") == "took lease")
    assert (took - started).total_seconds() < 8, (started, took)
    ignored = {e["key"] for e in logged if e.get("event") == "properties key has no meaning for this worker and is "
                                                             "ignored"}
    assert ignored == {"processingLanguage", "AwsCredentialsProvider"}
    assert not [e for e in logged if e.get("level") in ("error", "critical")], logged
