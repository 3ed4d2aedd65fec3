"""``streamArn`` means that stream: its region and account, whatever the default configuration says.

Two streams with the same name live in us-east-1 (the test environment's default region) and
eu-west-1; a worker given the eu-west-1 ARN must consume that one, keep its lease table where
``regionName`` says, and a stream ARN of another account is refused at start unless a role to assume
is named (LocalStack keeps accounts apart by access key, and AssumeRole hands out the role's account).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kpl.aws import ClientConfig, StaticCredentials, sync_client
from tests.integration.kcl_processors import (
    FAST_TIMINGS,
    REPO,
    kcl_worker_command,
    read_events,
    start_worker,
    watched,
    write_properties,
)
from tests.support.kinesis import create_stream
from tests.support.waiting import wait_for

OTHER_ACCOUNT = "111122223333"


def client(service: str, region: str, account: str | None = None) -> Any:
    credentials = StaticCredentials(account, "test") if account else None
    return sync_client(service, ClientConfig(region=region, credentials=credentials))


@pytest.fixture
def twin_streams() -> Iterator[str]:
    name = f"kt-kcl-arn-{uuid.uuid4().hex[:8]}"
    for region, tag in (("us-east-1", "east"), ("eu-west-1", "west")):
        kinesis = client("kinesis", region)
        create_stream(kinesis, name, 1)
        kinesis.put_records(StreamName=name, Records=[{"Data": f"{tag}-{n}".encode(), "PartitionKey": "k"}
                                                      for n in range(5)])
    yield name
    for region in ("us-east-1", "eu-west-1"):
        with contextlib.suppress(Exception):
            client("kinesis", region).delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    for region in ("us-east-1", "us-west-2"):
        with contextlib.suppress(Exception):
            client("dynamodb", region).delete_table(TableName=name)


def delivered(out: Path, worker: str) -> list[str]:
    return [e["d"] for e in read_events(out) if e["e"] == "rec" and e["w"] == worker]


def started_line(log: str) -> dict[str, Any]:
    return next(json.loads(line) for line in log.splitlines() if '"worker started"' in line)


def test_the_worker_consumes_the_stream_its_arn_names_and_keeps_the_table_in_region_name(
    tmp_path: Path, twin_streams: str,
) -> None:
    name = twin_streams
    arn = f"arn:aws:kinesis:eu-west-1:000000000000:stream/{name}"
    properties = write_properties(tmp_path / "app.properties", streamName=name, streamArn=arn,
                                  applicationName=name, regionName="us-west-2", metricsLevel="NONE",
                                  initialPositionInStream="TRIM_HORIZON", **FAST_TIMINGS)
    out = tmp_path / "events"
    worker = start_worker(out, "W", "--config", str(properties))
    try:
        wait_for(watched(lambda: len(delivered(out, "W")) >= 5, worker), 60, interval=0.2,
                 message="records of the eu-west-1 stream")
        assert delivered(out, "W") == [f"west-{n}" for n in range(5)]
        started = started_line(worker.log_text())
        assert started["stream"] == arn
        assert (started["kinesis_region"], started["table_region"]) == ("eu-west-1", "us-west-2")
        assert worker.terminate(timeout=60) == 0
    finally:
        if worker.alive:
            worker.kill()
    assert client("dynamodb", "us-west-2").describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
    assert name not in client("dynamodb", "us-east-1").list_tables()["TableNames"]


def test_a_stream_arn_of_another_account_is_refused_at_start(tmp_path: Path) -> None:
    application = f"kt-kcl-arn-app-{uuid.uuid4().hex[:8]}"
    arn = f"arn:aws:kinesis:us-east-1:{OTHER_ACCOUNT}:stream/orders"
    properties = write_properties(tmp_path / "app.properties", streamArn=arn, applicationName=application,
                                  processor="tests.integration.kcl_processors:RecordingProcessor")
    result = subprocess.run([*kcl_worker_command(), "--config", str(properties)], capture_output=True, text=True,
                            timeout=60, cwd=REPO, check=False)
    assert result.returncode == 78, result.stderr[-3000:]
    assert f"stream {arn} belongs to account {OTHER_ACCOUNT}, but the credentials are account 000000000000's" \
        in result.stderr
    assert "AwsCredentialsProvider = StsAssumeRoleCredentialsProvider" in result.stderr
    assert "Traceback" not in result.stderr
    assert application not in client("dynamodb", "us-east-1").list_tables()["TableNames"]


def test_another_accounts_stream_is_read_through_the_role_the_settings_name(tmp_path: Path) -> None:
    name = f"kt-kcl-arn-x-{uuid.uuid4().hex[:8]}"
    theirs = client("kinesis", "us-east-1", account=OTHER_ACCOUNT)
    create_stream(theirs, name, 1)
    theirs.put_records(StreamName=name, Records=[{"Data": f"theirs-{n}".encode(), "PartitionKey": "k"}
                                                 for n in range(3)])
    arn = f"arn:aws:kinesis:us-east-1:{OTHER_ACCOUNT}:stream/{name}"
    properties = write_properties(
        tmp_path / "app.properties", streamArn=arn, applicationName=name, metricsLevel="NONE",
        AwsCredentialsProvider=f"StsAssumeRoleCredentialsProvider|arn:aws:iam::{OTHER_ACCOUNT}:role/kcl-reader|kcl",
        initialPositionInStream="TRIM_HORIZON", **FAST_TIMINGS)
    out = tmp_path / "events"
    worker = start_worker(out, "W", "--config", str(properties))
    try:
        wait_for(watched(lambda: len(delivered(out, "W")) >= 3, worker), 60, interval=0.2,
                 message="records of the other account's stream")
        assert delivered(out, "W") == [f"theirs-{n}" for n in range(3)]
        assert worker.terminate(timeout=60) == 0
        # The lease table stays with the caller's credentials (account 000000000000).
        assert name in client("dynamodb", "us-east-1").list_tables()["TableNames"]
    finally:
        if worker.alive:
            worker.kill()
        with contextlib.suppress(Exception):
            theirs.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
        with contextlib.suppress(Exception):
            client("dynamodb", "us-east-1").delete_table(TableName=name)
