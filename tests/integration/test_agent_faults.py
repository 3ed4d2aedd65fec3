"""The agent under failure: killed with SIGKILL, cut off from the endpoint, pointed at a missing stream."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.test_agent_support import (
    AgentProcess,
    LogWriter,
    agent_config,
    checkpoint_rows,
    wait_for_lines,
)
from tests.support.faultproxy import FaultProxy
from tests.support.kinesis import create_stream
from tests.support.waiting import wait_for

#: The flows' byte budget in these tests: what may be read but not yet acknowledged.
BUDGET_BYTES = 256 * 1024
LINE_BYTES = 100


def test_kill_9_then_restart_loses_nothing(tmp_path: Path, make_stream: Callable[..., str], kinesis: Any) -> None:
    stream = make_stream(shards=2)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").touch()
    writer = LogWriter(logs, rate=3000, total=24_000, style="rename", rotate_every=8000, line_bytes=LINE_BYTES,
                       tag="kill")
    config = agent_config(tmp_path, {
        "filePattern": str(logs / "app.log*"), "kinesisStream": stream, "aggregationEnabled": "true",
        "publishQueueCapacityBytes": str(BUDGET_BYTES),
    })
    agent = AgentProcess(tmp_path, config)
    checkpoints = tmp_path / "state" / "checkpoints"
    try:
        agent.start()
        agent.wait_for_event(lambda e: e.get("event", "").startswith("tracking file"), 60, "agent tracking the log")
        writer.start()

        def checkpointed_lines() -> int:
            return int(sum(offset for _, _, offset, _ in checkpoint_rows(checkpoints))) // LINE_BYTES

        wait_for(lambda: checkpointed_lines() > 3000, 60, interval=0.1, message="some lines checkpointed")
        agent.kill9()
        wait_for(lambda: len(writer.written) > 12_000, 60, interval=0.05, message="writer past a rotation")
        agent.start()
        agent.wait_for_event(lambda e: e.get("event") == "resuming file from its checkpoint", 60,
                             "agent resuming from its checkpoint")
        wait_for(writer.finished.is_set, 120, message="writer finished")
        writer.check()
        got = wait_for_lines(kinesis, stream, writer.written, timeout=120, agent=agent, logs=logs)
    finally:
        agent.ensure_stopped()
    expected = Counter(writer.written)
    assert set(got) == set(expected), "records that were never written"
    duplicates = sum((got - expected).values())
    # Only batches in flight at the kill may be sent twice: at most the flow's byte budget, plus the open
    # batch that was being filled and records whose checkpoint was acknowledged but not yet committed.
    window = BUDGET_BYTES // LINE_BYTES + 2 * 500
    print(f"kill -9: {len(expected)} lines, {duplicates} sent twice (in-flight window {window})")
    assert duplicates <= window, f"{duplicates} duplicates, more than the in-flight window of {window} lines"


def test_blackholed_endpoint_then_healed(tmp_path: Path, make_stream: Callable[..., str], kinesis: Any,
                                         fault_proxy: FaultProxy) -> None:
    stream = make_stream(shards=2)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").touch()
    # 150-byte lines at 1000 lines/s: over 4 MiB arrive during the 30 s outage, 16 times the budget.
    writer = LogWriter(logs, rate=1000, total=45_000, line_bytes=150, tag="hole")
    config = agent_config(tmp_path, {
        "filePattern": str(logs / "app.log"), "kinesisStream": stream, "aggregationEnabled": "true",
        "publishQueueCapacityBytes": str(BUDGET_BYTES),
    }, **{"cloudwatch.emitMetrics": "true", "cloudwatch.metricsBufferTimeMillis": "2000"})
    agent = AgentProcess(tmp_path, config, endpoint=fault_proxy.url)
    try:
        agent.start()
        agent.wait_for_event(lambda e: e.get("event", "").startswith("tracking file"), 60, "agent tracking the log")
        writer.start()
        checkpoints = tmp_path / "state" / "checkpoints"
        wait_for(lambda: sum(offset for _, _, offset, _ in checkpoint_rows(checkpoints)) > 300_000, 60,
                 interval=0.2, message="records flowing")
        fault_proxy.blackhole()
        outage_start = time.monotonic()
        written_before = len(writer.written)
        baseline = agent.rss()
        samples = []
        while time.monotonic() - outage_start < 30:
            agent.assert_running()
            samples.append(agent.rss())
            writer.finished.wait(0.5)  # sampling cadence; the outage length is the test's subject
        written_during = (len(writer.written) - written_before) * 150
        fault_proxy.heal()
        wait_for(writer.finished.is_set, 120, message="writer finished")
        writer.check()
        got = wait_for_lines(kinesis, stream, writer.written, timeout=180, agent=agent, logs=logs)
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()
    assert set(got) == set(writer.written)
    growth = max(samples) - baseline
    print(f"blackhole: {written_during / 2**20:.1f} MiB written during the outage, RSS {baseline / 2**20:.1f} MiB "
          f"-> max {max(samples) / 2**20:.1f} MiB")
    assert written_during > 3.5 * 1024 * 1024, "the outage must outlast the budget many times over"
    # Reading pauses when the budget is spent: memory grows by the budget and buffers, not with the backlog
    # (keeping the backlog in memory would take more than the bytes written, Python objects being larger).
    assert growth < written_during / 2, f"RSS grew by {growth / 2**20:.1f} MiB during the outage"


def test_missing_stream_is_reported_and_nothing_moves_until_it_exists(
    tmp_path: Path, unique_name: Callable[[str], str], kinesis: Any,
) -> None:
    stream = unique_name("later")
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [f"waiting line {n}\n".encode() for n in range(300)]
    (logs / "app.log").write_bytes(b"".join(lines))
    agent = AgentProcess(tmp_path, agent_config(tmp_path, {
        "filePattern": str(logs / "app.log"), "kinesisStream": stream, "retryMaxBackoffMillis": "1000",
    }))
    checkpoints = tmp_path / "state" / "checkpoints"
    try:
        agent.start()
        failure = agent.wait_for_event(
            lambda e: e.get("level") == "error" and e.get("error") == "ResourceNotFoundException", 60,
            "a loud error about the missing stream")
        assert "checkpoints do not move" in failure["event"]
        assert all(offset == 0 for _, _, offset, _ in checkpoint_rows(checkpoints))
        create_stream(kinesis, stream, 1)
        try:
            got = wait_for_lines(kinesis, stream, lines, timeout=120, agent=agent, logs=logs)
        finally:
            kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()
    assert got == Counter(lines)
