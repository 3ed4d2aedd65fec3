"""MultiLang mode's pure parts: the protocol's messages, checkpoint outcomes, executableName resolution.

The protocol end to end (child processes, checkpoints in the lease table, failures) is tested against
LocalStack in tests/integration/test_kcl_multilang.py.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import kcl
from kcl.multilang import messages, resolve_command
from kcl.multilang.child import read_lines
from kpl.errors import ConfigurationError


def parsed(line: bytes) -> dict[str, object]:
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one message, one line
    value: dict[str, object] = json.loads(line)
    return value


def test_daemon_messages_carry_every_field_amazon_kclpy_reads() -> None:
    assert parsed(messages.encode_initialize("shardId-000000000001", "TRIM_HORIZON", 0)) == {
        "action": "initialize", "shardId": "shardId-000000000001", "sequenceNumber": "TRIM_HORIZON",
        "subSequenceNumber": 0}
    stamp = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    record = kcl.Record(b"\x00\xffdata", "k\u00e9y", "4959", 3, stamp, None, True)
    message = parsed(messages.encode_process_records([record], 1500))
    assert message == {"action": "processRecords", "millisBehindLatest": 1500, "records": [{
        "action": "record", "data": base64.b64encode(b"\x00\xffdata").decode(), "partitionKey": "k\u00e9y",
        "sequenceNumber": "4959", "approximateArrivalTimestamp": 1714564800123, "subSequenceNumber": 3}]}
    for action in (messages.LEASE_LOST, messages.SHARD_ENDED, messages.SHUTDOWN_REQUESTED):
        assert parsed(messages.encode_action(action)) == {"action": action}
    assert parsed(messages.encode_checkpoint_outcome("4959", None, "ShutdownException")) == {
        "action": "checkpoint", "sequenceNumber": "4959", "subSequenceNumber": None, "error": "ShutdownException"}
    assert parsed(messages.encode_checkpoint_outcome(None, None, None))["error"] is None


def test_a_partition_key_with_a_line_break_stays_on_one_line() -> None:
    record = kcl.Record(b"x", "a\nb", "1", 0, None, None)
    assert json.loads(messages.encode_process_records([record], 0))["records"][0]["partitionKey"] == "a\nb"


def test_child_lines_decode_to_status_checkpoint_or_nothing() -> None:
    assert messages.decode('{"action":"status","responseFor":"processRecords"}') == messages.Status("processRecords")
    assert messages.decode(' {"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null} ') == \
        messages.CheckpointRequest(None, None)
    assert messages.decode('{"action":"checkpoint","sequenceNumber":"12","subSequenceNumber":4}') == \
        messages.CheckpointRequest("12", 4)
    assert messages.decode('{"action":"initialize","shardId":"x"}') == messages.OtherMessage("initialize")
    for noise in ("", "hello", "{not json", "[1, 2]", '{"no": "action"}', '{"action": "dance"}', "42"):
        assert messages.decode(noise) is None, noise


def test_checkpoint_requests_are_read_as_jackson_reads_them() -> None:
    read = messages.checkpoint_arguments
    assert read(messages.CheckpointRequest(None, None)) == (None, None)
    assert read(messages.CheckpointRequest(None, 7)) == (None, None)  # the daemon ignores a lone sub-sequence
    assert read(messages.CheckpointRequest("4959", None)) == ("4959", None)
    assert read(messages.CheckpointRequest(4959, "3")) == ("4959", 3)
    for bad in (messages.CheckpointRequest(["x"], None), messages.CheckpointRequest("1", "three"),
                messages.CheckpointRequest(True, None), messages.CheckpointRequest("1", 1.5)):
        with pytest.raises(kcl.InvalidCheckpointError):
            read(bad)


def test_checkpoint_errors_get_the_names_amazon_kclpy_tests_for() -> None:
    name = messages.checkpoint_error_name
    assert name(kcl.LeaseLostError("gone")) == "ShutdownException"
    assert name(kcl.CheckpointThrottledError("slow")) == "ThrottlingException"
    assert name(kcl.CheckpointDependencyError("down")) == "KinesisClientLibDependencyException"
    assert name(kcl.InvalidCheckpointError("beyond")) == "IllegalArgumentException"
    assert messages.INVALID_STATE_EXCEPTION == "InvalidStateException"


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_a_relative_executable_is_found_beside_the_properties_file_then_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = executable(tmp_path / "app.py")
    assert resolve_command("app.py", tmp_path) == [str(app.absolute())]
    assert resolve_command("  app.py  --flag  x.json", tmp_path) == [str(app.absolute()), "--flag", "x.json"]
    (tmp_path / "bin").mkdir()
    tool = executable(tmp_path / "bin" / "my-consumer")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert resolve_command("my-consumer --verbose", tmp_path / "elsewhere") == [str(tool.absolute()), "--verbose"]
    assert resolve_command(f"{app} a", tmp_path / "elsewhere") == [str(app.absolute()), "a"]
    nested = executable(tmp_path / "bin" / "run.sh")
    assert resolve_command("bin/run.sh", tmp_path) == [str(nested.absolute())]
    # A symlink is run as named, not as its target: a venv's bin/python finds its venv through the link.
    (tmp_path / "venv-python").symlink_to(sys.executable)
    assert resolve_command("venv-python app.py", tmp_path) == [str(tmp_path / "venv-python"), "app.py"]


def test_an_executable_that_is_missing_or_not_executable_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"executableName 'nope\.py' not found \(looked for .*nope\.py "
                                                 r"and PATH\)"):
        resolve_command("nope.py", tmp_path)
    with pytest.raises(ConfigurationError, match="not found"):
        resolve_command("sub/nope.sh", tmp_path)  # a path is not looked for on PATH
    (tmp_path / "plain.py").write_text("print('hi')\n")
    with pytest.raises(ConfigurationError, match=r"not an executable file: make it one \(chmod \+x, with a #! line\) "
                                                 r"or name its interpreter \(executableName = python3 plain\.py\)"):
        resolve_command("plain.py", tmp_path)
    with pytest.raises(ConfigurationError, match="executableName is empty"):
        resolve_command("   ", tmp_path)


async def test_lines_are_split_on_newlines_and_very_long_ones_in_pieces() -> None:
    import asyncio

    reader = asyncio.StreamReader()
    reader.feed_data(b"one\r\ntwo\n\n" + b"x" * 10 + b"\nend without newline")
    reader.feed_eof()
    assert [line async for line in read_lines(reader, limit=4)] == \
        ["one", "two", "", "xxxx", "xxxx", "xx", "end ", "with", "out ", "newl", "ine"]
