"""Pure parts of the sinks: Firehose record packing and how retries are classified and logged."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import structlog

from agent.config import load_config
from agent.sinks import Retrier, pack_records
from kpl.retry import ErrorKind


def test_packing_joins_whole_records_up_to_the_target() -> None:
    records = [b"a" * 4 + b"\n", b"b" * 4 + b"\n", b"c" * 9 + b"\n", b"d\n"]
    assert pack_records(records, 10) == [records[0] + records[1], records[2], records[3]]
    assert pack_records(records, 0) == records
    assert b"".join(pack_records(records, 12)) == b"".join(records)


def test_a_record_larger_than_the_target_travels_alone() -> None:
    assert pack_records([b"x" * 50, b"y"], 10) == [b"x" * 50, b"y"]


@pytest.fixture
def retrier(tmp_path: Path) -> Retrier:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"flows": [{"filePattern": "/a", "deliveryStream": "d", "retryInitialBackoffMillis": 1,
                                           "retryMaxBackoffMillis": 2}]}))
    return Retrier(load_config(path).flows[0])


def test_fatal_errors_are_logged_as_errors_once_a_minute(retrier: Retrier) -> None:
    with structlog.testing.capture_logs() as logs:
        for attempt in range(1, 4):
            asyncio.run(retrier.wait(ErrorKind.FATAL, "ResourceNotFoundException", "no such stream", attempt, 10))
    assert [entry["log_level"] for entry in logs] == ["error"]
    assert "checkpoints do not move" in logs[0]["event"]
    assert logs[0]["retry_in_seconds"] == 0.002  # fatal errors wait the maximum backoff


def test_transient_errors_are_warnings(retrier: Retrier) -> None:
    with structlog.testing.capture_logs() as logs:
        asyncio.run(retrier.wait(ErrorKind.THROTTLED, "ProvisionedThroughputExceededException", "slow down", 1, 3))
        asyncio.run(retrier.wait(ErrorKind.TRANSIENT, "InternalFailure", "oops", 1, 3))
    assert [(entry["log_level"], entry["error"]) for entry in logs] == [
        ("warning", "ProvisionedThroughputExceededException"), ("warning", "InternalFailure"),
    ]
