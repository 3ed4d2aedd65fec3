"""Every example runs, as a user would run it (a subprocess, configured only through the environment)."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_module(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_async_producer_example(unique_name: Callable[[str], str], kinesis: Any) -> None:
    stream = unique_name("clicks")
    try:
        done = run_module("examples.clickstream_producer_async", "--stream", stream, "--create", "--count", "300")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "300 of 300 page views delivered" in done.stdout
    finally:
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)


def test_consumer_app_prints_and_checkpoints(unique_name: Callable[[str], str], kinesis: Any,
                                             aws_clients: Callable[[str], Any]) -> None:
    stream, application = unique_name("clicks"), unique_name("printer")
    try:
        produced = run_module("examples.clickstream_producer", "--stream", stream, "--create", "--count", "50",
                              "--users", "5")
        assert produced.returncode == 0, produced.stdout + produced.stderr
        done = run_module("examples.consumer_app", "--stream", stream, "--application", application,
                          "--records", "50", "--seconds", "180")
        assert done.returncode == 0, done.stdout + done.stderr
        printed = [line for line in done.stdout.splitlines() if " viewed /page_" in line]
        assert len(printed) >= 50, done.stdout
        leases = aws_clients("dynamodb").scan(TableName=application, ConsistentRead=True)["Items"]
        assert leases and all(item["checkpoint"]["S"].isdigit() for item in leases), leases
        assert all("leaseOwner" not in item for item in leases), "a graceful stop releases the leases"
    finally:
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        aws_clients("dynamodb").delete_table(TableName=application)


def test_agent_example_runs_against_localstack(unique_name: Callable[[str], str], kinesis: Any) -> None:
    stream = unique_name("access-log")
    try:
        done = subprocess.run([sys.executable, "-c", f"import sys, examples.agent.try_example as t; "
                               f"sys.exit(t.main({stream!r}))"], cwd=REPO, capture_output=True, text=True,
                              timeout=240, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "3 of 4 lines arrived as JSON" in done.stdout
        assert "exit status 0" in done.stdout
    finally:
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)


def test_systemd_unit_commands_work_and_match_the_exit_codes(tmp_path: Path) -> None:
    """The unit's command lines run (against a rewritten agent.json) and its no-restart codes are the agent's."""
    from examples.agent.try_example import rewritten_config

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "examples" / "agent" / "kinesis-agent.service")
    service = unit["Service"]
    config = rewritten_config(tmp_path, "apache-access-log")
    (tmp_path / "httpd").mkdir()
    for key in ("ExecStartPre", "ExecStart"):
        command = shlex.split(service[key].replace("/etc/aws-kinesis/agent.json", str(config)))
        assert Path(command[0]).name == "kinesis-agent"
        command[0] = str(BIN / "kinesis-agent")
        if key == "ExecStartPre":
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["flows"][0]["kinesisStream"] == "apache-access-log"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) * 1000 > 10000, "systemd must wait longer than shutdownTimeoutMillis"
    assert set(service["RestartPreventExitStatus"].split()) == {"73", "78"}
    broken = tmp_path / "broken.json"
    broken.write_text('{"flows": [{"filePattern": "/tmp/x", "kinesisStream": "s", "noSuchKey": 1}]}')
    refused = subprocess.run([str(BIN / "kinesis-agent"), "--check-config", "-c", str(broken)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 78 and "noSuchKey" in refused.stderr


def test_demo_pipeline_verifies_itself(kinesis: Any) -> None:
    done = run_module("examples.demo.pipeline", "--quick", timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "VERIFIED: every one of the" in done.stdout
    assert "worker-B holds all 4 shards" in done.stdout
    assert "== page views per page per 1-minute window" in done.stdout
    created = re.search(r"created stream (demo-pageviews-\w+)", done.stdout)
    assert created is not None
    assert created.group(1) not in kinesis.list_streams()["StreamNames"], "the demo removes what it created"
