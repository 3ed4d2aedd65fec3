"""Every line written under continuous writing and rotation reaches the stream, exactly as written.

One test per rotation style, each writing a few thousand lines per second through three rotations into
a two-shard stream with KPL aggregation on (kinesis-mock is slow with many small records).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_agent_support import AgentProcess, LogWriter, agent_config, wait_for_lines
from tests.support.waiting import wait_for

RATE = 3000
TOTAL = 15_000


@pytest.mark.parametrize(("style", "pattern"), [
    ("rename", "app.log*"),
    ("copytruncate", "app.log*"),
    ("create", "app-*.log"),
])
def test_rotation_loses_nothing(style: str, pattern: str, tmp_path: Path, make_stream: Callable[..., str],
                                kinesis: Any) -> None:
    stream = make_stream(shards=2)
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = LogWriter(logs, rate=RATE, total=TOTAL, style=style, rotate_every=TOTAL // 4, tag=style)
    (logs / ("app-0000.log" if style == "create" else "app.log")).touch()
    agent = AgentProcess(tmp_path, agent_config(tmp_path, {
        "filePattern": str(logs / pattern), "kinesisStream": stream, "aggregationEnabled": "true",
    }, **{"cloudwatch.emitMetrics": "true", "cloudwatch.metricsBufferTimeMillis": "1000"}))
    try:
        agent.start()
        agent.wait_for_event(lambda e: e.get("event", "").startswith("tracking file"), 60, "agent tracking the log")
        writer.start()
        wait_for(writer.finished.is_set, 120, message="writer finished")
        writer.check()
        assert writer.rotations == 3
        got = wait_for_lines(kinesis, stream, writer.written, timeout=120, agent=agent, logs=logs)
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()
    assert got == Counter(writer.written), "duplicates or unexpected records in a clean run"
    events = [event.get("event", "") for event in agent.events()]
    if style == "rename":
        assert any(event.startswith("file renamed") for event in events)
    if style == "copytruncate":
        assert any(event.startswith("file was truncated after being copied") for event in events)
    assert "checkpoints saved; agent stopped" in events


def test_agent_metrics_reach_cloudwatch(tmp_path: Path, make_stream: Callable[..., str], kinesis: Any,
                                        aws_clients: Callable[[str], Any]) -> None:
    """The Java agent's namespace, metric names and Destination dimension."""
    stream = make_stream(shards=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [f"metric line {n}\n".encode() for n in range(200)]
    (logs / "app.log").write_bytes(b"".join(lines))
    agent = AgentProcess(tmp_path, agent_config(tmp_path, {"filePattern": str(logs / "app.log"),
                                                           "kinesisStream": stream},
                                                **{"cloudwatch.emitMetrics": "true",
                                                   "cloudwatch.metricsBufferTimeMillis": "1000"}))
    cloudwatch = aws_clients("cloudwatch")
    destination = [{"Name": "Destination", "Value": f"KinesisStream:{stream}"}]
    try:
        agent.start()
        wait_for_lines(kinesis, stream, lines, timeout=60, agent=agent, logs=logs)

        def published() -> set[str]:
            names = {metric["MetricName"] for metric in cloudwatch.list_metrics(
                Namespace="AWSKinesisAgent", Dimensions=destination)["Metrics"]}
            wanted = {"BytesSent", "RecordSendAttempts", "RecordSendErrors", "ServiceErrors", "RecordsSent"}
            return names if wanted <= names else set()

        wait_for(published, 60, interval=0.5, message="agent metrics in CloudWatch")
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()


def test_truncated_and_rewritten_between_polls_is_read_again(tmp_path: Path, make_stream: Callable[..., str],
                                                             kinesis: Any) -> None:
    """Same inode, larger than before, new first bytes: only the fingerprint can tell it is a new file."""
    stream = make_stream(shards=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    first = [f"first generation {n:04d}\n".encode() for n in range(100)]
    second = [f"second generation, longer lines {n:04d}\n".encode() for n in range(300)]
    (logs / "app.log").write_bytes(b"".join(first))
    agent = AgentProcess(tmp_path, agent_config(tmp_path, {"filePattern": str(logs / "app.log"),
                                                           "kinesisStream": stream}))
    try:
        agent.start()
        wait_for_lines(kinesis, stream, first, timeout=60, agent=agent, logs=logs)
        os.kill(agent.pid, signal.SIGSTOP)  # nothing is polled while the file is replaced
        try:
            with (logs / "app.log").open("r+b") as log:
                log.truncate(0)
                log.write(b"".join(second))
        finally:
            os.kill(agent.pid, signal.SIGCONT)
        got = wait_for_lines(kinesis, stream, first + second, timeout=60, agent=agent, logs=logs)
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()
    assert got == Counter(first + second)
    assert any(event.get("event", "").startswith("file was truncated") for event in agent.events())


def logrotate(directory: Path, method: str) -> None:
    """Rotate ``directory/app.log`` once: with the real logrotate when it is installed, else with its exact
    steps (copytruncate: copy to app.log.1, then truncate app.log in place; create: rename, new empty file)."""
    log = directory / "app.log"
    for index in (2, 1):
        if (directory / f"app.log.{index}").exists():
            (directory / f"app.log.{index}").rename(directory / f"app.log.{index + 1}")
    binary = shutil.which("logrotate") or next(
        (path for path in ("/usr/sbin/logrotate", "/sbin/logrotate") if os.access(path, os.X_OK)), None)
    if binary is not None:
        config = directory.parent / f"logrotate-{method}.conf"
        config.write_text(f"{log} {{\n    {method}\n    rotate 5\n    missingok\n    nocompress\n}}\n")
        config.chmod(0o644)
        subprocess.run([binary, "--force", "--state", str(directory.parent / "logrotate.state"), str(config)],
                       check=True, capture_output=True, timeout=60)
    elif method == "copytruncate":
        shutil.copyfile(log, directory / "app.log.1")
        with log.open("r+b") as handle:
            handle.truncate(0)
    else:
        log.rename(directory / "app.log.1")
        log.touch()
    assert (directory / "app.log.1").exists() and log.exists()


@pytest.mark.parametrize("method", ["copytruncate", "create"])
@pytest.mark.parametrize("pattern", ["app.log*", "app.log"])
def test_rotation_while_stopped_resends_nothing_and_loses_nothing(
    method: str, pattern: str, tmp_path: Path, make_stream: Callable[..., str], kinesis: Any,
) -> None:
    """Stopped cleanly, rotated (the rotated name inside or outside the pattern), restarted: every line once."""
    stream = make_stream(shards=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    batches = [[f"{method} {step} line {n:04d} {'x' * 40}\n".encode() for n in range(300)] for step in range(3)]
    (logs / "app.log").write_bytes(b"".join(batches[0]))
    config = agent_config(tmp_path, {"filePattern": str(logs / pattern), "kinesisStream": stream,
                                     "aggregationEnabled": "true"})
    agent = AgentProcess(tmp_path, config)
    try:
        agent.start()
        wait_for_lines(kinesis, stream, batches[0], timeout=60, agent=agent, logs=[logs / "app.log"])
        assert agent.stop() == 0
        with (logs / "app.log").open("ab") as log:
            log.write(b"".join(batches[1]))  # written while stopped: only the rotated file holds these
        logrotate(logs, method)
        with (logs / "app.log").open("ab") as log:
            log.write(b"".join(batches[2]))
        agent.start()
        expected = [line for batch in batches for line in batch]
        got = wait_for_lines(kinesis, stream, expected, timeout=60, agent=agent,
                             logs=[logs / "app.log", logs / "app.log.1"])
        assert agent.stop() == 0
    finally:
        agent.ensure_stopped()
    assert got == Counter(expected), "a line sent twice or never"
    events = [event.get("event", "") for event in agent.events()]
    if method == "copytruncate":
        assert any(event.startswith("file was rotated by copytruncate while the agent was stopped") for event in events)
    elif pattern == "app.log":
        assert any(event.startswith("file was renamed out of the file pattern while") for event in events)
