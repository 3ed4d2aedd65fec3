"""Where the daemons' logs go, and an application that embeds kcl.Worker receiving its records.

The library never configures logging; ``kcl-worker`` and ``kinesis-agent`` do, in their entry points:
JSON lines on stderr, or appended to ``-l FILE`` (then nothing at all on stderr), at ``--log-level``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kcl
from kpl.logs import EVENT_ATTRIBUTE
from tests.integration.kcl_processors import start_worker, watched
from tests.integration.test_agent_support import AGENT_COMMAND, agent_config
from tests.support.kinesis import create_stream
from tests.support.waiting import async_wait_for, wait_for

FAST = kcl.WorkerConfig(failover_time_ms=3000, idle_time_between_reads_ms=200,
                        initial_position_in_stream=kcl.InitialPosition.TRIM_HORIZON,
                        metrics_level=kcl.MetricsLevel.NONE, graceful_shutdown_timeout_ms=10_000)


@pytest.fixture
def stream(aws_clients: Callable[[str], Any]) -> Iterator[str]:
    kinesis, dynamodb = aws_clients("kinesis"), aws_clients("dynamodb")
    name = f"kt-logging-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, name, 1)
    yield name
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
        dynamodb.delete_table(TableName=name)


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_an_app_embedding_a_worker_gets_its_records_in_its_own_handlers(
    stream: str, capsys: pytest.CaptureFixture[str],
) -> None:
    handler = Collect()
    app_logger = logging.getLogger("kcl")
    previous = app_logger.level
    app_logger.addHandler(handler)
    app_logger.setLevel(logging.INFO)

    class Nothing(kcl.RecordProcessor):
        def process_records(self, records: list[kcl.Record], checkpointer: kcl.Checkpointer,
                            millis_behind_latest: int) -> None:
            pass

    worker = kcl.Worker(stream, stream, Nothing, FAST)
    task = asyncio.create_task(worker.run())
    try:
        def took_lease() -> list[logging.LogRecord]:
            return [r for r in handler.records if getattr(r, EVENT_ATTRIBUTE, {}).get("event") == "took lease"]

        [record] = await async_wait_for(took_lease, 60, interval=0.1, message="the worker's 'took lease' record")
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 60)
        app_logger.removeHandler(handler)
        app_logger.setLevel(previous)
    assert record.name == "kcl.lease_taker"
    assert record.shard == "shardId-000000000000"  # type: ignore[attr-defined]
    assert record.getMessage().startswith("took lease worker=")
    assert " shard=shardId-000000000000 " in record.getMessage()
    assert {r.name.split(".")[0] for r in handler.records} == {"kcl"}
    assert any(r.name == "kcl.leases" and "created lease table" in r.getMessage() for r in handler.records)
    assert capsys.readouterr().out == ""


def test_kcl_worker_logs_to_a_file_and_nothing_to_stderr(tmp_path: Path, stream: str) -> None:
    log_file = tmp_path / "worker.log"
    worker = start_worker(tmp_path / "out", "w1", "--stream", stream, "--application", stream,
                          "--initial-position", "TRIM_HORIZON", "--log-level", "info", "-l", str(log_file))
    try:
        wait_for(watched(lambda: any(e["event"] == "took lease" for e in json_lines(log_file)), worker), 60,
                 interval=0.2, message="'took lease' in the log file")
    finally:
        assert worker.terminate() == 0
    events = json_lines(log_file)
    took = next(e for e in events if e["event"] == "took lease")
    assert took["logger"] == "kcl.lease_taker" and took["level"] == "info" and took["shard"] == "shardId-000000000000"
    assert worker.log_text() == "", "stdout and stderr stay empty when logs go to -l FILE"


def test_kcl_worker_log_level_warning_hides_info(
    tmp_path: Path, stream: str, aws_clients: Callable[[str], Any],
) -> None:
    log_file = tmp_path / "worker.log"
    worker = start_worker(tmp_path / "out", "w1", "--stream", stream, "--application", stream,
                          "--log-level", "warning", "--log-file", str(log_file))
    dynamodb = aws_clients("dynamodb")

    def owner() -> str | None:
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            item = dynamodb.get_item(TableName=stream, Key={"leaseKey": {"S": "shardId-000000000000"}},
                                     ConsistentRead=True).get("Item", {})
            return str(item.get("leaseOwner", {}).get("S", "")) or None
        return None

    try:
        wait_for(watched(lambda: owner() == "w1", worker), 60, interval=0.2, message="w1 holds the lease")
    finally:
        assert worker.terminate() == 0
    assert [e for e in json_lines(log_file) if e["level"] in ("debug", "info")] == []
    assert worker.log_text() == ""


def test_kinesis_agent_logs_to_a_file_and_nothing_to_stderr(tmp_path: Path, stream: str) -> None:
    (tmp_path / "app.log").write_text("one line\n")
    config = agent_config(tmp_path, {"filePattern": str(tmp_path / "app.log"), "kinesisStream": stream})
    (tmp_path / "agent.json").write_text(json.dumps(config))
    log_file = tmp_path / "agent.log"
    with (tmp_path / "output").open("wb") as output:
        process = subprocess.Popen([AGENT_COMMAND, "-c", str(tmp_path / "agent.json"), "-L", "debug",
                                    "-l", str(log_file)], stdout=output, stderr=subprocess.STDOUT)
    try:
        def running() -> bool:
            assert process.poll() is None, (tmp_path / "output").read_text()
            # Events of the flows (agent.tracking, agent.flow...) come once the daemon runs, signals handled.
            return any(e["logger"].startswith("agent.") for e in json_lines(log_file))

        wait_for(running, 60, interval=0.2, message="the flows' events in the log file")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    events = json_lines(log_file)
    assert events[0]["event"] == "kinesis-agent starting" and events[0]["logger"] == "agent"
    assert (tmp_path / "output").read_text() == ""
