"""kcl-worker with a metrics port: /metrics, /healthz, /readyz and ``kcl-worker status`` against LocalStack.

The worker reaches DynamoDB through a fault proxy (``AWS_ENDPOINT_URL_DYNAMODB``, standard configuration)
and Kinesis directly, with the short failover time of the other kcl tests (3 s).  When the proxy blackholes
the lease table, ``/healthz`` must turn 503 once the table has not answered for longer than the failover
time, and 200 again once it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import kcl
from kcl.prometheus import KclCollector
from tests.integration.kcl_processors import (
    FAST_TIMINGS,
    WorkerProcess,
    data_of,
    kcl_worker_command,
    put_user_records,
    start_worker,
    watched,
    write_properties,
)
from tests.support import http
from tests.support.faultproxy import FaultProxy
from tests.support.kinesis import create_stream
from tests.support.waiting import async_wait_for, wait_for

KCL_MD = Path(__file__).resolve().parents[2] / "docs" / "kcl.md"
FAILOVER = FAST_TIMINGS["failoverTimeMillis"] / 1000
RENEWAL_INTERVAL = FAILOVER / 3  # failover / 3 - epsilon, as in the KCL
SHARDS = [f"shardId-{i:012d}" for i in range(2)]
LISTENING = "metrics and health endpoint listening"


def events(worker: WorkerProcess) -> list[dict[str, Any]]:
    found = []
    for line in worker.log_text().splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                found.append(event)
    return found


def endpoint_url(worker: WorkerProcess) -> str:
    def listening() -> str | None:
        return next((str(e["url"]) for e in events(worker) if e.get("event") == LISTENING), None)

    return wait_for(watched(listening, worker), 60, interval=0.1, message="metrics endpoint listening")


def status(application: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*kcl_worker_command(), "status", "--application", application, *args],
                          capture_output=True, text=True, timeout=60, check=False)


def status_rows(application: str) -> dict[str, dict[str, Any]]:
    result = status(application, "--json")
    assert result.returncode == 0, result.stderr
    return {row["shard"]: row for row in map(json.loads, result.stdout.splitlines())}


def watch_status(application: str, out: Path, *, reads: int) -> list[dict[str, Any]]:
    """``status --watch --json`` until it has printed ``reads`` reads of every shard, then Ctrl-C: exit 0."""
    with out.open("w") as sink:
        process = subprocess.Popen([*kcl_worker_command(), "status", "--application", application, "--json",
                                    "--watch", "--interval", "0.5"], stdout=sink, stderr=subprocess.PIPE, text=True)
    try:
        def rows() -> list[dict[str, Any]] | None:
            found = [json.loads(line) for line in out.read_text().splitlines() if line.endswith("}")]
            return found if len(found) >= reads * len(SHARDS) else None

        found = wait_for(rows, 30, interval=0.1, message=f"{reads} reads from status --watch")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        return found[:reads * len(SHARDS)]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.fixture
def stream(aws_clients: Callable[[str], Any]) -> Iterator[str]:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    name = f"kt-kcl-prom-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, name, len(SHARDS))
    yield name
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
        dynamodb.delete_table(TableName=name)


def test_metrics_health_readiness_and_status(tmp_path: Path, stream: str, aws_clients: Callable[[str], Any],
                                             fault_proxy: FaultProxy) -> None:
    kinesis = aws_clients("kinesis")
    keys = [f"prom-{i:02d}" for i in range(20)]
    put_user_records(kinesis, stream, [(key, data_of(key, n)) for n in range(3) for key in keys])
    # The port comes from the properties key (0: any free port, logged); the CLI flag is tested below.
    # CloudWatch is off (metricsLevel NONE): Prometheus does not depend on it.
    properties = write_properties(tmp_path / "app.properties", initialPositionInStream="TRIM_HORIZON",
                                  metricsPort=0, metricsLevel="NONE", **FAST_TIMINGS)
    worker = start_worker(tmp_path / "out", "prom-worker", "--stream", stream, "--application", stream,
                          "--config", str(properties), env={"AWS_ENDPOINT_URL_DYNAMODB": fault_proxy.url})
    try:
        url = endpoint_url(worker)
        assert url.startswith("http://127.0.0.1:"), url
        port = int(url.rsplit(":", 1)[1])

        def processed() -> float:
            return http.value(url, "kcl_records_processed_total")

        wait_for(watched(lambda: processed() >= len(keys) * 3, worker), 90, interval=0.2,
                 message="every record processed")
        metrics = http.samples(url)
        behind = {labels["shard"]: value for labels, value in metrics["kcl_behind_latest_seconds"]}
        assert set(behind) == set(SHARDS), metrics["kcl_behind_latest_seconds"]
        assert all(value >= 0 for value in behind.values())
        assert metrics["kcl_leases_held"] == [({}, 2.0)]
        assert http.value(url, "kcl_leases_taken_total") >= 2
        assert sum(v for labels, v in metrics["kcl_records_processed_total"]) == len(keys) * 3
        assert http.value(url, "kcl_processed_bytes_total") == sum(len(data_of(k, n)) for n in range(3) for k in keys)
        assert http.value(url, "kcl_processing_seconds_count") >= 2
        assert {labels["shard"] for labels, _ in metrics["kcl_checkpoint_age_seconds"]} == set(SHARDS)
        assert metrics["kcl_lease_table_unanswered_seconds"] == [({}, 0.0)]
        assert metrics["process_resident_memory_bytes"][0][1] > 0
        documented = set(re.findall(r"`(kcl_\w+)`", KCL_MD.read_text()))
        assert {"kcl_behind_latest_seconds", "kcl_records_processed_total", "kcl_errors_total"} <= documented
        assert documented <= http.family_names(url) | {"kcl_processing_seconds_count", "kcl_processing_seconds_sum"}, \
            "docs/kcl.md names metrics the worker does not export"
        assert http.get(f"{url}/healthz") == (200, "ok\n")
        assert http.get(f"{url}/readyz") == (200, "ok\n")

        # kcl-worker status: lag, processing and renewal per shard, from the renewals' extra attributes.
        def with_lag() -> dict[str, dict[str, Any]] | None:
            rows = status_rows(stream)
            return rows if all(rows[s]["lag_millis"] is not None for s in SHARDS) else None

        rows = wait_for(watched(with_lag, worker), 30, interval=0.3, message="status showing every shard's lag")
        assert http.value(url, "kcl_lease_renewals_total", result="success") > 0
        for shard in SHARDS:
            row = rows[shard]
            assert row["owner"] == "prom-worker" and row["state"] == "processing", row
            assert row["lag_millis"] >= 0 and 0 <= row["processed_age_seconds"] < 30, row
            assert row["renewal_age_is"] == "exact" and 0 <= row["renewal_age_seconds"] < 3 * FAILOVER, row
        text = status(stream)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].split() == ["shard", "owner", "checkpoint", "lag", "processed", "renewed", "parents", "state"]
        for shard in SHARDS:
            row_text = next(line for line in lines if line.startswith(shard))
            assert re.search(r" \d+(\.\d)?s +\d+(\.\d)?s ago +\d+(\.\d)?s ago ", row_text), row_text
        assert "largest lag" in lines[-1]
        watch_rows = watch_status(stream, tmp_path / "watch.jsonl", reads=2)
        assert {row["shard"] for row in watch_rows} == set(SHARDS) and len({row["read_at"] for row in watch_rows}) == 2

        # The lease table becomes unreachable: not alive once that has lasted the failover time.
        cut = time.monotonic()
        fault_proxy.blackhole()

        def health(path: str, want: int) -> str | None:
            code, body = http.get(f"{url}/{path}")
            return body if code == want else None

        body = wait_for(watched(lambda: health("healthz", 503), worker), 60, interval=0.1,
                        message="/healthz 503 while the lease table is unreachable")
        elapsed = time.monotonic() - cut
        print(f"/healthz 503 {elapsed:.2f}s after the cut: {body.strip()}")
        # The worker counts from the table's last answer (or the last renewal sent), which came at most one
        # renewal interval (plus a request's time) before the cut: never sooner than that.  Whichever of the
        # two checks sees it first, the other follows.
        assert elapsed >= FAILOVER - RENEWAL_INTERVAL - 0.5, f"not alive {elapsed:.1f}s after the cut: too soon"
        fenced = f"lease renewal: not renewed within the failover time ({FAILOVER:g} s), so no longer processed: "
        assert body.startswith(fenced) or body.startswith("lease table: "), body
        def names_the_table() -> str | None:
            answer = health("healthz", 503)
            return answer if answer and f"lease table: the lease table {stream} has not answered for" in answer \
                else None

        body = wait_for(watched(names_the_table, worker), 30, interval=0.1, message="/healthz naming the lease table")
        silent = re.search(r"has not answered for (\d+\.\d) s", body)
        assert silent is not None and float(silent.group(1)) >= FAILOVER, body  # printed to 0.1 s
        assert "last error " in body, body
        ready = wait_for(watched(lambda: health("readyz", 503), worker), 60, interval=0.2,
                         message="/readyz 503 while the lease table is unreachable")
        assert "lease table read: the lease table was last read" in ready, ready
        assert http.value(url, "kcl_lease_table_unanswered_seconds") > FAILOVER
        assert http.value(url, "kcl_errors_total") > 0
        assert http.value(url, "kcl_leases_lost_total") >= 1
        fault_proxy.heal()
        wait_for(watched(lambda: health("healthz", 200), worker), 60, interval=0.2, message="alive once it answers")
        wait_for(watched(lambda: health("readyz", 200), worker), 60, interval=0.2, message="ready again")
        assert worker.terminate() == 0, worker.log_text()[-3000:]
    finally:
        if worker.alive:
            worker.kill()
    # The port is released on exit: a server can listen on it again at once.
    http.bind(port).close()
    # metricsBufferTimeMillis is 2 s: with CloudWatch on, the run would have published many times.
    assert aws_clients("cloudwatch").list_metrics(Namespace=stream)["Metrics"] == []


def test_metrics_port_in_use_is_a_configuration_error(tmp_path: Path, stream: str,
                                                      aws_clients: Callable[[str], Any]) -> None:
    holder = http.bind(0)
    port = holder.getsockname()[1]
    try:
        worker = start_worker(tmp_path / "out", "busy-port", "--stream", stream, "--application", stream,
                              "--metrics-port", str(port))
        assert worker.process.wait(timeout=60) == 78, worker.log_text()[-3000:]
    finally:
        holder.close()
    assert f"cannot serve metrics on 127.0.0.1:{port}: the port is already in use" in worker.log_text()
    assert "Traceback" not in worker.log_text()
    assert stream not in aws_clients("dynamodb").list_tables()["TableNames"], "lease table created before the bind"



async def test_worker_from_python_serves_the_endpoint_and_an_own_registry(stream: str,
                                                                          aws_clients: Callable[[str], Any]) -> None:
    """``WorkerConfig(metrics_port=0)``: ``worker.endpoint.url`` once started; ``KclCollector`` on an
    application's own registry; a processor's exception counted by its class name; the port freed by stop."""
    failed: list[str] = []

    class FailsOnce(kcl.RecordProcessor):
        def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                            millis_behind_latest: int) -> None:
            if not failed:
                failed.append(records[0].partition_key)
                raise ValueError("first batch refused")
            checkpointer.checkpoint()

    config = kcl.WorkerConfig(failover_time_ms=3000, idle_time_between_reads_ms=200,
                              task_backoff_time_ms=50, max_task_backoff_time_ms=200,
                              initial_position_in_stream=kcl.InitialPosition.TRIM_HORIZON,
                              metrics_level=kcl.MetricsLevel.NONE, metrics_port=0)
    worker = kcl.Worker(stream, stream, FailsOnce, config)
    own = CollectorRegistry()
    own.register(KclCollector(worker))
    await asyncio.to_thread(put_user_records, aws_clients("kinesis"), stream, [("k", b"one"), ("k", b"two")],
                            aggregate=False)
    task = asyncio.create_task(worker.run())
    try:
        await async_wait_for(lambda: worker.endpoint is not None and worker.endpoint.port is not None, 60,
                             interval=0.05, message="endpoint started")
        assert worker.endpoint is not None and worker.endpoint.port is not None
        url, port = worker.endpoint.url, worker.endpoint.port

        async def value(name: str, **labels: str) -> float:  # blocking HTTP off the loop that serves it
            return await asyncio.to_thread(http.value, url, name, **labels)

        async def processed() -> bool:
            return await value("kcl_records_processed_total") == 2

        await async_wait_for(processed, 60, interval=0.1, message="both records processed after the retry")
        assert await value("kcl_errors_total", operation="ProcessRecords", code="ValueError") == 1
        assert await asyncio.to_thread(http.get, f"{url}/readyz") == (200, "ok\n")
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(own).decode())}
        assert sum(sample.value for sample in families["kcl_records_processed"].samples) == 2
        assert "process_cpu_seconds" not in families  # an own registry gets only the worker's figures
        await worker.stop()
        await asyncio.wait_for(task, 30)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    http.bind(port).close()
