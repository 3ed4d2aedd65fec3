"""Initial positions LATEST and AT_TIMESTAMP (TRIM_HORIZON is what the other tests use), and a worker
group that keeps every record while DynamoDB fails a share of its requests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.kcl_processors import (
    FAST_TIMINGS,
    Producer,
    missing_records,
    order_violations,
    read_events,
    start_worker,
    write_properties,
)
from tests.support.kinesis import create_stream, read_shard
from tests.support.localstack import FaultInjector
from tests.support.waiting import wait_for


def put(kinesis: Any, stream: str, tag: str, count: int) -> None:
    result = kinesis.put_records(StreamName=stream, Records=[
        {"Data": f"{tag}-{n}".encode(), "PartitionKey": f"key-{n}"} for n in range(count)])
    assert not result["FailedRecordCount"]


def delivered(out: Path) -> list[str]:
    return [e["d"] for e in read_events(out) if e["e"] == "rec"]


def cleanup(aws_clients: Callable[[str], Any], stream: str) -> None:
    aws_clients("kinesis").delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
    dynamodb = aws_clients("dynamodb")
    with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
        dynamodb.delete_table(TableName=stream)


def test_latest_skips_what_was_there_before_the_lease(tmp_path: Path, aws_clients: Callable[[str], Any]) -> None:
    kinesis = aws_clients("kinesis")
    stream = f"kt-kcl-latest-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 1)
    put(kinesis, stream, "before", 20)
    properties = write_properties(tmp_path / "app.properties", **FAST_TIMINGS)
    worker = start_worker(tmp_path / "events", "L", "--stream", stream, "--application", stream,
                          "--config", str(properties))  # LATEST is the default
    try:
        wait_for(lambda: any(e["e"] == "init" for e in read_events(tmp_path / "events")), 60, interval=0.2,
                 message="lease taken")
        round_ = [0]

        def after_arrives() -> bool:
            round_[0] += 1  # the iterator is taken just after initialize: put until a record arrives
            put(kinesis, stream, f"after{round_[0]}", 5)
            return any(d.startswith("after") for d in delivered(tmp_path / "events"))

        wait_for(after_arrives, 60, interval=0.5, message="records put after the start delivered")
        assert worker.terminate(timeout=60) == 0
        init = next(e for e in read_events(tmp_path / "events") if e["e"] == "init")
        assert init["q"] == "LATEST"
        assert not [d for d in delivered(tmp_path / "events") if d.startswith("before")]
    finally:
        if worker.alive:
            worker.kill()
        cleanup(aws_clients, stream)


def test_at_timestamp_starts_at_the_given_time(tmp_path: Path, aws_clients: Callable[[str], Any]) -> None:
    kinesis = aws_clients("kinesis")
    stream = f"kt-kcl-timestamp-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 1)
    put(kinesis, stream, "before", 20)
    arrivals = [r["ApproximateArrivalTimestamp"] for r in read_shard(kinesis, stream, "shardId-000000000000")]
    # kinesis-mock compares AT_TIMESTAMP at whole seconds: start on the second after the last arrival.
    start = (max(arrivals) + timedelta(seconds=1)).replace(microsecond=0)
    wait_for(lambda: datetime.now(UTC) > start + timedelta(milliseconds=100), 10, interval=0.02,
             message="clock past the start time")
    put(kinesis, stream, "after", 20)
    properties = write_properties(tmp_path / "app.properties", **FAST_TIMINGS)
    worker = start_worker(tmp_path / "events", "T", "--stream", stream, "--application", stream,
                          "--config", str(properties), "--initial-position", "AT_TIMESTAMP",
                          "--timestamp", start.isoformat())
    try:
        wait_for(lambda: len(delivered(tmp_path / "events")) >= 20, 60, interval=0.2, message="records after T")
        assert worker.terminate(timeout=60) == 0
        assert sorted(delivered(tmp_path / "events")) == sorted(f"after-{n}" for n in range(20))
        init = next(e for e in read_events(tmp_path / "events") if e["e"] == "init")
        assert init["q"] == "AT_TIMESTAMP"
    finally:
        if worker.alive:
            worker.kill()
        cleanup(aws_clients, stream)


def test_nothing_lost_while_dynamodb_fails_a_share_of_requests(
    tmp_path: Path, aws_clients: Callable[[str], Any], fault_injection: FaultInjector,
) -> None:
    kinesis = aws_clients("kinesis")
    stream = f"kt-kcl-ddbfaults-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, stream, 2)
    properties = write_properties(tmp_path / "app.properties", initialPositionInStream="TRIM_HORIZON",
                                  **FAST_TIMINGS)
    producer = Producer(kinesis, stream, [f"f-{i:02d}" for i in range(20)], rounds=60, pause=0.05)
    workers = []
    try:
        fault_injection.set(DYNAMODB_ERROR_PROBABILITY=0.3)
        for name in ("D1", "D2"):
            workers.append(start_worker(tmp_path / "events", name, "--stream", stream, "--application", stream,
                                        "--config", str(properties)))
        producer.start()
        wait_for(lambda: producer.done, 120, interval=0.5, message="production finished")
        producer.stop()
        wait_for(lambda: not missing_records(read_events(tmp_path / "events"), producer.produced), 120,
                 interval=1.0, message="every record delivered despite DynamoDB errors")
        fault_injection.reset()
        for worker in workers:
            assert worker.terminate(timeout=60) == 0
        assert order_violations(read_events(tmp_path / "events")) == []
        logs = "".join(worker.log_text() for worker in workers)
        assert "ProvisionedThroughputExceeded" in logs  # the faults did happen
    finally:
        producer.stop()
        for worker in workers:
            if worker.alive:
                worker.kill()
        cleanup(aws_clients, stream)
