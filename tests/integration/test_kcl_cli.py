"""``kcl-worker``'s failures: a clear message, a non-zero exit, and nothing half-started."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.kcl_processors import REPO, kcl_worker_command
from tests.support.kinesis import create_stream

PROCESSOR = "tests.integration.kcl_processors:RecordingProcessor"


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*kcl_worker_command(), *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          check=False)


@pytest.fixture(scope="module")
def stream(aws_clients: Callable[[str], Any]) -> Any:
    kinesis = aws_clients("kinesis")
    name = f"kt-kcl-cli-{uuid.uuid4().hex[:8]}"
    create_stream(kinesis, name, 1)
    yield name
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


def table_names(aws_clients: Callable[[str], Any]) -> set[str]:
    return set(aws_clients("dynamodb").list_tables()["TableNames"])


# argparse's usage errors exit 2; an invalid configuration or processor exits 78 (EX_CONFIG), as kinesis-agent.
CASES = {
    "missing-everything": ([], 2, "missing --stream, --application, --processor"),
    "bad-position": (["--initial-position", "EARLIEST"], 2, "invalid choice: 'EARLIEST'"),
    "at-timestamp-without-timestamp": (["--initial-position", "AT_TIMESTAMP"], 78,
                                       "initial position AT_TIMESTAMP needs a timestamp"),
    "bad-timestamp": (["--timestamp", "yesterday"], 78,
                      "--timestamp 'yesterday' is neither ISO-8601 nor epoch seconds"),
    "processor-without-colon": (["--processor", "tests.integration.kcl_processors"], 78,
                                "--processor must look like module:Class"),
    "processor-module-missing": (["--processor", "no_such_module_xyz:Processor"], 78,
                                 "cannot import processor module 'no_such_module_xyz'"),
    "processor-class-missing": (["--processor", "tests.integration.kcl_processors:Nope"], 78,
                                "module 'tests.integration.kcl_processors' has no attribute 'Nope'"),
    "not-a-processor": (["--processor", "kcl:Record"], 78, "kcl:Record is not a record processor"),
    "kclpy-processor": (["--processor", "tests.integration.kcl_processors:KclpyStyleProcessor"], 78,
                        "initialize(self, initialize_input) does not match initialize(self, shard_id, "
                        "sequence_number, sub_sequence_number, pending_checkpoint=None)"),
    "bad-log-level": (["--log-level", "loud"], 2, "invalid choice: 'loud'"),
    "metrics-address-without-port": (["--metrics-address", "0.0.0.0"], 78,
                                     "--metrics-address needs a port: add --metrics-port PORT"),
    "bad-metrics-port": (["--metrics-port", "70000"], 2, "argument --metrics-port: 70000 is outside the range"),
    "bad-metrics-address": (["--metrics-port", "0", "--metrics-address", "not an address!"], 2,
                            "argument --metrics-address: 'not an address!' is not an IP address or a host name"),
}


def arguments(case: str, stream: str, application: str) -> list[str]:
    extra = CASES[case][0]
    base = [] if case == "missing-everything" else ["--stream", stream, "--application", application]
    if case != "missing-everything" and "--processor" not in extra:
        base += ["--processor", PROCESSOR]
    return base + extra


@pytest.fixture
def root_logging() -> Iterator[None]:
    """kcl-worker's main() configures logging (root handlers and level): undone after an in-process run."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.usefixtures("root_logging")
def test_bad_arguments_fail_clearly_without_side_effects(
    case: str, stream: str, aws_clients: Callable[[str], Any], capsys: pytest.CaptureFixture[str],
) -> None:
    # In-process (the checks run before any AWS call); the console script itself is run below.
    from kcl.cli import main

    _, code, message = CASES[case]
    application = f"kt-kcl-cli-app-{uuid.uuid4().hex[:8]}"
    try:
        returned = main(arguments(case, stream, application))
    except SystemExit as exit_:
        returned = exit_.code  # argparse's own errors
    stderr = capsys.readouterr().err
    assert returned == code, stderr
    assert message in stderr, stderr
    assert application not in table_names(aws_clients)


@pytest.mark.parametrize("case", ["missing-everything", "processor-module-missing", "kclpy-processor"])
def test_console_script_exits_non_zero_without_a_traceback(case: str, stream: str) -> None:
    result = run(*arguments(case, stream, f"kt-kcl-cli-app-{uuid.uuid4().hex[:8]}"))
    assert result.returncode == CASES[case][1]
    assert CASES[case][2] in result.stderr
    assert "Traceback" not in result.stderr


def test_a_kclpy_processor_is_refused_at_load_pointing_to_multilang_mode(
    stream: str, aws_clients: Callable[[str], Any],
) -> None:
    application = f"kt-kcl-cli-app-{uuid.uuid4().hex[:8]}"
    result = run("--stream", stream, "--application", application, "--processor",
                 "tests.integration.kcl_processors:KclpyStyleProcessor")
    assert result.returncode == 78, result.stderr
    for expected in ("process_records(self, process_records_input) does not match "
                     "process_records(self, records, checkpointer, millis_behind_latest)",
                     "lease_lost(self, lease_lost_input) does not match lease_lost(self)",
                     "runs unchanged in MultiLang mode: give kcl-worker the properties file that names it as "
                     "executableName, without processor/--processor"):
        assert expected in result.stderr
    assert application not in table_names(aws_clients)


def test_a_factory_making_a_kclpy_processor_stops_the_worker_and_frees_the_lease(
    stream: str, aws_clients: Callable[[str], Any],
) -> None:
    """A factory's product can only be checked once made, for the first lease: exit 78, lease released."""
    application = f"kt-kcl-cli-app-{uuid.uuid4().hex[:8]}"
    dynamodb = aws_clients("dynamodb")
    try:
        result = run("--stream", stream, "--application", application, "--initial-position", "TRIM_HORIZON",
                     "--processor", "tests.integration.kcl_processors:make_kclpy_style_processor")
        assert result.returncode == 78, result.stderr[-3000:]
        assert "initialize(self, initialize_input) does not match" in result.stderr
        assert "Traceback" not in result.stderr
        item = dynamodb.get_item(TableName=application, Key={"leaseKey": {"S": "shardId-000000000000"}},
                                 ConsistentRead=True)["Item"]
        assert "leaseOwner" not in item
    finally:
        with contextlib.suppress(Exception):
            dynamodb.delete_table(TableName=application)


def test_bad_properties_file_names_the_key(tmp_path: Path, stream: str, aws_clients: Callable[[str], Any]) -> None:
    application = f"kt-kcl-cli-app-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "app.properties"
    config.write_text("failoverTimeMillis = 10000\nmaxRecord = 100\n")
    result = run("--stream", stream, "--application", application, "--processor", PROCESSOR, "--config", str(config))
    assert result.returncode == 78
    assert "app.properties:2: unknown setting 'maxRecord' (did you mean 'maxRecords'?)" in result.stderr
    config.write_text("failoverTimeMillis = 10000\nfailoverTimeMillis = soon\n")
    result = run("--stream", stream, "--application", application, "--processor", PROCESSOR, "--config", str(config))
    assert result.returncode == 78 and "failoverTimeMillis: expected an integer, got 'soon'" in result.stderr
    # the last value wins, as in Java, and the operator is told (logging is set up before the file is read)
    assert "properties key set twice; the last value wins" in result.stderr
    assert application not in table_names(aws_clients)


def test_missing_stream_fails_before_the_lease_table_is_created(aws_clients: Callable[[str], Any]) -> None:
    application = f"kt-kcl-cli-app-{uuid.uuid4().hex[:8]}"
    result = run("--stream", "kt-no-such-stream", "--application", application, "--processor", PROCESSOR)
    assert result.returncode == 1, result.stderr
    assert "stream 'kt-no-such-stream' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert application not in table_names(aws_clients)


def test_status_of_an_unknown_application(aws_clients: Callable[[str], Any]) -> None:
    result = run("status", "--application", "kt-never-ran")
    assert result.returncode == 1
    assert "lease table 'kt-never-ran' does not exist" in result.stderr
    assert "kt-never-ran" not in table_names(aws_clients)


def test_status_needs_an_application() -> None:
    result = run("status")
    assert result.returncode == 2 and "--application" in result.stderr


def test_unreachable_dynamodb_is_a_clear_error(stream: str) -> None:
    result = subprocess.run(
        [*kcl_worker_command(), "--stream", stream, "--application", "kt-kcl-cli-noddb", "--processor", PROCESSOR],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
        env={**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9"},  # nothing listens on port 9
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "cannot open or create lease table kt-kcl-cli-noddb" in result.stderr
    assert "Traceback" not in result.stderr
